"""An execution's life outside its steps: its job, reading it back, and ending it.

Shared by starting (service.py), approvals (approvals.py) and the runner (runner.py):
`enqueue_run` hands an execution to a worker, `finish` ends it (closing its steps and
approvals, freeing its concurrency slots and admitting waiters), and the readers return it
with its steps and approvals.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change
from popcorn.db import utcnow
from popcorn.errors import Conflict, NotFound, one_line
from popcorn.outbox import emit
from popcorn.remediation import engine, packs, rails
from popcorn.remediation.models import (
    Approval,
    RunbookExecution,
    StepRun,
)
from popcorn.remediation.tasks import HOUSEKEEPING_TASK, RUN_TASK

log = logging.getLogger("popcorn.remediation")

HOUSEKEEPING_SCHEDULE = "remediation.housekeeping"
HOUSEKEEPING_SECONDS = 15
INLINE_BACKOFF_MAX = 10.0
"""Retries due within this many seconds wait in the worker; later ones release it."""
MAX_JOB_TIMEOUT = 86400
OBJECT = "remediation_execution"


def job_timeout(cls: type[engine.Runbook]) -> int:
    total = 60.0
    for spec in cls.steps:
        attempts = spec.retries + 1
        total += spec.timeout * attempts + min(spec.max_backoff, INLINE_BACKOFF_MAX) * spec.retries
    return int(min(total, MAX_JOB_TIMEOUT))


def enqueue_run(
    session: Session,
    execution: RunbookExecution,
    cls: type[engine.Runbook] | None = None,
    delay: float | None = None,
) -> None:
    timeout = job_timeout(cls) if cls is not None else None
    job = jobs.enqueue(
        session,
        RUN_TASK,
        arguments={"execution_id": execution.id},
        delay_seconds=delay,
        timeout=timeout,
    )
    execution.job_id = job.id
    execution.status = "pending"
    execution.claim = None
    execution.updated_at = utcnow()


def ensure_housekeeping(session: Session) -> None:
    """The periodic task that expires approvals and fails orphaned executions exists."""
    exists = session.scalar(
        select(jobs.Schedule.id).where(jobs.Schedule.name == HOUSEKEEPING_SCHEDULE)
    )
    if exists is not None:
        return
    try:
        with session.begin_nested():
            jobs.create_schedule(
                session=session,
                name=HOUSEKEEPING_SCHEDULE,
                task=HOUSEKEEPING_TASK,
                queue="high",
                interval_seconds=HOUSEKEEPING_SECONDS,
            )
    except (IntegrityError, Conflict):
        pass  # another process created it first


# --- reading ---------------------------------------------------------------------------------


def get_execution(*, session: Session, execution_id: int, lock: bool = False) -> RunbookExecution:
    execution = session.get(RunbookExecution, execution_id, with_for_update=lock)
    if execution is None:
        raise NotFound(f"no execution {execution_id}", details={"id": execution_id})
    return execution


def step_runs(*, session: Session, execution_id: int) -> list[StepRun]:
    return list(
        session.scalars(
            select(StepRun).where(StepRun.execution_id == execution_id).order_by(StepRun.position)
        )
    )


def approvals_of(*, session: Session, execution_id: int) -> list[Approval]:
    return list(
        session.scalars(
            select(Approval).where(Approval.execution_id == execution_id).order_by(Approval.id)
        )
    )


def execution_detail(*, session: Session, execution_id: int, full: bool = True) -> dict[str, Any]:
    """An execution with its step timeline and approvals.

    `full=False` (viewers) keeps one line of every error and log message: a step's
    traceback can carry paths, hosts and values that only operators may read.
    """
    from popcorn.remediation.schemas import ApprovalRead, ExecutionRead, StepRunRead

    execution = get_execution(session=session, execution_id=execution_id)
    data = ExecutionRead.model_validate(execution).model_dump(mode="json")
    data["steps"] = [
        StepRunRead.model_validate(s).model_dump(mode="json")
        for s in step_runs(session=session, execution_id=execution_id)
    ]
    data["approvals"] = [
        ApprovalRead.model_validate(a).model_dump(mode="json")
        for a in approvals_of(session=session, execution_id=execution_id)
    ]
    if not full:
        data["error"] = one_line(data["error"])
        for step in data["steps"]:
            step["error"] = one_line(step["error"])
            for entry in step["logs"]:
                entry["message"] = one_line(str(entry.get("message", "")))
    return data


def brief(execution: RunbookExecution) -> dict[str, Any]:
    return {
        "runbook": execution.runbook,
        "status": execution.status,
        "dry_run": execution.dry_run,
        "targets": [t.get("name") for t in execution.targets],
    }


def event_payload(execution: RunbookExecution, **extra: Any) -> dict[str, Any]:
    return {
        "execution_id": execution.id,
        "runbook": execution.runbook,
        "status": execution.status,
        "dry_run": execution.dry_run,
        "targets": [t.get("name") for t in execution.targets],
        **extra,
    }


# --- finishing -------------------------------------------------------------------------------


def finish(session: Session, execution: RunbookExecution, status: str, error: str = "") -> None:
    """End an execution: close its steps and approvals, free its slots, admit waiters."""
    now = utcnow()
    before = {"status": execution.status}
    execution.status = status
    execution.error = error
    execution.ended_at = now
    execution.updated_at = now
    execution.claim = None
    execution.current_step = None
    closing = "canceled" if status == "canceled" else "skipped"
    session.execute(
        update(StepRun)
        .where(
            StepRun.execution_id == execution.id,
            StepRun.status.in_(("pending", "retrying", "waiting_approval", "running")),
        )
        .values(status=closing, ended_at=now)
    )
    session.execute(
        update(Approval)
        .where(Approval.execution_id == execution.id, Approval.status == "pending")
        .values(status="canceled")
    )
    for waiter_id in rails.release(session, execution.id):
        waiter = session.get(RunbookExecution, waiter_id, with_for_update=True)
        if waiter is not None and waiter.status == "queued":
            enqueue_run(session, waiter, packs.registry().find(waiter.runbook))
    record_change(
        session,
        "update",
        OBJECT,
        execution.id,
        before=before,
        after={"status": status, "error": error},
    )
    event = "remediation.execution." + {"failed": "failed", "dropped": "dropped"}.get(
        status, "finished"
    )
    emit(session, event, OBJECT, execution.id, event_payload(execution, error=error))


def log_entry(message: str, level: str = "info", **data: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"at": utcnow().isoformat(), "level": level, "message": message}
    if data:
        entry["data"] = data
    return entry
