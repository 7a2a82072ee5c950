"""Every operation in the OpenAPI document, called without a token, with a wrong one and with
each role: a new route cannot ship unprotected, and no role gets a 500 or writes as a viewer.

Generated from the document the app serves, so it covers routes added after this file.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from popcorn.app import is_public

METHODS = ("get", "post", "put", "patch", "delete")
ROLES = ("viewer", "operator", "admin")
# Reads that take their query as a POST body (shotgun_api3's conventions): reviewed one by
# one, because a viewer may call them; any other write a viewer can reach fails the test.
READ_ONLY_POSTS = {
    ("POST", "/api/v1/studio/find"),
    ("POST", "/api/v1/studio/summarize"),
    ("POST", "/api/v1/devicelab/query"),  # parses a query, touches no table
    ("POST", "/api/v1/devicelab/predictions"),  # a read-only session over history
}


def operations(app: Any) -> list[tuple[str, str, dict[str, Any]]]:
    spec = app.test_client().get("/openapi.json").json
    return [
        (method.upper(), path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def concrete(path: str, operation: dict[str, Any]) -> str:
    """The path with each parameter filled by a value of its declared type."""
    kinds = {
        p["name"]: p.get("schema", {}).get("type", "string")
        for p in operation.get("parameters", [])
        if p.get("in") == "path"
    }
    return re.sub(r"{([^}]+)}", lambda m: "1" if kinds.get(m.group(1)) == "integer" else "x1", path)


def call(client: Any, method: str, url: str, operation: dict[str, Any], token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        return client.open(url, method=method, headers=headers, json={})
    return client.open(url, method=method, headers=headers)


def test_the_document_lists_the_api(app: Any) -> None:
    ops = operations(app)
    assert len(ops) > 50
    public = {path for _, path, _ in ops if is_public(path)}
    assert public <= {"/healthz", "/readyz", "/metrics"} | {
        p for p in public if p.startswith("/pki/")
    }


def test_every_operation_needs_a_valid_token(app: Any, tokens: dict[str, str]) -> None:
    client = app.test_client()
    unprotected = []
    for method, path, operation in operations(app):
        if is_public(path):
            assert operation["security"] == [], path
            continue
        assert operation["security"] == [{"bearer": []}], path
        url = concrete(path, operation)
        for token in (None, "pop_wrong-token"):
            response = call(client, method, url, operation, token)
            if response.status_code != 401 or response.json["error"]["code"] != "unauthorized":
                unprotected.append((method, path, token, response.status_code))
    assert not unprotected


def test_no_role_gets_a_server_error_and_viewers_never_write(
    app: Any, tokens: dict[str, str]
) -> None:
    client = app.test_client()
    broken, viewer_wrote, undeclared = [], [], []
    for method, path, operation in operations(app):
        url = concrete(path, operation)
        for role in ROLES:
            response = call(client, method, url, operation, tokens[role])
            status = response.status_code
            if status >= 500 and not (path == "/readyz" and status == 503):
                broken.append((method, path, role, status))
            writes = method != "GET" and (method, path) not in READ_ONLY_POSTS
            if role == "viewer" and writes and not is_public(path) and status != 403:
                viewer_wrote.append((method, path, status))
            if status >= 400 and str(status) not in operation["responses"]:
                undeclared.append((method, path, role, status))
            if status >= 400:
                assert response.is_json, (method, path, role, status)
                assert set(response.json["error"]) == {"code", "message", "details"}
    assert not broken
    assert not viewer_wrote
    assert not undeclared, "\n".join(map(str, undeclared))


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_admin_routes_refuse_lower_roles(api: Any, role: str) -> None:
    refused = api.get("/api/v1/tokens", role="operator")
    assert refused.status_code == 403
    assert api.get("/api/v1/tokens", role="admin").status_code == 200
    created = api.post("/api/v1/tokens", role=role, json={"name": f"by-{role}", "role": "admin"})
    assert created.status_code == (403 if role == "operator" else 201)


def test_the_document_names_each_operations_role(app: Any) -> None:
    """`x-popcorn-role` says who may call what; only reviewed reads are open to viewers."""
    viewer_writes = set()
    for method, path, operation in operations(app):
        if is_public(path):
            assert "x-popcorn-role" not in operation, path
            continue
        assert operation["x-popcorn-role"] in ROLES, (method, path)
        if method != "GET" and operation["x-popcorn-role"] == "viewer":
            viewer_writes.add((method, path))
    assert viewer_writes == READ_ONLY_POSTS
    spec = app.test_client().get("/openapi.json").json
    assert spec["paths"]["/api/v1/tokens"]["post"]["x-popcorn-role"] == "admin"
