"""The OpenAPI document says what every operation can answer, errors included.

Routes declare their success answer; the errors come from the request pipeline
that every route shares (authentication, roles, body and query checks, the
error envelope), so they are declared here once, for every operation, the way
the pipeline gives them. A client generator or a fuzzer reading the document
then knows every status it may see.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
WRITES = {"put", "post", "delete", "patch"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The one error envelope of every answer that is not a success.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "examples": ["validation_error"]},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

DESCRIPTIONS = {
    400: "Malformed request (a body that is not valid JSON, nested too deep, NUL characters)",
    401: "Missing, invalid, expired or revoked bearer token",
    403: "The token's role may not do this (or an outbound target is not allowed)",
    404: "No such object (or an id that cannot exist)",
    409: "Conflicts with the current state (a duplicate, an object in use, a finished job)",
    413: "Request body larger than the installation's limit",
    414: "URL too long",
    415: "The body is not of a type this route takes (send application/json)",
    422: "Invalid input: a field, a filter, a paging argument or a query parameter",
}


def error_statuses(operation: dict[str, Any], method: str, public: bool) -> list[int]:
    """The error statuses the shared pipeline can give this operation."""
    statuses = [400, 404, 414, 422]
    if not public:
        statuses += [401, 403]
    if method in WRITES:  # a write may read a body even where it declares none (raw uploads)
        statuses += [409, 413, 415]
    elif "requestBody" in operation:
        statuses += [413, 415]
    return sorted(statuses)


def declare_errors(
    spec: dict[str, Any],
    is_public: Callable[[str], bool],
    roles: Mapping[tuple[str, str], str] | None = None,
) -> dict[str, Any]:
    """Add the error envelope and each operation's error answers, security and role to `spec`.

    `roles` maps (METHOD, OpenAPI path) to the role the route needs; it is published as
    `x-popcorn-role`, so clients and the auth matrix test read it from the document.
    """
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, item in spec.get("paths", {}).items():
        public = is_public(path)
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in error_statuses(operation, method, public):
                declared = responses.get(str(status), {})
                responses[str(status)] = {
                    "description": declared.get("description") or DESCRIPTIONS[status],
                    "content": {"application/json": {"schema": ref}},
                }
            operation["security"] = [] if public else [{"bearer": []}]
            role = (roles or {}).get((method.upper(), path))
            if role and not public:
                operation["x-popcorn-role"] = role
    return spec


def route_roles(app: Any, required: Callable[[Any, str], str]) -> dict[tuple[str, str], str]:
    """(METHOD, OpenAPI path) -> the role its view needs, for every route of `app`."""
    out: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        view = app.view_functions.get(rule.endpoint)
        for method in rule.methods or ():
            out[(method, path)] = required(view, method)
    return out
