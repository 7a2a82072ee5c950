"""The error types every layer raises, and the one envelope they turn into.

Services raise these; views and the CLI never build error responses by hand:
the API renders `{"error": {"code", "message", "details"}}` and the CLI prints
one line and exits non-zero.
"""

from __future__ import annotations

from typing import Any


class PopcornError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str = ""):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidInput(PopcornError, ValueError):
    status = 422
    code = "validation_error"


class NotFound(PopcornError):
    status = 404
    code = "not_found"


class Conflict(PopcornError):
    status = 409
    code = "conflict"


class Unauthorized(PopcornError):
    status = 401
    code = "unauthorized"


class Forbidden(PopcornError):
    status = 403
    code = "forbidden"


class Unavailable(PopcornError):
    status = 503
    code = "unavailable"


class Overloaded(PopcornError):
    """The server is busy right now: HTTP 429 with Retry-After, which well-behaved senders
    honour before they send again."""

    status = 429
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None):
        super().__init__(message, details={"retry_after_s": retry_after, **(details or {})})
        self.retry_after = retry_after


def envelope(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of a message, cut at `limit`, marked when more was hidden.

    What viewers see of an error: a traceback can carry paths, hosts and values that
    only operators may read.
    """
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0].strip()
    hidden = len(lines) > 1 or len(first) > limit
    return first[:limit] + (" (details hidden)" if hidden else "")
