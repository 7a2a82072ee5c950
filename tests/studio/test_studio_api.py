"""The studio entity API: shotgun_api3 filters, writes, batches, summaries, files, workflows."""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlalchemy import func, select

from popcorn.audit import AuditRecord
from popcorn.db import session_scope
from popcorn.outbox import OutboxEvent

SHOT = ["code", "sg_status_list", "sg_sequence", "sg_cut_duration"]


def codes(items: list[dict[str, Any]], field: str = "code") -> list[str]:
    return sorted(item[field] for item in items)


def test_find_with_filters_linked_fields_and_groups(studio: Any, show: dict[str, Any]) -> None:
    first = show["shots"][0]
    studio.call(
        "update",
        {"entity_type": "Shot", "entity_id": first["id"], "data": {"sg_status_list": "ip"}},
    )
    found = studio.find(
        "Shot", [["sg_status_list", "is", "ip"], ["code", "starts_with", "SEQ010"]], SHOT
    )
    assert [s["code"] for s in found] == ["SEQ010_0010"]
    assert found[0]["sg_sequence"] == {
        "type": "Sequence",
        "id": show["sequences"][0]["id"],
        "name": "SEQ010",
    }
    assert found[0]["sg_cut_duration"] == 10
    tasks = studio.find(
        "Task",
        [["entity.Shot.code", "starts_with", "SEQ020"], ["step.Step.short_name", "is", "comp"]],
        ["content", "entity", "entity.Shot.code", "entity.Shot.sg_sequence.Sequence.code"],
    )
    assert codes(tasks, "entity.Shot.code") == ["SEQ020_0010", "SEQ020_0020", "SEQ020_0030"]
    assert {t["entity.Shot.sg_sequence.Sequence.code"] for t in tasks} == {"SEQ020"}
    two_hops = studio.find(
        "Task", [["entity.Shot.sg_sequence.Sequence.code", "is", "SEQ010"]], ["content"]
    )
    assert len(two_hops) == 6
    group = {
        "filter_operator": "any",
        "filters": [["code", "ends_with", "0010"], ["sg_cut_duration", "greater_than", 25]],
    }
    either = studio.find("Shot", [["sg_sequence.Sequence.code", "is", "SEQ010"], group], ["code"])
    assert codes(either) == ["SEQ010_0010", "SEQ010_0030"]
    anyof = studio.find(
        "Shot",
        [["code", "is", "SEQ010_0020"], ["code", "is", "SEQ020_0020"]],
        ["code"],
        filter_operator="any",
    )
    assert codes(anyof) == ["SEQ010_0020", "SEQ020_0020"]
    cast = studio.find(
        "Shot", [["assets", "is", {"type": "Asset", "id": show["asset"]["id"]}]], ["code", "assets"]
    )
    assert codes(cast) == ["SEQ010_0010", "SEQ020_0010"]
    assert cast[0]["assets"] == [{"type": "Asset", "id": show["asset"]["id"], "name": "hero"}]
    by_asset = studio.find("Shot", [["assets.Asset.sg_asset_type", "is", "Character"]], ["code"])
    assert len(by_asset) == 2
    ranged = studio.find(
        "Shot",
        [["sg_cut_duration", "between", 15, 25]],
        ["code"],
        order=[{"field_name": "code", "direction": "desc"}],
    )
    assert [s["code"] for s in ranged] == ["SEQ020_0020", "SEQ010_0020"]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ([["sg_colour", "is", "red"]], "sg_colour"),
        ([["sg_cut_in", "starts_with", "10"]], "sg_cut_in"),
        ([["sg_cut_in", "is", "ten"]], "sg_cut_in"),
        ([["sg_sequence.Sequence.nope", "is", 1]], "sg_sequence.Sequence.nope"),
        ([["sg_sequence.Playlist.code", "is", "x"]], "sg_sequence.Playlist.code"),
        ([["entity.Shot.code", "is", "x"]], "entity.Shot.code"),
        ([["sg_sequence", "is", {"type": "Shot", "id": 1}]], "sg_sequence"),
        ([{"filter_operator": "any", "filters": [["code", "greater_than", "a"]]}], "code"),
    ],
)
def test_bad_filters_are_422_naming_the_field(
    studio: Any, show: dict[str, Any], filters: list[Any], field: str
) -> None:
    body = {"entity_type": "Shot", "filters": filters, "fields": ["code"]}
    error = studio.call("find", body, role="viewer", status=422)["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["field"] == field


def test_unknown_entity_type_and_fields_are_refused(studio: Any) -> None:
    error = studio.call(
        "find", {"entity_type": "Spaceship", "filters": []}, role="viewer", status=422
    )
    assert error["error"]["details"]["field"] == "entity_type"
    error = studio.call(
        "find",
        {"entity_type": "Shot", "filters": [], "fields": ["code", "budget"]},
        role="viewer",
        status=422,
    )
    assert error["error"]["details"]["field"] == "budget"


def test_cursor_pages_through_everything_once(studio: Any, show: dict[str, Any]) -> None:
    seen: list[int] = []
    cursor = None
    while True:
        page = studio.call(
            "find",
            {"entity_type": "Task", "filters": [], "limit": 5, "cursor": cursor},
            role="viewer",
        )
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(t["id"] for t in show["tasks"]) and len(seen) == len(set(seen))
    limits = studio.api.get("/api/v1/studio/limits", role="viewer").json
    too_big = studio.call(
        "find",
        {"entity_type": "Task", "filters": [], "limit": limits["max_page_size"] + 1},
        role="viewer",
        status=422,
    )
    assert too_big["error"]["details"]["field"] == "limit"
    bad = studio.call(
        "find", {"entity_type": "Task", "filters": [], "cursor": "!!"}, role="viewer", status=422
    )
    assert bad["error"]["details"]["field"] == "cursor"


def test_writes_check_references_statuses_and_frames(studio: Any, show: dict[str, Any]) -> None:
    proj = show["proj"]
    missing = studio.call(
        "create",
        {
            "entity_type": "Shot",
            "data": {
                "project": proj,
                "code": "X",
                "sg_sequence": {"type": "Sequence", "id": 999999},
            },
        },
        status=422,
    )
    assert missing["error"]["details"] == {
        "field": "sg_sequence",
        "where": "data",
        "type": "Sequence",
        "id": 999999,
    }
    status = studio.call(
        "create",
        {"entity_type": "Shot", "data": {"project": proj, "code": "X", "sg_status_list": "bogus"}},
        status=422,
    )
    assert status["error"]["details"]["field"] == "sg_status_list"
    frames = studio.call(
        "create",
        {
            "entity_type": "Shot",
            "data": {"project": proj, "code": "X", "sg_cut_in": 1050, "sg_cut_out": 1001},
        },
        status=422,
    )
    assert frames["error"]["details"]["field"] == "sg_cut_out"
    gone = studio.api.post(
        "/api/v1/studio/update",
        json={"entity_type": "Shot", "entity_id": 999999, "data": {"code": "Y"}},
        role="operator",
    )
    assert gone.status_code == 404
    readonly = studio.call(
        "update",
        {
            "entity_type": "Shot",
            "entity_id": show["shots"][0]["id"],
            "data": {"sg_cut_duration": 3},
        },
        status=422,
    )
    assert readonly["error"]["details"]["field"] == "sg_cut_duration"
    with session_scope(readonly=True) as session:
        assert (
            session.scalar(
                select(func.count()).select_from(AuditRecord).where(AuditRecord.object_id == "X")
            )
            == 0
        )
    assert len(studio.find("Shot", [["code", "is", "X"]])) == 0


def test_changes_are_audited_and_announced(studio: Any, show: dict[str, Any]) -> None:
    shot = show["shots"][1]
    studio.call(
        "update", {"entity_type": "Shot", "entity_id": shot["id"], "data": {"sg_status_list": "ip"}}
    )
    with session_scope(readonly=True) as session:
        events = list(
            session.scalars(
                select(OutboxEvent)
                .where(
                    OutboxEvent.object_type == "studio_shot",
                    OutboxEvent.object_id == str(shot["id"]),
                )
                .order_by(OutboxEvent.id)
            )
        )
        records = list(
            session.scalars(
                select(AuditRecord).where(
                    AuditRecord.object_type == "studio_shot",
                    AuditRecord.object_id == str(shot["id"]),
                )
            )
        )
    assert [e.type for e in events] == [
        "studio.shot.created",
        "studio.shot.updated",
        "studio.shot.status_changed",
    ]
    assert events[-1].payload["from"] == "wtg" and events[-1].payload["to"] == "ip"
    assert [r.action for r in records] == ["create", "update"]
    assert records[-1].diff["sg_status_list"] == ["wtg", "ip"]


def test_workflow_transitions_are_enforced(studio: Any, api: Any, show: dict[str, Any]) -> None:
    workflow = {
        "statuses": ["wtg", "ip", "fin"],
        "default": "wtg",
        "transitions": {"wtg": ["ip"], "ip": ["fin", "wtg"]},
    }
    assert (
        api.put("/api/v1/studio/workflows/Shot", json=workflow, role="operator").status_code == 403
    )
    response = api.put("/api/v1/studio/workflows/Shot", json=workflow, role="admin")
    assert response.status_code == 200, response.json
    shot = show["shots"][2]
    jump = studio.call(
        "update",
        {"entity_type": "Shot", "entity_id": shot["id"], "data": {"sg_status_list": "fin"}},
        status=422,
    )
    assert jump["error"]["details"]["field"] == "sg_status_list" and jump["error"]["details"][
        "allowed"
    ] == ["ip"]
    studio.call(
        "update", {"entity_type": "Shot", "entity_id": shot["id"], "data": {"sg_status_list": "ip"}}
    )
    studio.call(
        "update",
        {"entity_type": "Shot", "entity_id": shot["id"], "data": {"sg_status_list": "fin"}},
    )
    retired = studio.call(
        "update",
        {"entity_type": "Shot", "entity_id": shot["id"], "data": {"sg_status_list": "hld"}},
        status=422,
    )
    assert retired["error"]["details"]["valid_values"] == ["wtg", "ip", "fin"]


def test_batch_is_all_or_nothing(studio: Any, show: dict[str, Any]) -> None:
    proj = show["proj"]
    good = [
        {
            "request_type": "create",
            "entity_type": "Shot",
            "data": {"project": proj, "code": f"B{i}"},
        }
        for i in range(3)
    ]
    bad = [
        *good,
        {
            "request_type": "update",
            "entity_type": "Shot",
            "entity_id": show["shots"][0]["id"],
            "data": {"sg_cut_in": "soon"},
        },
    ]
    error = studio.call("batch", {"requests": bad}, status=422)["error"]
    assert error["details"]["request"] == 3 and error["details"]["field"] == "sg_cut_in"
    assert studio.find("Shot", [["code", "starts_with", "B"]]) == []
    results = studio.call(
        "batch",
        {
            "requests": [
                *good,
                {
                    "request_type": "delete",
                    "entity_type": "Shot",
                    "entity_id": show["shots"][0]["id"],
                },
            ]
        },
    )["results"]
    assert [r["code"] for r in results[:3]] == ["B0", "B1", "B2"] and results[3] is True
    assert len(studio.find("Shot", [["code", "starts_with", "B"]])) == 3


def test_delete_and_revive(studio: Any, show: dict[str, Any]) -> None:
    shot = show["shots"][5]
    ref = {"entity_type": "Shot", "entity_id": shot["id"]}
    assert studio.call("delete", ref) == {"result": True}
    assert studio.call("delete", ref) == {"result": False}
    assert studio.find("Shot", [["id", "is", shot["id"]]]) == []
    assert [s["id"] for s in studio.find("Shot", [], retired_only=True)] == [shot["id"]]
    assert studio.call("revive", ref) == {"result": True}
    assert len(studio.find("Shot", [["id", "is", shot["id"]]])) == 1


def test_summarize_counts_by_step_and_status(studio: Any, show: dict[str, Any]) -> None:
    studio.call(
        "update",
        {
            "entity_type": "Task",
            "entity_id": show["tasks"][0]["id"],
            "data": {"sg_status_list": "ip"},
        },
    )
    answer = studio.call(
        "summarize",
        {
            "entity_type": "Task",
            "filters": [["project", "is", show["proj"]]],
            "summary_fields": [{"field": "id", "type": "count"}],
            "grouping": [
                {"field": "step", "type": "exact"},
                {"field": "sg_status_list", "type": "exact"},
            ],
        },
        role="viewer",
    )
    assert answer["summaries"] == {"id": 12}
    anim = next(g for g in answer["groups"] if g["group_name"] == "Animation")
    assert anim["summaries"] == {"id": 6}
    assert {g["group_value"]: g["summaries"]["id"] for g in anim["groups"]} == {"ip": 1, "wtg": 5}
    total = studio.call(
        "summarize",
        {
            "entity_type": "Shot",
            "filters": [],
            "summary_fields": [
                {"field": "sg_cut_duration", "type": "sum"},
                {"field": "sg_cut_in", "type": "maximum"},
            ],
        },
        role="viewer",
    )
    assert total["summaries"] == {"sg_cut_duration": 120, "sg_cut_in": 1001}


def test_playlists_keep_their_order_and_notes_thread(studio: Any, show: dict[str, Any]) -> None:
    proj = show["proj"]
    versions = [
        studio.create(
            "Version",
            {
                "project": proj,
                "code": f"v{i}",
                "entity": {"type": "Shot", "id": show["shots"][0]["id"]},
                "sg_first_frame": 1001,
                "sg_last_frame": 1010,
            },
        )
        for i in range(3)
    ]
    refs = [{"type": "Version", "id": v["id"]} for v in reversed(versions)]
    playlist = studio.create(
        "Playlist",
        {"project": proj, "code": "dailies", "versions": refs},
        return_fields=["versions"],
    )
    assert [v["id"] for v in playlist["versions"]] == [v["id"] for v in reversed(versions)]
    studio.call(
        "update",
        {
            "entity_type": "Playlist",
            "entity_id": playlist["id"],
            "data": {"versions": [refs[0]]},
            "multi_entity_update_modes": {"versions": "remove"},
        },
    )
    after = studio.find("Playlist", [["id", "is", playlist["id"]]], ["versions"])[0]
    assert [v["name"] for v in after["versions"]] == ["v1", "v0"]
    in_playlist = studio.find(
        "Version",
        [["playlists", "is", {"type": "Playlist", "id": playlist["id"]}]],
        ["code", "frame_range"],
    )
    assert codes(in_playlist) == ["v0", "v1"] and in_playlist[0]["frame_range"] == "1001-1010"
    note = studio.create(
        "Note",
        {
            "project": proj,
            "subject": "timing",
            "content": "@ana hold longer",
            "addressings_to": ["ana"],
            "note_links": [refs[1]],
        },
    )
    reply = studio.create(
        "Note", {"project": proj, "content": "done", "reply_to": {"type": "Note", "id": note["id"]}}
    )
    thread = studio.find(
        "Note", [["reply_to", "is", {"type": "Note", "id": note["id"]}]], ["content"]
    )
    assert [n["id"] for n in thread] == [reply["id"]]
    on_version = studio.find("Note", [["note_links", "is", refs[1]]], ["subject", "addressings_to"])
    assert on_version[0]["addressings_to"] == [{**show["ana"], "name": "Ana Lima"}]


def test_upload_download_and_size_limit(
    studio: Any, api: Any, show: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    version = studio.create("Version", {"project": show["proj"], "code": "v001"})
    form = {
        "entity_type": "Version",
        "entity_id": str(version["id"]),
        "field_name": "image",
        "file": (io.BytesIO(b"\x89PNG thumb"), "thumb.png"),
    }
    response = api.post(
        "/api/v1/studio/upload", data=form, content_type="multipart/form-data", role="operator"
    )
    assert response.status_code == 201, response.json
    att = response.json["id"]
    got = api.get(f"/api/v1/studio/attachments/{att}/download", role="viewer")
    assert got.status_code == 200 and got.data == b"\x89PNG thumb"
    image = studio.find("Version", [["id", "is", version["id"]]], ["image"])[0]["image"]
    assert image == f"/api/v1/studio/attachments/{att}/download"
    monkeypatch.setenv("POPCORN_STUDIO_UPLOAD_MAX_BYTES", "8")
    form = {
        "entity_type": "Version",
        "entity_id": str(version["id"]),
        "file": (io.BytesIO(b"x" * 9), "big.bin"),
    }
    refused = api.post(
        "/api/v1/studio/upload", data=form, content_type="multipart/form-data", role="operator"
    )
    assert refused.status_code == 413 and refused.json["error"]["details"]["field"] == "file"
    attachments = studio.find(
        "Attachment",
        [["attachment_links", "is", {"type": "Version", "id": version["id"]}]],
        ["filename"],
    )
    assert [a["filename"] for a in attachments] == ["thumb.png"]


def test_roles(api: Any, show: dict[str, Any]) -> None:
    body = {"entity_type": "Shot", "filters": []}
    assert api.post("/api/v1/studio/find", json=body, role="viewer").status_code == 200
    assert api.post("/api/v1/studio/find", json=body, role=None).status_code == 401
    create = {"entity_type": "Shot", "data": {"project": show["proj"], "code": "Z"}}
    assert api.post("/api/v1/studio/create", json=create, role="viewer").status_code == 403


def test_a_batch_cannot_reference_what_it_deleted(studio: Any, show: dict[str, Any]) -> None:
    shot = {"type": "Shot", "id": show["shots"][0]["id"]}
    version = {"project": show["proj"], "code": "v", "entity": shot}
    requests = [
        {"request_type": "create", "entity_type": "Version", "data": version},
        {"request_type": "delete", "entity_type": "Shot", "entity_id": shot["id"]},
        {"request_type": "create", "entity_type": "Version", "data": version},
    ]
    error = studio.call("batch", {"requests": requests}, status=422)["error"]
    assert error["details"]["request"] == 2 and error["details"]["field"] == "entity"
    assert len(studio.find("Shot", [["id", "is", shot["id"]]])) == 1


def test_archived_projects_can_be_left_out(studio: Any, show: dict[str, Any]) -> None:
    old = studio.create("Project", {"name": "Old Show", "archived": True})
    studio.create("Shot", {"project": {"type": "Project", "id": old["id"]}, "code": "OLD_0010"})
    assert len(studio.find("Shot", [])) == 7
    assert len(studio.find("Shot", [], include_archived_projects=False)) == 6
    error = studio.call(
        "summarize",
        {
            "entity_type": "Shot",
            "filters": [],
            "summary_fields": [{"field": "code", "type": "sum"}],
        },
        role="viewer",
        status=422,
    )
    assert error["error"]["details"]["field"] == "code"


def test_setting_a_playlist_reorders_it(studio: Any, show: dict[str, Any]) -> None:
    proj = show["proj"]
    refs = [
        {
            "type": "Version",
            "id": studio.create("Version", {"project": proj, "code": f"v{i}"})["id"],
        }
        for i in range(3)
    ]
    playlist = studio.create("Playlist", {"project": proj, "code": "p", "versions": refs})
    update = {"entity_type": "Playlist", "entity_id": playlist["id"]}
    studio.call("update", {**update, "data": {"versions": [refs[2], refs[0]]}})
    studio.call(
        "update",
        {
            **update,
            "data": {"versions": [refs[1]]},
            "multi_entity_update_modes": {"versions": "add"},
        },
    )
    found = studio.find("Playlist", [["id", "is", playlist["id"]]], ["versions"])[0]["versions"]
    assert [v["name"] for v in found] == ["v2", "v0", "v1"]
    version = studio.create(
        "Version",
        {"project": proj, "code": "v3", "playlists": [{"type": "Playlist", "id": playlist["id"]}]},
    )
    found = studio.find("Playlist", [["id", "is", playlist["id"]]], ["versions"])[0]["versions"]
    assert [v["id"] for v in found][-1] == version["id"]


def test_text_patterns_match_literally(studio: Any, show: dict[str, Any]) -> None:
    studio.create("Shot", {"project": show["proj"], "code": "it's_100%\\done"})
    assert codes(studio.find("Shot", [["code", "contains", "s_100%\\d"]], ["code"])) == [
        "it's_100%\\done"
    ]
    assert studio.find("Shot", [["code", "starts_with", "it's_1000"]], ["code"]) == []
    assert studio.find("Shot", [["code", "contains", "'; DROP TABLE studio_shots; --"]]) == []
    assert len(studio.find("Shot", [["code", "ends_with", "0010"]], ["code"])) == 2


def test_attachments_live_in_the_shared_object_store(
    studio: Any, api: Any, show: dict[str, Any], moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from popcorn.config import reset_settings

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="studio-files")
    monkeypatch.setenv("POPCORN_STORAGE_URL", "s3://studio-files/popcorn")
    monkeypatch.setenv("POPCORN_STORAGE_ENDPOINT_URL", moto_endpoint)
    reset_settings()
    try:
        version = studio.create("Version", {"project": show["proj"], "code": "v002"})
        form = {
            "entity_type": "Version",
            "entity_id": str(version["id"]),
            "file": (io.BytesIO(b"frame 1001"), "frame.exr"),
        }
        response = api.post(
            "/api/v1/studio/upload", data=form, content_type="multipart/form-data", role="operator"
        )
        assert response.status_code == 201, response.json
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="studio-files")["Contents"]]
        assert len(keys) == 1 and keys[0].startswith("popcorn/studio/attachments/")
        got = api.get(f"/api/v1/studio/attachments/{response.json['id']}/download", role="viewer")
        assert got.status_code == 200 and got.data == b"frame 1001"
    finally:
        monkeypatch.undo()
        reset_settings()
