"""Ordering by linked fields with keyset cursors, and ShotGrid's LATEST filter preset."""

from __future__ import annotations

from typing import Any

ORDER = [
    {"field_name": "entity.Shot.code", "direction": "desc"},
    {"field_name": "step.Step.code", "direction": "asc"},
]
FIELDS = ["entity.Shot.code", "step.Step.code"]


def page(studio: Any, cursor: str | None, **extra: Any) -> dict[str, Any]:
    body = {"entity_type": "Task", "filters": [], "fields": FIELDS, "order": ORDER, "limit": 4,
            "cursor": cursor, **extra}  # fmt: skip
    return dict(studio.call("find", body, role="viewer"))


def key(task: dict[str, Any]) -> tuple[str | None, str]:
    return task["entity.Shot.code"], task["step.Step.code"]


def test_a_linked_order_pages_by_keyset_and_stays_right_while_rows_change(
    studio: Any, show: dict[str, Any]
) -> None:
    asset_task = studio.create(
        "Task",
        {"project": show["proj"], "content": "Model",
         "step": {"type": "Step", "id": show["steps"][0]["id"]},
         "entity": {"type": "Asset", "id": show["asset"]["id"]}},
    )  # fmt: skip
    whole = studio.find("Task", [], FIELDS, order=ORDER)
    assert whole[-1]["id"] == asset_task["id"]  # no shot: NULLs sort last
    shots = sorted((s["code"] for s in show["shots"]), reverse=True)
    assert [key(t) for t in whole[:-1]] == [
        (s, step) for s in shots for step in ("Animation", "Comp")
    ]

    first = page(studio, None)
    assert [t["id"] for t in first["items"]] == [t["id"] for t in whole[:4]]
    # Between pages: two rows already seen are retired and a row sorting before the
    # cursor is added; an offset would now skip a row, the keyset does not.
    for gone in whole[:2]:
        studio.call("delete", {"entity_type": "Task", "entity_id": gone["id"]})
    studio.create(
        "Task",
        {"project": show["proj"], "content": "Extra",
         "step": {"type": "Step", "id": show["steps"][0]["id"]},
         "entity": {"type": "Shot", "id": show["shots"][-1]["id"]}},
    )  # fmt: skip
    seen = list(first["items"])
    cursor = first["next"]
    while cursor:
        following = page(studio, cursor)
        seen.extend(following["items"])
        cursor = following["next"]
    assert [t["id"] for t in seen] == [t["id"] for t in whole]


def test_a_cursor_from_another_query_or_a_bad_order_is_422(
    studio: Any, show: dict[str, Any]
) -> None:
    first = page(studio, None)
    body = {"entity_type": "Task", "filters": [], "fields": FIELDS, "limit": 4,
            "cursor": first["next"], "order": [{"field_name": "content"}]}  # fmt: skip
    error = studio.call("find", body, role="viewer", status=422)["error"]
    assert error["details"]["field"] == "cursor"
    for bad, field in (
        ("entity.Shot.nope", "nope"),
        ("entity.Playlist.code", "entity.Playlist.code"),
        ("task_assignees", "task_assignees"),
        ("entity", "entity"),
    ):
        body = {"entity_type": "Task", "filters": [], "order": [{"field_name": bad}]}
        error = studio.call("find", body, role="viewer", status=422)["error"]
        assert error["details"]["field"] == field, bad


def test_the_latest_preset_keeps_one_version_per_entity(studio: Any, show: dict[str, Any]) -> None:
    anim, comp = show["steps"]
    studio.call("update", {"entity_type": "Step", "entity_id": anim["id"],
                           "data": {"list_order": 1}})  # fmt: skip
    studio.call("update", {"entity_type": "Step", "entity_id": comp["id"],
                           "data": {"list_order": 2}})  # fmt: skip
    shot = {"type": "Shot", "id": show["shots"][0]["id"]}
    other = {"type": "Shot", "id": show["shots"][1]["id"]}
    anim_task, comp_task = show["tasks"][0], show["tasks"][1]

    def version(code: str, entity: dict[str, Any], task: dict[str, Any]) -> int:
        data = {"project": show["proj"], "code": code, "entity": entity,
                "sg_task": {"type": "Task", "id": task["id"]}}  # fmt: skip
        return int(studio.create("Version", data)["id"])

    version("a_v001", shot, anim_task)
    comp_v1 = version("c_v001", shot, comp_task)
    anim_v2 = version("a_v002", shot, anim_task)
    other_v1 = version("o_v001", other, show["tasks"][2])
    retired = version("o_v002", other, show["tasks"][2])
    studio.call("delete", {"entity_type": "Version", "entity_id": retired})

    def latest(by: str, filters: list[Any] | None = None) -> list[int]:
        presets = [{"preset_name": "LATEST", "latest_by": by}]
        found = studio.find("Version", filters or [], ["code"],
                            additional_filter_presets=presets)  # fmt: skip
        return sorted(v["id"] for v in found)

    assert latest("ENTITIES_CREATED_AT") == sorted([anim_v2, other_v1])
    assert latest("BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT") == sorted([comp_v1, other_v1])
    # ANDed with the filters: the latest of the shot is not an anim version, so none.
    assert latest("BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT",
                  [["code", "starts_with", "a_"]]) == []  # fmt: skip
    for body, field in (
        ({"entity_type": "Version", "additional_filter_presets": [{"preset_name": "NEWEST"}]},
         "preset_name"),
        ({"entity_type": "Version",
          "additional_filter_presets": [{"preset_name": "LATEST", "latest_by": "X"}]},
         "latest_by"),
        ({"entity_type": "Shot", "additional_filter_presets": [
            {"preset_name": "LATEST", "latest_by": "ENTITIES_CREATED_AT"}]}, "preset_name"),
    ):  # fmt: skip
        error = studio.call("find", {"filters": [], **body}, role="viewer", status=422)["error"]
        assert error["details"]["field"] == field


def test_an_order_two_links_away_pages_in_the_order_of_its_values(
    studio: Any, show: dict[str, Any]
) -> None:
    """Tasks by their shot's sequence (desc), then their shot (asc), then their step: three
    linked paths, two of them two links away, read page by page with the keyset cursor."""
    studio.create(
        "Task",
        {"project": show["proj"], "content": "Model",
         "entity": {"type": "Asset", "id": show["asset"]["id"]}},
    )  # fmt: skip
    paths = ["entity.Shot.sg_sequence.Sequence.code", "entity.Shot.code", "step.Step.code"]
    order = [{"field_name": paths[0], "direction": "desc"}, {"field_name": paths[1]},
             {"field_name": paths[2]}]  # fmt: skip
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = {"entity_type": "Task", "filters": [], "fields": paths, "order": order,
                "limit": 3, "cursor": cursor}  # fmt: skip
        found = studio.call("find", body, role="viewer")
        seen.extend(found["items"])
        cursor = found["next"]
        if not cursor:
            break
    every = studio.find("Task", [], paths)
    assert sorted(t["id"] for t in seen) == sorted(t["id"] for t in every)

    ordered = sorted(every, key=lambda t: t["id"])
    for path, descending in reversed(list(zip(paths, (True, False, False), strict=True))):
        ordered.sort(key=lambda t, p=path: t[p] or "", reverse=descending)  # stable sorts
        ordered.sort(key=lambda t, p=path: t[p] is None)  # NULLs last either way
    assert [t["id"] for t in seen] == [t["id"] for t in ordered]
    assert seen[0][paths[0]] == "SEQ020" and seen[-1][paths[0]] is None  # the asset's task
