"""The remediation facade: what other domains may call, with typed answers.

Events' `runbook` action starts runbooks through `start_runbook`; triage calls Bolt
actions on devices through `run_agent_action`. Callers
import this module (after `popcorn.domains.require("remediation", ...)` when
remediation is optional for them), never `remediation.service` or its tables.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from popcorn.errors import Unavailable
from popcorn.remediation import service
from popcorn.remediation.schemas import ExecutionRead

__all__ = ["AgentActionResult", "ExecutionRead", "run_agent_action", "start_runbook"]


def start_runbook(
    *,
    session: Session,
    runbook: str,
    inputs: dict[str, Any],
    target: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> ExecutionRead:
    """Start a runbook (validated, targets resolved, safety rails applied).

    The execution is `pending`, `queued` behind a concurrency limit, or
    `dropped`; NotFound for an unknown runbook, InvalidInput for bad inputs or
    targets, Conflict while the circuit breaker is open.
    """
    execution = service.start_runbook(
        session=session,
        runbook=runbook,
        inputs=inputs,
        target=target,
        trigger=trigger,
        dry_run=dry_run,
    )
    return ExecutionRead.model_validate(execution)


# --- calling a Bolt action on a device --------------------------------------------------------

AgentCallStatus = Literal[
    "ok", "failed", "timeout", "cancelled", "error",  # the agent ran it: the run's own status
    "unreachable", "refused", "bad_response", "oversized",  # the call itself did not work
]  # fmt: skip


class AgentActionResult(BaseModel):
    """One Bolt action run on one device, or why the call did not work.

    `reachable` is False only when nothing answered (no agent address, connection refused
    or timed out while connecting): callers treat such a host as down, not as failed.
    """

    model_config = ConfigDict(frozen=True)

    device: str
    url: str | None
    action: str
    status: AgentCallStatus
    reachable: bool
    result: Any = None
    error: str | None = None
    truncated: bool = False
    duration_s: float = 0.0
    size_bytes: int = 0


def run_agent_action(
    *,
    device: str,
    action: str,
    arguments: dict[str, Any],
    url: str | None = None,
    timeout: float = 60.0,
    max_bytes: int = 16 * 1024 * 1024,
) -> AgentActionResult:
    """Run a registered action on a device's Bolt agent over mutual TLS, as runbooks do.

    `url` is the device's agent address (inventory's `agent_url`); without it the latest
    heartbeat of the device is used. The answer is read up to `max_bytes` (beyond: status
    `oversized`, nothing parsed). Unavailable (503) when no Bolt client certificate is
    installed: that is the platform's problem, not the host's.
    """
    from popcorn.remediation.agent import AgentClient, AgentError, RunResult
    from popcorn.remediation.agents import agent_url_for
    from popcorn.remediation.engine import StepFailed, bolt_credentials

    def answer(
        status: AgentCallStatus, error: str, reachable: bool, size_bytes: int = 0
    ) -> AgentActionResult:
        return AgentActionResult(
            device=device,
            url=url,
            action=action,
            status=status,
            reachable=reachable,
            error=error[:500],
            size_bytes=size_bytes,
        )

    try:
        creds = bolt_credentials()
    except StepFailed as exc:
        raise Unavailable(exc.message, details={"device": device}) from exc
    url = url or agent_url_for(device)
    if not url:
        return answer("unreachable", "no agent address (inventory or heartbeat)", reachable=False)
    started = time.monotonic()
    try:
        client = AgentClient(url, creds.cert, creds.key, creds.ca, timeout=min(timeout, 10.0))
    except AgentError as exc:
        raise Unavailable(exc.message, details={"device": device}) from exc
    try:
        with client:
            raw = client.run_bounded(action, arguments, timeout=timeout, max_bytes=max_bytes)
    except AgentError as exc:
        if exc.code == "unreachable":
            return answer("unreachable", exc.message, reachable=False)
        if exc.code == "refused":
            return answer("refused", exc.message, reachable=True)
        if exc.code == "timeout":
            return answer("timeout", exc.message, reachable=True)
        return answer("bad_response", exc.message, reachable=True)
    if raw.oversized:
        return answer(
            "oversized",
            f"the agent's answer is larger than {max_bytes} bytes",
            reachable=True,
            size_bytes=len(raw.body),
        )
    body, code = raw.body, raw.status_code
    size = len(body)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        return answer("bad_response", f"HTTP {code}: not a JSON object", True, size_bytes=size)
    if code >= 400:
        error = parsed.get("error") if isinstance(parsed.get("error"), dict) else {}
        message = str((error or {}).get("message") or f"HTTP {code}")
        return answer("refused", message, reachable=True, size_bytes=size)
    try:
        run = RunResult.model_validate(parsed)
    except ValueError as exc:
        return answer("bad_response", f"malformed run result: {exc}", True, size_bytes=size)
    status = run.status if run.status in ("ok", "failed", "timeout", "cancelled") else "error"
    return AgentActionResult(
        device=device,
        url=url,
        action=action,
        status=status,
        reachable=True,
        result=run.result,
        error=run.error,
        truncated=run.truncated,
        duration_s=round(time.monotonic() - started, 3),
        size_bytes=size,
    )
