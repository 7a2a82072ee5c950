"""Errors of the Bolt agent: refusals become HTTP envelopes, failures become run outcomes.

The agent runs alone on every host, so it does not import the Popcorn core; the
envelope shape and codes match the core's (`{"error": {"code", "message", "details"}}`).
"""

from __future__ import annotations

from typing import Any


class AgentRequestError(Exception):
    """A request the agent refuses before running anything; rendered as a 4xx/5xx envelope."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def envelope(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class MalformedRequest(AgentRequestError, ValueError):
    status = 400
    code = "bad_request"


class Forbidden(AgentRequestError):
    status = 403
    code = "forbidden"


class NotFound(AgentRequestError):
    status = 404
    code = "not_found"


class UnknownAction(NotFound):
    code = "unknown_action"


class MethodNotAllowed(AgentRequestError):
    status = 405
    code = "method_not_allowed"


class LengthRequired(AgentRequestError):
    status = 411
    code = "length_required"


class BodyTooLarge(AgentRequestError, ValueError):
    status = 413
    code = "body_too_large"


class InvalidArguments(AgentRequestError, ValueError):
    """Arguments that do not match the action's schema; `details.errors` names each field."""

    status = 422
    code = "validation_error"


class Busy(AgentRequestError):
    status = 503
    code = "busy"


class ActionFailed(Exception):
    """Raised by an action to end its run as `failed` (the action ran, the outcome is bad)."""

    def __init__(self, message: str, *, exit_code: int | None = None, result: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.result = result


class ActionTimeout(Exception):
    """Raised inside a run when its deadline passed; the run ends as `timeout`."""


class ActionCancelled(Exception):
    """Raised inside a run when its caller went away or the agent is stopping."""


class ManifestError(ValueError):
    """A script manifest that cannot be loaded; the message names the file and the field."""


class ConfigError(ValueError):
    """An agent configuration that cannot be loaded; the message names the file and the field."""


class AgentError(RuntimeError):
    """What `AgentClient` raises for any failure: transport, garbage response or error envelope."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "transport_error",
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details = details or {}
