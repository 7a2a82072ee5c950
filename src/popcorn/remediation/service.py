"""Remediation: starting runbooks, driving executions step by step, approvals, agents.

Other domains call `start_runbook()` (events' `runbook` action does) and read
executions with `get_execution()`. An execution runs as an rq job
(`remediation.run`) that executes the runbook's steps in order and writes a
checkpoint after each one: the finished step's outcome and the next step's
start are one transaction. A job whose worker dies is retried by the core
reaper; the retry claims the execution, treats the step that was running as
interrupted (repeated when the step is idempotent, else failed), and carries
on from the last completed step. The housekeeping task fails executions
whose job ended without finishing them, so none stays "running" forever.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn import domains, jobs
from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, Forbidden, InvalidInput, NotFound, PopcornError, Unavailable
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import emit
from popcorn.remediation import engine, packs, rails
from popcorn.remediation.models import (
    TERMINAL_STATUSES,
    Agent,
    Approval,
    RunbookExecution,
    StepRun,
)
from popcorn.remediation.schemas import TargetSpec
from popcorn.remediation.tasks import HOUSEKEEPING_TASK, RUN_TASK

log = logging.getLogger("popcorn.remediation")

HOUSEKEEPING_SCHEDULE = "remediation.housekeeping"
HOUSEKEEPING_SECONDS = 15
INLINE_BACKOFF_MAX = 10.0
"""Retries due within this many seconds wait in the worker; later ones release it."""
ORPHAN_GRACE_SECONDS = 60.0
AGENT_STALE_SECONDS = 120.0
MAX_JOB_TIMEOUT = 86400
OBJECT = "remediation_execution"

EXECUTION_FILTERS = {
    "status": RunbookExecution.status,
    "runbook": RunbookExecution.runbook,
    "pack": RunbookExecution.pack,
    "dry_run": RunbookExecution.dry_run,
    "created_by": RunbookExecution.created_by,
    "created_at": RunbookExecution.created_at,
    "rerun_of": RunbookExecution.rerun_of,
}
APPROVAL_FILTERS = {
    "status": Approval.status,
    "execution_id": Approval.execution_id,
    "step": Approval.step,
    "deadline": Approval.deadline,
}
AGENT_FILTERS = {
    "name": Agent.name,
    "device": Agent.device,
    "version": Agent.version,
    "last_seen": Agent.last_seen,
}


# --- packs and runbooks ----------------------------------------------------------------------


def list_packs() -> dict[str, Any]:
    """Every discovered pack with its runbooks and steps, and packs that failed to load."""
    return packs.describe_all()


def describe_runbook(name: str) -> dict[str, Any]:
    return packs.get_runbook(name).describe()


# --- starting --------------------------------------------------------------------------------


def start_runbook(
    *,
    session: Session,
    runbook: str,
    inputs: dict[str, Any],
    target: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> RunbookExecution:
    """Start a runbook: validate, resolve targets through inventory, apply the safety rails.

    Returns the execution: `pending` (a worker will run it), `queued` (over a
    concurrency limit; runs when a slot frees) or `dropped` (over a limit whose
    policy drops). Raises NotFound for an unknown runbook, InvalidInput for bad
    inputs or targets, Conflict while the circuit breaker is open.
    """
    cls = packs.get_runbook(runbook)
    parsed = _validate_inputs(cls, inputs)
    spec = _target_spec(cls, target)
    if not dry_run and cls.has_remediation():
        reason = rails.open_reason(session)
        if reason is not None:
            raise Conflict(
                reason + "; an admin can reset it (popcorn remediation circuit reset)",
                details={"circuit": "open"},
            )
    targets = resolve_targets(session=session, target=spec) if spec else []
    if cls.target == "required" and not targets:
        raise InvalidInput("target: matched no device", details={"target": spec})
    now = utcnow()
    execution = RunbookExecution(
        runbook=cls.full_name(),
        pack=cls.pack.name if cls.pack else "",
        pack_version=cls.pack.version if cls.pack else "",
        status="pending",
        inputs=parsed.model_dump(mode="json"),
        target=spec or None,
        targets=targets,
        trigger=trigger,
        dry_run=dry_run,
        evidence=[],
        error="",
        created_by=current_actor().name,
        created_at=now,
        updated_at=now,
    )
    session.add(execution)
    session.flush()
    _create_step_runs(session, execution, cls)
    record_change(session, "create", OBJECT, execution.id, after=_brief(execution))
    _ensure_housekeeping(session)
    keys = rails.wanted_keys(execution.runbook, cls.concurrency, targets)
    admission = rails.admit(session, execution, cls.concurrency, keys)
    if admission == "admitted":
        _enqueue_run(session, execution, cls)
    elif admission == "queued":
        execution.status = "queued"
        emit(session, "remediation.execution.queued", OBJECT, execution.id, _event(execution))
    else:
        limits = ", ".join(f"{k} (limit {n})" for k, n in keys)
        _finish(session, execution, "dropped", f"dropped: concurrency limit reached on {limits}")
    return execution


def _validate_inputs(cls: type[engine.Runbook], inputs: dict[str, Any]) -> BaseModel:
    if not isinstance(inputs, dict):
        raise InvalidInput("inputs: must be an object", details={"inputs": type(inputs).__name__})
    try:
        return cls.Inputs.model_validate(inputs)
    except ValidationError as exc:
        fields = {
            "inputs." + ".".join(str(p) for p in err["loc"]): err["msg"] for err in exc.errors()
        }
        first = next(iter(fields.items()))
        raise InvalidInput(
            f"invalid inputs for {cls.full_name()}: {first[0]}: {first[1]}",
            details={"fields": fields},
        ) from exc


def _target_spec(cls: type[engine.Runbook], target: dict[str, Any] | None) -> dict[str, Any]:
    if target is None or target == {}:
        if cls.target == "required":
            raise InvalidInput(
                f"target: {cls.full_name()} needs a target (device, site, role, region)",
                details={"target": None},
            )
        return {}
    if cls.target == "none":
        raise InvalidInput(f"target: {cls.full_name()} takes no target", details={"target": target})
    try:
        return TargetSpec.model_validate(target).as_filters()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(
            f"target.{where}: {err['msg']}",
            details={"target": target, "allowed": sorted(TargetSpec.model_fields)},
        ) from exc


def resolve_targets(*, session: Session, target: dict[str, Any]) -> list[dict[str, Any]]:
    """The devices a target names, from inventory's `devices_for_scope`.

    Without the inventory domain, a list of device names is still accepted
    (each marked unverified); scopes (site, role, ...) cannot be resolved.
    """
    if not target:
        return []
    if not domains.installed("inventory"):
        if set(target) == {"device"}:
            names = target["device"] if isinstance(target["device"], list) else [target["device"]]
            return [
                {"name": n, "resolved": False, "note": "inventory service unavailable"}
                for n in names
            ]
        domains.require("inventory", "name devices explicitly ({'device': [...]}) without it")
    import popcorn.inventory.api as inventory_api

    return [
        {
            "id": d.id,
            "name": d.name,
            "role": d.role,
            "site": d.site,
            "status": d.status,
            "agent_url": d.agent_url,
            "resolved": True,
        }
        for d in inventory_api.devices_for_scope(session=session, **target)
    ]


def _create_step_runs(
    session: Session,
    execution: RunbookExecution,
    cls: type[engine.Runbook],
    reuse: dict[str, StepRun] | None = None,
) -> None:
    reuse = reuse or {}
    for position, spec in enumerate(cls.steps):
        old = reuse.get(spec.name)
        session.add(
            StepRun(
                execution_id=execution.id,
                position=position,
                name=spec.name,
                kind=spec.kind,
                status="succeeded" if old else "pending",
                attempts=old.attempts if old else 0,
                max_attempts=spec.retries + 1,
                inputs=old.inputs if old else None,
                outputs=old.outputs if old else None,
                logs=[
                    {
                        "at": utcnow().isoformat(),
                        "level": "info",
                        "message": f"reused from execution {old.execution_id}",
                    }
                ]
                if old
                else [],
                error="",
                reused=bool(old),
                started_at=old.started_at if old else None,
                ended_at=old.ended_at if old else None,
                duration_ms=old.duration_ms if old else None,
            )
        )
    session.flush()


def _job_timeout(cls: type[engine.Runbook]) -> int:
    total = 60.0
    for spec in cls.steps:
        attempts = spec.retries + 1
        total += spec.timeout * attempts + min(spec.max_backoff, INLINE_BACKOFF_MAX) * spec.retries
    return int(min(total, MAX_JOB_TIMEOUT))


def _enqueue_run(
    session: Session,
    execution: RunbookExecution,
    cls: type[engine.Runbook] | None = None,
    delay: float | None = None,
) -> None:
    timeout = _job_timeout(cls) if cls is not None else None
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


def _ensure_housekeeping(session: Session) -> None:
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


def list_executions(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(RunbookExecution).where(*filter_clauses(params.filters, EXECUTION_FILTERS))
    if params.q:
        stmt = stmt.where(RunbookExecution.runbook.ilike(f"%{params.q}%"))
    return paginate(session, stmt, params, key=RunbookExecution.id)


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


def execution_detail(*, session: Session, execution_id: int) -> dict[str, Any]:
    """An execution with its step timeline and approvals."""
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
    return data


def _brief(execution: RunbookExecution) -> dict[str, Any]:
    return {
        "runbook": execution.runbook,
        "status": execution.status,
        "dry_run": execution.dry_run,
        "targets": [t.get("name") for t in execution.targets],
    }


def _event(execution: RunbookExecution, **extra: Any) -> dict[str, Any]:
    return {
        "execution_id": execution.id,
        "runbook": execution.runbook,
        "status": execution.status,
        "dry_run": execution.dry_run,
        "targets": [t.get("name") for t in execution.targets],
        **extra,
    }


# --- cancel, rerun ---------------------------------------------------------------------------


def cancel_execution(*, session: Session, execution_id: int) -> RunbookExecution:
    """Stop an execution: at once when it is not running, else at its running step's next
    check (steps see `ctx.cancelled`; the worker stops waiting for them)."""
    execution = get_execution(session=session, execution_id=execution_id, lock=True)
    if execution.status in TERMINAL_STATUSES:
        raise Conflict(
            f"execution {execution_id} is already {execution.status}",
            details={"status": execution.status},
        )
    record_change(
        session,
        "cancel",
        OBJECT,
        execution.id,
        before={"status": execution.status},
        after={"status": "canceled"},
    )
    if execution.status == "running":
        execution.cancel_requested = True
        execution.updated_at = utcnow()
    else:
        _finish(session, execution, "canceled", f"canceled by {current_actor().name}")
    return execution


def rerun_execution(
    *, session: Session, execution_id: int, from_step: str | None = None
) -> RunbookExecution:
    """A new execution of the same runbook, inputs and targets that reuses the outputs of
    the steps before `from_step` (default: the first step that did not succeed)."""
    source = get_execution(session=session, execution_id=execution_id)
    if source.status not in TERMINAL_STATUSES or source.status == "dropped":
        raise Conflict(
            f"execution {execution_id} is {source.status}; only finished executions can be re-run",
            details={"status": source.status},
        )
    cls = packs.get_runbook(source.runbook)
    old = {s.name: s for s in step_runs(session=session, execution_id=execution_id)}
    names = [spec.name for spec in cls.steps]
    if from_step is None:
        from_step = next(
            (n for n in names if old.get(n) is None or old[n].status != "succeeded"), None
        )
        if from_step is None:
            raise Conflict(f"every step of execution {execution_id} succeeded; name a from_step")
    if from_step not in names:
        raise InvalidInput(
            f"from_step: {cls.full_name()} has no step {from_step!r}",
            details={"from_step": from_step, "steps": names},
        )
    reuse: dict[str, StepRun] = {}
    for name in names[: names.index(from_step)]:
        step_run = old.get(name)
        if step_run is None or step_run.status != "succeeded":
            raise InvalidInput(
                f"from_step: step {name!r} before {from_step!r} did not succeed in execution "
                f"{execution_id}; re-run from it instead",
                details={"from_step": from_step, "blocking_step": name},
            )
        reuse[name] = step_run
    if not source.dry_run and cls.has_remediation():
        reason = rails.open_reason(session)
        if reason is not None:
            raise Conflict(reason, details={"circuit": "open"})
    now = utcnow()
    execution = RunbookExecution(
        runbook=cls.full_name(),
        pack=source.pack,
        pack_version=cls.pack.version if cls.pack else source.pack_version,
        status="pending",
        inputs=dict(source.inputs),
        target=source.target,
        targets=list(source.targets),
        trigger=source.trigger,
        dry_run=source.dry_run,
        evidence=[e for e in source.evidence if e.get("step") in reuse],
        error="",
        rerun_of=source.id,
        created_by=current_actor().name,
        created_at=now,
        updated_at=now,
    )
    session.add(execution)
    session.flush()
    _create_step_runs(session, execution, cls, reuse)
    record_change(
        session,
        "rerun",
        OBJECT,
        execution.id,
        after={**_brief(execution), "rerun_of": source.id, "from_step": from_step},
    )
    keys = rails.wanted_keys(execution.runbook, cls.concurrency, execution.targets)
    admission = rails.admit(session, execution, cls.concurrency, keys)
    if admission == "admitted":
        _enqueue_run(session, execution, cls)
    elif admission == "queued":
        execution.status = "queued"
    else:
        _finish(session, execution, "dropped", "dropped: concurrency limit reached")
    return execution


# --- approvals -------------------------------------------------------------------------------


def list_approvals(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(Approval).where(*filter_clauses(params.filters, APPROVAL_FILTERS))
    return paginate(session, stmt, params, key=Approval.id)


def get_approval(*, session: Session, approval_id: int, lock: bool = False) -> Approval:
    approval = session.get(Approval, approval_id, with_for_update=lock)
    if approval is None:
        raise NotFound(f"no approval {approval_id}", details={"id": approval_id})
    return approval


def answer_approval(
    *,
    session: Session,
    approval_id: int,
    approve: bool,
    payload: dict[str, Any] | None = None,
    comment: str = "",
) -> Approval:
    """Approve (with the payload the step asks for) or reject a waiting step.

    Approving hands the execution back to a worker; rejecting ends it as
    `rejected`. Only the approval's roles (and admins) may answer.
    """
    approval = get_approval(session=session, approval_id=approval_id, lock=True)
    execution = get_execution(session=session, execution_id=approval.execution_id, lock=True)
    if approval.status != "pending":
        raise Conflict(
            f"approval {approval_id} is already {approval.status}",
            details={"status": approval.status},
        )
    now = utcnow()
    if approval.deadline <= now:
        raise Conflict(
            f"approval {approval_id} expired at {approval.deadline.isoformat()}",
            details={"deadline": approval.deadline.isoformat()},
        )
    actor = current_actor()
    if actor.role != "admin" and actor.role not in approval.roles:
        raise Forbidden(
            f"role {actor.role!r} may not answer this approval; allowed: "
            + ", ".join([*approval.roles, "admin"]),
            details={"roles": approval.roles},
        )
    before = {"status": approval.status}
    approval.answered_by = actor.name
    approval.answered_at = now
    approval.comment = comment
    step_run = session.get(StepRun, approval.step_run_id, with_for_update=True)
    assert step_run is not None
    if approve:
        approval.payload = _validate_payload(execution, approval, payload)
        approval.status = "approved"
        step_run.logs = [*step_run.logs, _log_entry(f"approved by {actor.name}", comment=comment)]
        if execution.status == "waiting_approval":
            _enqueue_run(session, execution, packs.registry().find(execution.runbook))
    else:
        if payload:
            raise InvalidInput("payload: a rejection carries no payload, only a comment")
        approval.status = "rejected"
        step_run.status = "rejected"
        step_run.error = f"rejected by {actor.name}" + (f": {comment}" if comment else "")
        step_run.ended_at = now
        _finish(
            session,
            execution,
            "rejected",
            f"step {approval.step!r} was rejected by {actor.name}"
            + (f": {comment}" if comment else ""),
        )
    record_change(
        session,
        "answer",
        "remediation_approval",
        approval.id,
        before=before,
        after={"status": approval.status, "comment": comment},
    )
    emit(
        session,
        "remediation.approval.answered",
        "remediation_approval",
        approval.id,
        {
            "execution_id": execution.id,
            "step": approval.step,
            "status": approval.status,
            "by": actor.name,
        },
    )
    return approval


def _validate_payload(
    execution: RunbookExecution, approval: Approval, payload: dict[str, Any] | None
) -> dict[str, Any] | None:
    cls = packs.registry().find(execution.runbook) or packs.reload().find(execution.runbook)
    if cls is None:
        raise Unavailable(
            f"runbook {execution.runbook} is not installed here; cannot validate the payload"
        )
    spec = cls.step_named(approval.step)
    model = spec.approval.payload if spec.approval else None
    if model is None:
        if payload:
            raise InvalidInput(
                "payload: this approval takes no payload", details={"payload": payload}
            )
        return None
    try:
        return dict(model.model_validate(payload or {}).model_dump(mode="json"))
    except ValidationError as exc:
        fields = {
            "payload." + ".".join(str(p) for p in err["loc"]): err["msg"] for err in exc.errors()
        }
        first = next(iter(fields.items()))
        raise InvalidInput(f"{first[0]}: {first[1]}", details={"fields": fields}) from exc


def expire_approvals(*, session: Session, now: datetime | None = None) -> int:
    """Approvals past their deadline expire; their executions fail."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(Approval)
            .where(Approval.status == "pending", Approval.deadline <= now)
            .order_by(Approval.id)
            .limit(200)
            .with_for_update()
        )
    )
    for approval in due:
        execution = get_execution(session=session, execution_id=approval.execution_id, lock=True)
        approval.status = "expired"
        step_run = session.get(StepRun, approval.step_run_id)
        message = f"approval for step {approval.step!r} expired at {approval.deadline.isoformat()}"
        if step_run is not None:
            step_run.status = "failed"
            step_run.error = message
            step_run.ended_at = now
        record_change(
            session,
            "expire",
            "remediation_approval",
            approval.id,
            before={"status": "pending"},
            after={"status": "expired"},
        )
        emit(
            session,
            "remediation.approval.expired",
            "remediation_approval",
            approval.id,
            {"execution_id": execution.id, "step": approval.step},
        )
        if execution.status not in TERMINAL_STATUSES:
            _finish(session, execution, "failed", message)
    return len(due)


