"""What every request must be before any route sees it: sizes, types and shapes.

A fuzzer found the same few crashes behind dozens of routes: path ids past
64 bits overflowing the database, JSON nested 20,000 deep exhausting the
stack, NUL bytes in filters, text bodies read as JSON. These checks run once
in the request pipeline, so a new route is protected without doing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Request, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, UnsupportedMediaType
from werkzeug.routing import IntegerConverter, Map

from popcorn.errors import InvalidInput
from popcorn.lookup import MAX_ID, int_value  # noqa: F401  (int_value lived here)

MAX_JSON_DEPTH = 100
MAX_URL_BYTES = 16 * 1024
JSON_MIMETYPE = "application/json"


class BoundedIntConverter(IntegerConverter):
    """`<int:id>` that matches ASCII digits only and never a value past a 64-bit id."""

    regex = r"[0-9]+"

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = None,
                 max: int | None = MAX_ID, signed: bool = False) -> None:  # fmt: skip
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
        if signed:
            self.regex = r"-?[0-9]+"
            if self.min is None:
                self.min = -MAX_ID - 1


class JSONTooDeep(ValueError):
    """A JSON document nested past MAX_JSON_DEPTH (or past the interpreter's stack)."""


def check_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested too deep or holding NUL characters (no database stores them)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("strings may not contain NUL (\\u0000) characters")
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise JSONTooDeep(f"JSON nested more than {max_depth} levels deep")
        if isinstance(item, dict):
            stack.extend((key, depth) for key in item)
            stack.extend((child, depth + 1) for child in item.values())
        else:
            stack.extend((child, depth + 1) for child in item)


class GuardedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing bodies too deep to walk or holding NUL characters."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise JSONTooDeep(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
        check_json(value)
        return value


class GuardedRequest(Request):
    """Say why a JSON body was refused instead of Flask's generic 400."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise UnsupportedMediaType(f"send the body as {JSON_MIMETYPE}")
        raise BadRequest(f"request body is not valid JSON: {e}")


def _has_body() -> bool:
    return (
        bool(request.content_length)
        or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    )


def check_request(view: Callable[..., Any] | None) -> None:
    """Checks on the request line and body type, after authentication, before the view."""
    if len(request.url.encode()) > MAX_URL_BYTES:
        raise _Status(414, f"the URL is longer than {MAX_URL_BYTES:,} bytes")
    if "\x00" in request.path:
        raise NotFound("no such resource")
    for key, value in request.args.items(multi=True):
        if "\x00" in key or "\x00" in value:
            name = key.replace("\x00", "\\0")
            raise InvalidInput(
                f"query parameter {name!r} contains a NUL character", details={"parameter": name}
            )
    spec = getattr(view, "_spec", None) or {}
    takes_json = spec.get("body") is not None and spec.get("content_type") == JSON_MIMETYPE
    if takes_json and _has_body() and not request.is_json:
        sent = request.mimetype or "a body without a type"
        raise UnsupportedMediaType(f"this route takes a {JSON_MIMETYPE} body, not {sent}")


class _Status(HTTPException):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
