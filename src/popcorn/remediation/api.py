"""The remediation facade: what other domains may call, with typed answers.

Events' `runbook` action starts runbooks through `start_runbook`. Callers
import this module (after `popcorn.domains.require("remediation", ...)` when
remediation is optional for them), never `remediation.service` or its tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from popcorn.remediation import service
from popcorn.remediation.schemas import ExecutionRead

__all__ = ["ExecutionRead", "start_runbook"]


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
