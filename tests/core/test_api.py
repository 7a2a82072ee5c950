"""The API contract every domain inherits: auth, roles, errors, paging, ops routes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from popcorn.audit import AuditRecord
from popcorn.auth import ApiToken
from popcorn.db import session_scope


def count(model: Any) -> int:
    with session_scope(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_public_routes_answer_without_token(client: Any) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["checks"] == {"database": "ok", "redis": "ok"}
    assert client.get("/metrics").status_code == 200
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    assert "/api/v1/jobs" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_docs_assets_are_served_locally(client: Any) -> None:
    page = client.get("/docs").get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_missing_bad_and_revoked_tokens_get_401(api: Any, client: Any) -> None:
    missing = client.get("/api/v1/jobs")
    assert missing.status_code == 401
    assert missing.json["error"]["code"] == "unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    bad = client.get("/api/v1/jobs", headers={"Authorization": "Bearer pop_nope"})
    assert bad.status_code == 401
    assert api.delete("/api/v1/tokens/test-viewer").status_code == 200
    revoked = api.get("/api/v1/jobs", role="viewer")
    assert revoked.status_code == 401
    assert revoked.json["error"]["message"] == "token revoked"


def test_unknown_routes_need_a_token_too(client: Any, api: Any) -> None:
    assert client.get("/api/v1/nothing-here").status_code == 401
    found = api.get("/api/v1/nothing-here")
    assert found.status_code == 404
    assert found.json["error"]["code"] == "not_found"


def test_roles_viewer_reads_operator_changes_admin_manages_tokens(api: Any) -> None:
    assert api.get("/api/v1/jobs", role="viewer").status_code == 200
    job = {"task": "core.echo", "arguments": {}}
    weak = api.post("/api/v1/jobs", role="viewer", json=job)
    assert weak.status_code == 403
    assert weak.json["error"]["details"] == {"role": "viewer", "needed": "operator"}
    assert api.post("/api/v1/jobs", role="operator", json=job).status_code == 202
    assert api.get("/api/v1/tokens", role="operator").status_code == 403
    created = api.post("/api/v1/tokens", role="operator", json={"name": "x", "role": "viewer"})
    assert created.status_code == 403
    assert api.get("/api/v1/tokens", role="admin").status_code == 200


def test_token_secret_shown_once_and_stored_hashed(api: Any, client: Any) -> None:
    created = api.post("/api/v1/tokens", json={"name": "ci-bot", "role": "operator"})
    assert created.status_code == 201
    secret = created.json["token"]
    with session_scope(readonly=True) as session:
        row = session.scalar(select(ApiToken).where(ApiToken.name == "ci-bot"))
        assert row is not None
        assert secret not in (row.token_hash, row.hint)
    listed = api.get("/api/v1/tokens").json["items"]
    assert all("token" not in item for item in listed)
    me = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert me.json == {"name": "ci-bot", "role": "operator"}


def test_validation_errors_name_fields_and_write_nothing(api: Any) -> None:
    before = count(ApiToken)
    wrong_type = api.post(
        "/api/v1/tokens", json={"name": "x", "role": "viewer", "expires_days": "soon"}
    )
    assert wrong_type.status_code == 422
    assert "expires_days" in wrong_type.json["error"]["details"]["fields"]
    unknown = api.post("/api/v1/tokens", json={"name": "x", "role": "viewer", "colour": "red"})
    assert unknown.status_code == 422
    assert "colour" in unknown.json["error"]["details"]["fields"]
    bad_role = api.post("/api/v1/tokens", json={"name": "x", "role": "root"})
    assert bad_role.status_code == 422
    not_object = api.post("/api/v1/tokens", json=[1, 2])
    assert not_object.status_code == 422
    assert count(ApiToken) == before


def test_malformed_json_is_400_in_envelope(api: Any) -> None:
    response = api.post("/api/v1/tokens", data=b'{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"


def test_oversize_body_is_413(api: Any, app: Any) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = b'{"name": "' + b"x" * (limit + 10) + b'", "role": "viewer"}'
    response = api.post("/api/v1/tokens", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"


def test_wrong_method_is_405_in_envelope(api: Any) -> None:
    response = api.request("PUT", "/api/v1/whoami")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"


def test_changes_are_audited_with_actor_and_request_id(api: Any) -> None:
    response = api.post(
        "/api/v1/tokens",
        json={"name": "audited", "role": "viewer"},
        headers={"X-Request-ID": "req-123"},
    )
    assert response.headers["X-Request-ID"] == "req-123"
    token_id = response.json["id"]
    records = api.get(f"/api/v1/audit?object_type=token&object_id={token_id}").json["items"]
    assert len(records) == 1
    assert records[0]["actor"] == "token:test-admin"
    assert records[0]["request_id"] == "req-123"
    assert records[0]["diff"]["role"] == [None, "viewer"]
    by_actor = api.get("/api/v1/audit?actor=token:nobody").json
    assert by_actor["count"] == 0


def test_pagination_limit_cursor_offset_and_bad_params(api: Any) -> None:
    for i in range(7):
        api.post("/api/v1/tokens", json={"name": f"t{i}", "role": "viewer"})
    first = api.get("/api/v1/audit?actor=token:test-admin&limit=3").json
    assert first["count"] == 7 and len(first["items"]) == 3 and first["next"]
    second = api.get(f"/api/v1/audit?actor=token:test-admin&limit=3&cursor={first['next']}").json
    assert [r["id"] for r in second["items"]] == [first["items"][-1]["id"] + i for i in (1, 2, 3)]
    offset = api.get("/api/v1/audit?actor=token:test-admin&limit=3&offset=3").json
    assert [r["id"] for r in offset["items"]] == [r["id"] for r in second["items"]]
    assert api.get("/api/v1/audit?limit=1001").status_code == 422
    assert api.get("/api/v1/audit?limit=abc").status_code == 422
    assert api.get("/api/v1/audit?cursor=!!!").status_code == 422
    unknown = api.get("/api/v1/audit?colour=red")
    assert unknown.status_code == 422
    assert "object_type" in unknown.json["error"]["details"]["allowed"]


def test_filter_lookups(api: Any) -> None:
    for name in ("alpha", "beta", "gamma"):
        api.post("/api/v1/tokens", json={"name": name, "role": "viewer"})
    ids = [r["object_id"] for r in api.get("/api/v1/audit?object_type=token").json["items"]]
    picked = api.get(f"/api/v1/audit?object_id__in={ids[0]},{ids[2]}").json["items"]
    assert sorted(r["object_id"] for r in picked) == sorted([ids[0], ids[2]])
    partial = api.get("/api/v1/audit?actor__ic=TEST-ADM").json
    assert partial["count"] == 3
    later = api.get("/api/v1/audit?time__gte=2999-01-01T00:00:00").json
    assert later["count"] == 0
    assert api.get("/api/v1/audit?time__gte=yesterday").status_code == 422


def test_metrics_count_requests_by_route(api: Any, client: Any) -> None:
    api.get("/api/v1/jobs")
    body = client.get("/metrics").get_data(as_text=True)
    assert 'popcorn_http_requests_total{method="GET",route="/api/v1/jobs",status="200"}' in body
    assert "popcorn_http_request_duration_seconds_bucket" in body


def test_audit_covers_token_revocation(api: Any) -> None:
    api.delete("/api/v1/tokens/test-operator")
    assert count(AuditRecord) >= 1
    records = api.get("/api/v1/audit?action=revoke").json["items"]
    assert records[0]["diff"] == {"revoked": [False, True]}
