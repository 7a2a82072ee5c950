"""Per-token rate limits on the studio API: 429 in the envelope with Retry-After."""

from __future__ import annotations

import io
from typing import Any

import pytest

from popcorn.config import reset_settings

FIND = {"entity_type": "Project", "filters": []}


def test_a_token_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POPCORN_STUDIO_RATE_PER_S", "0.5")
    monkeypatch.setenv("POPCORN_STUDIO_RATE_BURST", "3")
    reset_settings()
    limits = api.get("/api/v1/studio/limits", role="viewer")  # the first of three
    assert (limits.json["rate_per_s"], limits.json["rate_burst"]) == (0.5, 3)
    assert limits.headers["X-RateLimit-Limit"] == "3"
    assert limits.headers["X-RateLimit-Remaining"] == "2"
    for _ in range(2):
        assert api.post("/api/v1/studio/find", json=FIND, role="viewer").status_code == 200
    refused = api.post("/api/v1/studio/find", json=FIND, role="viewer")
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 2  # one token back at 0.5 a second
    assert 0 < refused.json["error"]["details"]["retry_after_s"] <= 2
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # Another token has its own bucket; routes outside the studio are not limited.
    assert api.post("/api/v1/studio/find", json=FIND, role="operator").status_code == 200
    assert api.get("/api/v1/jobs", role="viewer").status_code == 200


def test_a_zero_rate_turns_the_limit_off(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POPCORN_STUDIO_RATE_PER_S", "0")
    monkeypatch.setenv("POPCORN_STUDIO_RATE_BURST", "1")
    reset_settings()
    for _ in range(5):
        answer = api.post("/api/v1/studio/find", json=FIND, role="viewer")
        assert answer.status_code == 200
        assert "X-RateLimit-Limit" not in answer.headers


def test_the_upload_form_is_in_the_openapi_document_and_checked(api: Any) -> None:
    spec = api.get("/openapi.json").json
    body = spec["paths"]["/api/v1/studio/upload"]["post"]["requestBody"]["content"]
    schema = body["multipart/form-data"]["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"entity_type", "entity_id", "file"}
    assert schema["properties"]["file"]["format"] == "binary"
    assert {"field_name", "display_name", "tag_list"} <= set(schema["properties"])
    for form, field in (
        ({"entity_type": "Version", "entity_id": "1"}, "file"),
        ({"entity_type": "Version", "entity_id": "one", "file": (io.BytesIO(b"x"), "x.bin")},
         "entity_id"),
    ):  # fmt: skip
        refused = api.post(
            "/api/v1/studio/upload", data=form, content_type="multipart/form-data", role="operator"
        )
        assert refused.status_code == 422, refused.json
        assert field in str(refused.json["error"]["details"]), refused.json


def test_people_are_human_users_that_assignees_and_mentions_filter_on(
    studio: Any, show: dict[str, Any]
) -> None:
    bo = studio.create("HumanUser", {"login": "bo", "name": "Bo Chen", "email": "bo@x.test"})
    bo_ref = {"type": "HumanUser", "id": bo["id"]}
    task = show["tasks"][0]
    # Assignees take references or logins, as scripts name people.
    studio.call(
        "update",
        {"entity_type": "Task", "entity_id": task["id"], "data": {"task_assignees": ["bo"]},
         "multi_entity_update_modes": {"task_assignees": "add"}},
    )  # fmt: skip
    both = studio.find("Task", [["task_assignees", "is", bo_ref]], ["task_assignees"])
    assert [t["id"] for t in both] == [task["id"]]
    assert [a["name"] for a in both[0]["task_assignees"]] == ["Ana Lima", "Bo Chen"]
    anas = studio.find("Task", [["task_assignees.HumanUser.login", "is", "ana"]], ["content"])
    assert len(anas) == len(show["tasks"])
    assert studio.find("Task", [["task_assignees", "not_in", [show["ana"]]]], ["id"]) == []
    studio.create(
        "Note",
        {"project": show["proj"], "content": "@bo see comp", "addressings_to": [bo_ref]},
    )
    mentions = studio.find("Note", [["addressings_to.HumanUser.login", "is", "bo"]], ["content"])
    assert [n["content"] for n in mentions] == ["@bo see comp"]
    users = studio.find("HumanUser", [["login", "in", ["ana", "bo"]]], ["login", "tasks"])
    assert {u["login"]: len(u["tasks"]) for u in users} == {"ana": len(show["tasks"]), "bo": 1}
    # An unknown login is refused by field; logins are unique.
    unknown = studio.call(
        "update",
        {"entity_type": "Task", "entity_id": task["id"], "data": {"task_assignees": ["zed"]}},
        status=422,
    )
    assert unknown["error"]["details"]["field"] == "task_assignees"
    assert "zed" in unknown["error"]["message"]
    again = studio.call("create", {"entity_type": "HumanUser", "data": {"login": "bo"}}, status=409)
    assert again["error"]["code"] == "conflict"