# --- finishing -------------------------------------------------------------------------------


def _finish(session: Session, execution: RunbookExecution, status: str, error: str = "") -> None:
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
            _enqueue_run(session, waiter, packs.registry().find(waiter.runbook))
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
    emit(session, event, OBJECT, execution.id, _event(execution, error=error))


# --- running ---------------------------------------------------------------------------------


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
            _finish(
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
            _finish(session, execution, "canceled", "canceled while running")
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
                _event(execution, trigger=execution.trigger),
            )


def _log_entry(message: str, level: str = "info", **data: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"at": utcnow().isoformat(), "level": level, "message": message}
    if data:
        entry["data"] = data
    return entry


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
        step_run.logs = [*step_run.logs, _log_entry(note, "warning")]
        if spec.idempotent:
            step_run.status = "retrying"
            step_run.next_attempt_at = utcnow()
            continue
        step_run.status = "failed"
        step_run.error = note + "; not repeated because the step is not idempotent"
        step_run.ended_at = utcnow()
        _step_event(session, execution, step_run)
        _finish(session, execution, "failed", f"step {step_run.name!r}: {step_run.error}")
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
            logs.append(_log_entry(f"stopped the runbook: {outcome.stop_reason}"))
        step_run.logs = logs
        _step_event(session, execution, step_run)
        if outcome.status == "stopped":
            _finish(session, execution, "succeeded", "")
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
        _finish(session, execution, "canceled", f"canceled during step {step_run.name!r}")
        return
    step_run.error = outcome.error
    if outcome.retry and step_run.attempts < step_run.max_attempts:
        delay = spec.backoff_for(step_run.attempts)
        step_run.status = "retrying"
        step_run.next_attempt_at = now + timedelta(seconds=delay)
        logs.append(
            _log_entry(
                f"attempt {step_run.attempts} failed: {outcome.error}; retrying in {delay:g}s",
                "warning",
            )
        )
        step_run.logs = logs
        return
    step_run.status = "failed"
    logs.append(_log_entry(f"attempt {step_run.attempts} failed: {outcome.error}", "error"))
    step_run.logs = logs
    _step_event(session, execution, step_run)
    _finish(session, execution, "failed", f"step {step_run.name!r} failed: {outcome.error}")


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
            _finish(
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
                _enqueue_run(session, execution, cls, delay=delay)
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
                _finish(
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
                _finish(session, execution, "failed", refusal)
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
    _finish(session, execution, "succeeded")
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
    step_run.logs = [*step_run.logs, _log_entry(f"waiting for approval {approval.id}")]
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
        _event(
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


# --- housekeeping ----------------------------------------------------------------------------


def fail_orphans(*, session: Session, grace_seconds: float = ORPHAN_GRACE_SECONDS) -> int:
    """Executions whose job ended (failed, canceled, lost) without finishing them fail."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    rows = list(
        session.execute(
            select(RunbookExecution, jobs.JobRecord.status, jobs.JobRecord.error)
            .outerjoin(jobs.JobRecord, jobs.JobRecord.id == RunbookExecution.job_id)
            .where(
                RunbookExecution.status.in_(("pending", "running")),
                RunbookExecution.updated_at < cutoff,
            )
            .limit(500)
        )
    )
    failed = 0
    for execution, job_status, job_error in rows:
        if job_status in ("scheduled", "pending", "running"):
            continue
        session.refresh(execution, with_for_update=True)
        if execution.status not in ("pending", "running"):
            continue
        last = (job_error or "").strip().splitlines()
        why = f"job {execution.job_id} {job_status or 'missing'}"
        if last:
            why += f" ({last[0][:300]})"
        _finish(session, execution, "failed", f"the execution's worker stopped: {why}")
        failed += 1
    return failed


def admit_queued(*, session: Session) -> int:
    """Queued executions that fit now start (a safety net behind `_finish`)."""
    admitted = rails.admit_waiters(session, rails.queued_with_free_slots(session))
    for execution_id in admitted:
        execution = session.get(RunbookExecution, execution_id, with_for_update=True)
        if execution is not None and execution.status == "queued":
            _enqueue_run(session, execution, packs.registry().find(execution.runbook))
    return len(admitted)


def housekeeping() -> dict[str, int]:
    out: dict[str, int] = {}
    with session_scope() as session:
        out["expired"] = expire_approvals(session=session)
    with session_scope() as session:
        out["orphans"] = fail_orphans(session=session)
    with session_scope() as session:
        out["admitted"] = admit_queued(session=session)
    return out


# --- circuit ---------------------------------------------------------------------------------


def circuit_status(*, session: Session) -> dict[str, Any]:
    return rails.circuit_view(session)


def reset_circuit(*, session: Session) -> dict[str, Any]:
    rails.reset(session)
    return rails.circuit_view(session)


def configure_circuit(
    *, session: Session, budget: int | None = None, window_seconds: int | None = None
) -> dict[str, Any]:
    rails.configure(session, budget=budget, window_seconds=window_seconds)
    return rails.circuit_view(session)


# --- Bolt agents -----------------------------------------------------------------------------


def record_heartbeat(
    *,
    session: Session,
    name: str,
    url: str,
    device: str | None = None,
    version: str = "",
    actions: list[str] | None = None,
) -> Agent:
    """Upsert an agent from its heartbeat, and tell inventory when its device exists."""
    now = utcnow()
    actions = list(actions or [])
    inserted = session.scalar(
        rails.insert_for(session, Agent)
        .values(
            name=name,
            url=url,
            device=device,
            version=version,
            actions=actions,
            inventory_link="",
            last_seen=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Agent.id)
    )
    agent = session.scalar(
        select(Agent)
        .where(Agent.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert agent is not None
    created = inserted is not None
    before = {
        "device": agent.device,
        "url": agent.url,
        "version": agent.version,
        "actions": list(agent.actions),
    }
    agent.device = device
    agent.url = url
    agent.version = version
    agent.actions = actions
    agent.last_seen = now
    agent.inventory_link = _link_inventory(session, device, url, version, actions)
    after = {"device": device, "url": url, "version": version, "actions": actions}
    if created:
        record_change(session, "create", "remediation_agent", agent.id, after=after)
        emit(
            session,
            "remediation.agent.registered",
            "remediation_agent",
            agent.id,
            {"name": name, **after},
        )
    elif before != after:
        record_change(session, "update", "remediation_agent", agent.id, before=before, after=after)
    return agent


def _link_inventory(
    session: Session, device: str | None, url: str, version: str, actions: list[str]
) -> str:
    if not device:
        return ""
    if not domains.installed("inventory"):
        return "inventory service unavailable"
    import popcorn.inventory.api as inventory_api

    try:
        with session.begin_nested():
            inventory_api.record_agent_heartbeat(
                session=session, device=device, url=url, version=version, actions=actions
            )
    except NotFound:
        return f"no device {device!r} in inventory"
    except PopcornError as exc:
        return f"inventory refused: {exc.message}"[:200]
    return "linked"


def list_agents(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(Agent).where(*filter_clauses(params.filters, AGENT_FILTERS))
    return paginate(session, stmt, params, key=Agent.id)


def agent_is_stale(agent: Agent) -> bool:
    return agent.last_seen < utcnow() - timedelta(seconds=AGENT_STALE_SECONDS)


def agent_url_for(device: str) -> str | None:
    """The URL the freshest heartbeat gave for a device (or an agent of that name)."""
    with session_scope(readonly=True) as session:
        for column in (Agent.device, Agent.name):
            url = session.scalar(
                select(Agent.url).where(column == device).order_by(Agent.last_seen.desc()).limit(1)
            )
            if url:
                return str(url)
    return None


# --- Bolt client credentials -----------------------------------------------------------------


def install_bolt_credentials(*, cert: bytes, key: bytes, ca: bytes) -> engine.BoltCredentials:
    """Write the runbook client's certificate, key and CA where steps look for them."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    for label, data in (("cert", cert), ("ca", ca)):
        try:
            x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise InvalidInput(f"{label}: not a PEM certificate ({exc})") from exc
    try:
        load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"key: not an unencrypted PEM private key ({exc})") from exc
    base = engine.bolt_dir()
    base.mkdir(parents=True, exist_ok=True)
    creds = engine.BoltCredentials(base / "client.pem", base / "client.key", base / "ca.pem")
    creds.cert.write_bytes(cert)
    creds.ca.write_bytes(ca)
    fd = os.open(creds.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    return creds


def issue_bolt_credentials(
    *, session: Session, authority: str, name: str = "popcorn-runbook"
) -> engine.BoltCredentials:
    """Have the agents authority issue the runbooks' client certificate, and install it.

    Only the certificates domain's agent path may issue reserved `popcorn-` names, from an
    authority whose purpose is agents; Bolt agents trust that authority and nothing else.
    """
    domains.require(
        "certificates",
        "install a client certificate with `popcorn bolt credentials --cert --key --ca`",
    )
    import popcorn.certificates.api as certificates_api

    issued = certificates_api.issue_agent_certificate(
        session=session, authority=authority, agent_name=name, profile="client"
    )
    ca = certificates_api.ca_bundle(session=session, authority=authority)
    return install_bolt_credentials(
        cert=(issued.cert_pem + issued.chain_pem).encode(),
        key=issued.key_pem.encode(),
        ca=ca.encode(),
    )
