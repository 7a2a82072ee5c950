"""Remediation: starting runbooks, cancel and re-run, housekeeping, the circuit.

Other domains call `start_runbook()` (events' `runbook` action does) and read
executions with `get_execution()`. An execution runs as an rq job
(`remediation.run`) that executes the runbook's steps in order and writes a
checkpoint after each one: the finished step's outcome and the next step's
start are one transaction. A job whose worker dies is retried by the core
reaper; the retry claims the execution, treats the step that was running as
interrupted (repeated when the step is idempotent, else failed), and carries
on from the last completed step. The housekeeping task fails executions
whose job ended without finishing them, so none stays "running" forever.

The other sections live beside this module and are re-exported here, so the API, the CLI
and the jobs find all behaviour under one name: executions' life (lifecycle.py), the
runner (runner.py), approvals (approvals.py) and Bolt agents (agents.py). Other domains use
`remediation.api` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from popcorn import domains, jobs
from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import emit
from popcorn.remediation import engine, packs, rails
from popcorn.remediation.agents import (
    AGENT_STALE_SECONDS,
    agent_is_stale,
    agent_read,
    agent_url_for,
    install_bolt_credentials,
    issue_bolt_credentials,
    list_agents,
    record_heartbeat,
)
from popcorn.remediation.approvals import (
    answer_approval,
    expire_approvals,
    get_approval,
    list_approvals,
)
from popcorn.remediation.lifecycle import (
    HOUSEKEEPING_SCHEDULE,
    OBJECT,
    approvals_of,
    brief,
    enqueue_run,
    ensure_housekeeping,
    event_payload,
    execution_detail,
    finish,
    get_execution,
    step_runs,
)
from popcorn.remediation.models import (
    TERMINAL_STATUSES,
    Approval,
    Circuit,
    RunbookExecution,
    StepRun,
)
from popcorn.remediation.runner import run_execution
from popcorn.remediation.schemas import TargetSpec
from popcorn.remediation.tasks import HOUSEKEEPING_TASK

__all__ = [
    "AGENT_STALE_SECONDS",
    "HOUSEKEEPING_SCHEDULE",
    "HOUSEKEEPING_TASK",
    "ORPHAN_GRACE_SECONDS",
    "admit_queued",
    "agent_is_stale",
    "agent_read",
    "agent_url_for",
    "answer_approval",
    "approvals_of",
    "cancel_execution",
    "circuit_status",
    "collect_metrics",
    "configure_circuit",
    "describe_runbook",
    "execution_detail",
    "expire_approvals",
    "fail_orphans",
    "get_approval",
    "get_execution",
    "housekeeping",
    "install_bolt_credentials",
    "issue_bolt_credentials",
    "list_agents",
    "list_approvals",
    "list_executions",
    "list_packs",
    "record_heartbeat",
    "rerun_execution",
    "reset_circuit",
    "resolve_targets",
    "run_execution",
    "start_runbook",
    "step_runs",
]

ORPHAN_GRACE_SECONDS = 60.0

EXECUTION_FILTERS = {
    "status": RunbookExecution.status,
    "runbook": RunbookExecution.runbook,
    "pack": RunbookExecution.pack,
    "dry_run": RunbookExecution.dry_run,
    "created_by": RunbookExecution.created_by,
    "created_at": RunbookExecution.created_at,
    "rerun_of": RunbookExecution.rerun_of,
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
    create_step_runs(session, execution, cls)
    record_change(session, "create", OBJECT, execution.id, after=brief(execution))
    ensure_housekeeping(session)
    keys = rails.wanted_keys(execution.runbook, cls.concurrency, targets)
    admission = rails.admit(session, execution, cls.concurrency, keys)
    if admission == "admitted":
        enqueue_run(session, execution, cls)
    elif admission == "queued":
        execution.status = "queued"
        emit(
            session, "remediation.execution.queued", OBJECT, execution.id, event_payload(execution)
        )
    else:
        limits = ", ".join(f"{k} (limit {n})" for k, n in keys)
        finish(session, execution, "dropped", f"dropped: concurrency limit reached on {limits}")
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


def create_step_runs(
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


def list_executions(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(RunbookExecution).where(*filter_clauses(params.filters, EXECUTION_FILTERS))
    if params.q:
        stmt = stmt.where(RunbookExecution.runbook.ilike(f"%{params.q}%"))
    return paginate(session, stmt, params, key=RunbookExecution.id)


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
        finish(session, execution, "canceled", f"canceled by {current_actor().name}")
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
    create_step_runs(session, execution, cls, reuse)
    record_change(
        session,
        "rerun",
        OBJECT,
        execution.id,
        after={**brief(execution), "rerun_of": source.id, "from_step": from_step},
    )
    keys = rails.wanted_keys(execution.runbook, cls.concurrency, execution.targets)
    admission = rails.admit(session, execution, cls.concurrency, keys)
    if admission == "admitted":
        enqueue_run(session, execution, cls)
    elif admission == "queued":
        execution.status = "queued"
    else:
        finish(session, execution, "dropped", "dropped: concurrency limit reached")
    return execution


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
        finish(session, execution, "failed", f"the execution's worker stopped: {why}")
        failed += 1
    return failed


def admit_queued(*, session: Session) -> int:
    """Queued executions that fit now start (a safety net behind `_finish`)."""
    admitted = rails.admit_waiters(session, rails.queued_with_free_slots(session))
    for execution_id in admitted:
        execution = session.get(RunbookExecution, execution_id, with_for_update=True)
        if execution is not None and execution.status == "queued":
            enqueue_run(session, execution, packs.registry().find(execution.runbook))
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


# --- metrics ---------------------------------------------------------------------------------


def collect_metrics() -> Iterator[Any]:
    """Executions by runbook and status, pending approvals and the circuit, for /metrics."""
    from prometheus_client.core import GaugeMetricFamily

    executions = GaugeMetricFamily(
        "popcorn_remediation_executions",
        "Executions by runbook and status",
        labels=["runbook", "status"],
    )
    approvals = GaugeMetricFamily(
        "popcorn_remediation_approvals_pending", "Approvals waiting for an answer"
    )
    circuit_open = GaugeMetricFamily(
        "popcorn_remediation_circuit_open", "1 while the remediation circuit is open"
    )
    with session_scope(readonly=True) as session:
        rows = session.execute(
            select(RunbookExecution.runbook, RunbookExecution.status, func.count()).group_by(
                RunbookExecution.runbook, RunbookExecution.status
            )
        )
        for runbook, status, count in rows:
            executions.add_metric([runbook, status], count)
        pending = session.scalar(
            select(func.count(Approval.id)).where(Approval.status == "pending")
        )
        approvals.add_metric([], int(pending or 0))
        state = session.scalar(select(Circuit.state).where(Circuit.name == "global"))
        circuit_open.add_metric([], 1 if state == "open" else 0)
    yield executions
    yield approvals
    yield circuit_open
