"""Driving an execution step by step in a worker, with a checkpoint after each step.

`run_execution` (the `remediation.run` job) claims the execution and alternates between a
checkpoint (`_advance`: record the finished step, start the next, one transaction) and
calling the step outside any transaction. A retry after a lost worker claims it again and
treats the step that was running as interrupted.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.db import session_scope, utcnow
from popcorn.outbox import emit
from popcorn.remediation import engine, packs, rails
from popcorn.remediation.agents import agent_url_for
from popcorn.remediation.lifecycle import (
    INLINE_BACKOFF_MAX,
    OBJECT,
    enqueue_run,
    event_payload,
    finish,
    log_entry,
    step_runs,
)
from popcorn.remediation.models import (
    TERMINAL_STATUSES,
    Approval,
    RunbookExecution,
    StepRun,
)


@dataclass
class _Work:
    kind: Literal["step", "backoff", "wait", "done"]
    status: str = ""
    delay: float = 0.0
    runbook: type[engine.Runbook] | None = None
    spec: engine.StepSpec | None = None
    step_run_id: int = 0
    attempt: int = 0
    ctx: engine.StepContext | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_execution(execution_id: int) -> dict[str, Any]:
    """Drive an execution until it ends, waits for an approval, or hands over to a later job.

    Safe to call twice for the same execution (a duplicate delivery, a retry
    after a lost worker): the latest caller claims it and the other stops at
    its next checkpoint without writing.
    """
    token = uuid.uuid4().hex
    work = _advance(execution_id, token, None, claim=True)
    while work.kind in ("step", "backoff"):
        if work.kind == "backoff":
            _sleep(execution_id, token, work.delay)
            work = _advance(execution_id, token, None)
            continue
        assert work.runbook is not None and work.spec is not None and work.ctx is not None
        outcome = engine.call_step(
            work.runbook,
            work.spec,
            work.ctx,
            should_cancel=lambda: _should_stop(execution_id, token),
        )
        work = _advance(execution_id, token, (work, outcome))
    return {"execution_id": execution_id, "status": work.status}


def _should_stop(execution_id: int, token: str) -> bool:
    with session_scope(readonly=True) as session:
        row = session.execute(
            select(RunbookExecution.cancel_requested, RunbookExecution.claim).where(
                RunbookExecution.id == execution_id
            )
        ).one_or_none()
    return row is None or bool(row.cancel_requested) or row.claim != token


def _sleep(execution_id: int, token: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))
        if left > 0.5 and _should_stop(execution_id, token):
            return


def _advance(
    execution_id: int,
    token: str,
    finished: tuple[_Work, engine.StepOutcome] | None,
    *,
    claim: bool = False,
) -> _Work:
    """One checkpoint: record the finished step, then start the next one (one transaction)."""
    with session_scope() as session:
        execution = session.get(RunbookExecution, execution_id, with_for_update=True)
        if execution is None:
            return _Work("done", status="missing")
        if claim:
            if execution.status not in ("pending", "running"):
                return _Work("done", status=execution.status)
            _claim(session, execution, token)
        elif execution.claim != token:
            return _Work("done", status=execution.status)  # another job took over
        steps = step_runs(session=session, execution_id=execution.id)
        execution.updated_at = utcnow()
        cls = packs.registry().find(execution.runbook) or packs.reload().find(execution.runbook)
        if cls is None:
            finish(
                session,
                execution,
                "failed",
                f"runbook {execution.runbook} is not installed on worker {_worker()}",
            )
            return _Work("done", status=execution.status)
        if finished is not None:
            _record_outcome(session, execution, steps, *finished)
        if claim:
            _recover_interrupted(session, execution, steps, cls)
        if execution.status in TERMINAL_STATUSES:
            return _Work("done", status=execution.status)
        if execution.cancel_requested:
            finish(session, execution, "canceled", "canceled while running")
            return _Work("done", status=execution.status)
        return _next(session, execution, steps, cls)


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim(session: Session, execution: RunbookExecution, token: str) -> None:
    execution.claim = token
    if execution.status == "pending":
        execution.status = "running"
        if execution.started_at is None:
            execution.started_at = utcnow()
            record_change(
                session,
                "update",
                OBJECT,
                execution.id,
                before={"status": "pending"},
                after={"status": "running"},
            )
            emit(
                session,
                "remediation.execution.started",
                OBJECT,
                execution.id,
                event_payload(execution, trigger=execution.trigger),
            )


def _recover_interrupted(
    session: Session, execution: RunbookExecution, steps: list[StepRun], cls: type[engine.Runbook]
) -> None:
    """A step left `running` by a previous claim was cut short (its worker was lost)."""
    for step_run in steps:
        if step_run.status != "running":
            continue
        try:
            spec = cls.step_named(step_run.name)
        except KeyError:
            continue
        note = f"attempt {step_run.attempts} was interrupted: its worker was lost"
        step_run.logs = [*step_run.logs, log_entry(note, "warning")]
        if spec.idempotent:
            step_run.status = "retrying"
            step_run.next_attempt_at = utcnow()
            continue
        step_run.status = "failed"
        step_run.error = note + "; not repeated because the step is not idempotent"
        step_run.ended_at = utcnow()
        _step_event(session, execution, step_run)
        finish(session, execution, "failed", f"step {step_run.name!r}: {step_run.error}")
        return


def _step_event(session: Session, execution: RunbookExecution, step_run: StepRun) -> None:
    emit(
        session,
        "remediation.step.finished",
        OBJECT,
        execution.id,
        {
            "execution_id": execution.id,
            "runbook": execution.runbook,
            "step": step_run.name,
            "kind": step_run.kind,
            "status": step_run.status,
            "attempts": step_run.attempts,
            "error": step_run.error,
        },
    )


def _record_outcome(
    session: Session,
    execution: RunbookExecution,
    steps: list[StepRun],
    work: _Work,
    outcome: engine.StepOutcome,
) -> None:
    step_run = next((s for s in steps if s.id == work.step_run_id), None)
    if step_run is None or step_run.status != "running" or step_run.attempts != work.attempt:
        return  # stale: this attempt was already settled by someone else
    assert work.ctx is not None and work.spec is not None
    ctx, spec = work.ctx, work.spec
    now = utcnow()
    logs = [*step_run.logs, *ctx.logs]
    step_run.duration_ms = (step_run.duration_ms or 0.0) + outcome.duration_ms
    step_run.ended_at = now
    if outcome.status in ("succeeded", "stopped"):
        step_run.status = "succeeded"
        step_run.outputs = outcome.outputs
        step_run.error = ""
        if ctx.evidence:
            execution.evidence = [*execution.evidence, *ctx.evidence]
        for event_type, payload in ctx.events:
            emit(
                session,
                event_type,
                OBJECT,
                execution.id,
                {"execution_id": execution.id, "step": step_run.name, **payload},
            )
        if outcome.status == "stopped":
            logs.append(log_entry(f"stopped the runbook: {outcome.stop_reason}"))
        step_run.logs = logs
        _step_event(session, execution, step_run)
        if outcome.status == "stopped":
            finish(session, execution, "succeeded", "")
            execution.error = ""
            session.execute(
                update(StepRun)
                .where(StepRun.execution_id == execution.id, StepRun.status == "skipped")
                .values(error=f"not needed: {outcome.stop_reason}")
            )
        return
    if outcome.status == "canceled":
        step_run.status = "canceled"
        step_run.error = outcome.error
        step_run.logs = logs
        _step_event(session, execution, step_run)
        finish(session, execution, "canceled", f"canceled during step {step_run.name!r}")
        return
    step_run.error = outcome.error
    if outcome.retry and step_run.attempts < step_run.max_attempts:
        delay = spec.backoff_for(step_run.attempts)
        step_run.status = "retrying"
        step_run.next_attempt_at = now + timedelta(seconds=delay)
        logs.append(
            log_entry(
                f"attempt {step_run.attempts} failed: {outcome.error}; retrying in {delay:g}s",
                "warning",
            )
        )
        step_run.logs = logs
        return
    step_run.status = "failed"
    logs.append(log_entry(f"attempt {step_run.attempts} failed: {outcome.error}", "error"))
    step_run.logs = logs
    _step_event(session, execution, step_run)
    finish(session, execution, "failed", f"step {step_run.name!r} failed: {outcome.error}")


def _next(
    session: Session, execution: RunbookExecution, steps: list[StepRun], cls: type[engine.Runbook]
) -> _Work:
    now = utcnow()
    for step_run in steps:
        if step_run.status in ("succeeded", "skipped"):
            continue
        try:
            spec = cls.step_named(step_run.name)
        except KeyError:
            finish(
                session,
                execution,
                "failed",
                f"runbook {cls.full_name()} no longer has a step {step_run.name!r}",
            )
            return _Work("done", status=execution.status)
        if step_run.status == "retrying":
            due = step_run.next_attempt_at or now
            delay = (due - now).total_seconds()
            if delay > INLINE_BACKOFF_MAX:
                enqueue_run(session, execution, cls, delay=delay)
                return _Work("done", status=execution.status)
            if delay > 0:
                return _Work("backoff", status=execution.status, delay=delay)
            return _start_attempt(session, execution, steps, step_run, spec, cls)
        if step_run.status == "pending" and execution.dry_run and spec.kind == "remediate":
            step_run.status = "skipped"
            step_run.error = "dry run: remediate steps are skipped"
            step_run.ended_at = now
            _step_event(session, execution, step_run)
            continue
        approval: Approval | None = None
        if spec.approval is not None:
            approval = session.scalar(select(Approval).where(Approval.step_run_id == step_run.id))
            if approval is None:
                return _request_approval(session, execution, step_run, spec.approval)
            if approval.status == "pending":
                execution.status = "waiting_approval"
                execution.claim = None
                return _Work("wait", status=execution.status)
            if approval.status != "approved":
                finish(
                    session,
                    execution,
                    "failed",
                    f"approval for step {step_run.name!r} is {approval.status}",
                )
                return _Work("done", status=execution.status)
        if spec.kind == "remediate" and not execution.dry_run and step_run.attempts == 0:
            refusal = rails.spend(session, execution, step_run.name)
            if refusal is not None:
                step_run.status = "failed"
                step_run.error = refusal
                step_run.ended_at = now
                _step_event(session, execution, step_run)
                finish(session, execution, "failed", refusal)
                return _Work("done", status=execution.status)
        return _start_attempt(
            session,
            execution,
            steps,
            step_run,
            spec,
            cls,
            approval=approval.payload if approval else None,
        )
    finish(session, execution, "succeeded")
    return _Work("done", status=execution.status)


def _request_approval(
    session: Session, execution: RunbookExecution, step_run: StepRun, spec: engine.Approval
) -> _Work:
    now = utcnow()
    approval = Approval(
        execution_id=execution.id,
        step_run_id=step_run.id,
        step=step_run.name,
        status="pending",
        message=spec.message or f"approve step {step_run.name!r} of {execution.runbook}",
        roles=list(spec.roles),
        payload_schema=spec.payload.model_json_schema() if spec.payload else None,
        deadline=now + timedelta(seconds=spec.timeout),
        created_at=now,
    )
    session.add(approval)
    session.flush()
    step_run.status = "waiting_approval"
    step_run.logs = [*step_run.logs, log_entry(f"waiting for approval {approval.id}")]
    before = {"status": execution.status}
    execution.status = "waiting_approval"
    execution.claim = None
    execution.current_step = step_run.name
    record_change(
        session,
        "update",
        OBJECT,
        execution.id,
        before=before,
        after={"status": "waiting_approval", "approval": approval.id},
    )
    emit(
        session,
        "remediation.execution.waiting_approval",
        OBJECT,
        execution.id,
        event_payload(
            execution,
            step=step_run.name,
            approval_id=approval.id,
            deadline=approval.deadline.isoformat(),
            roles=approval.roles,
        ),
    )
    return _Work("wait", status=execution.status)


def _start_attempt(
    session: Session,
    execution: RunbookExecution,
    steps: list[StepRun],
    step_run: StepRun,
    spec: engine.StepSpec,
    cls: type[engine.Runbook],
    *,
    approval: dict[str, Any] | None = None,
) -> _Work:
    now = utcnow()
    if approval is None and spec.approval is not None:
        found = session.scalar(select(Approval.payload).where(Approval.step_run_id == step_run.id))
        approval = found
    earlier = {
        s.name: s.outputs
        for s in steps
        if s.position < step_run.position and s.status == "succeeded"
    }
    if spec.uses is not None:
        earlier = {name: earlier.get(name) for name in spec.uses}
    step_run.status = "running"
    step_run.attempts += 1
    step_run.started_at = step_run.started_at or now
    step_run.next_attempt_at = None
    step_run.inputs = {
        "inputs": execution.inputs,
        "uses": sorted(earlier),
        "targets": [t.get("name") for t in execution.targets],
        "approval": approval,
    }
    execution.current_step = step_run.name
    ctx = engine.StepContext(
        execution_id=execution.id,
        runbook=execution.runbook,
        step=spec.name,
        kind=spec.kind,
        attempt=step_run.attempts,
        inputs=cls.Inputs.model_validate(execution.inputs),
        outputs=earlier,
        targets=[dict(t) for t in execution.targets],
        dry_run=execution.dry_run,
        trigger=execution.trigger,
        approval=approval,
        timeout=spec.timeout,
        agent_lookup=agent_url_for,
    )
    return _Work(
        "step",
        status=execution.status,
        runbook=cls,
        spec=spec,
        step_run_id=step_run.id,
        attempt=step_run.attempts,
        ctx=ctx,
    )
