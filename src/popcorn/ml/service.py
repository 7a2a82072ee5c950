"""ML behaviour: flows, runs as Popcorn jobs (progress, log, cancel, resume), schedules.

A run is a Popcorn record plus a Metaflow run. Starting one queues the `ml.run` job; the
job runs the flow file as a subprocess (see `runner`), keeps the record's progress and log
tail current, kills the process tree when someone cancels, and at the end records the
outcome (the failing step and its traceback read through Metaflow's client API) and hands
a successful run to the registry for automatic promotion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change
from popcorn.config import get_settings
from popcorn.context import current_actor
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound, PopcornError
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id
from popcorn.ml import flows_registry, runner
from popcorn.ml import schemas as s
from popcorn.ml.flows_registry import FlowFile
from popcorn.ml.models import MlRun
from popcorn.outbox import emit

log = logging.getLogger("popcorn.ml")

RUN_TASK = "ml.run"
SCHEDULE_PREFIX = "ml.run:"
RUN_FILTERS = {
    "flow": MlRun.flow,
    "status": MlRun.status,
    "created_at": MlRun.created_at,
    "created_by": MlRun.created_by,
}
ProgressFn = Callable[[int, int, str], None]


def list_flows() -> list[FlowFile]:
    return flows_registry.discover()


def flow_read(found: FlowFile) -> dict[str, Any]:
    return {
        "name": found.name,
        "source": found.source,
        "path": str(found.path),
        "class_name": found.class_name,
        "description": found.description,
        "steps": found.steps,
        "parameters": [
            {"name": p.name, "default": p.default, "help": p.help} for p in found.parameters
        ],
    }


def pathspec(run: MlRun) -> str:
    if not (run.metaflow_flow and run.metaflow_run_id):
        return ""
    return f"{run.metaflow_flow}/{run.metaflow_run_id}"


def run_read(run: MlRun) -> dict[str, Any]:
    data = {c: getattr(run, c) for c in s.RunRead.model_fields if hasattr(run, c)}
    data["pathspec"] = pathspec(run)
    data["resumable"] = run.status == "failed" and bool(run.metaflow_run_id)
    return data


def _snapshot(run: MlRun) -> dict[str, Any]:
    return {"flow": run.flow, "status": run.status, "pathspec": pathspec(run)}


def _check_parameters(found: FlowFile, parameters: dict[str, str]) -> None:
    known = {p.name for p in found.parameters}
    for key in parameters:
        if key not in known:
            raise InvalidInput(
                f"flow {found.name} has no parameter {key!r}",
                details={"field": key, "parameters": sorted(known)},
            )


def start_run(
    *, session: Session, spec: s.RunCreate, resume_of: MlRun | None = None, queue_job: bool = True
) -> MlRun:
    """Record a run and queue the job that runs it; audited, and an `ml.run.queued` event."""
    found = flows_registry.get_flow(spec.flow)
    _check_parameters(found, spec.parameters)
    run = MlRun(
        flow=found.name,
        status="queued",
        parameters=dict(spec.parameters),
        decorators=list(spec.decorators),
        auto_promote=spec.auto_promote,
        metaflow_flow=found.class_name,
        resume_of=resume_of.id if resume_of else None,
        created_by=current_actor().name,
        created_at=utcnow(),
        progress={"done": 0, "total": len(found.steps), "step": ""},
    )
    session.add(run)
    session.flush()
    if queue_job:
        record = jobs.enqueue(session, RUN_TASK, arguments={"run": run.id}, queue="low")
        run.job_id = record.id
    record_change(session, "create", "ml_run", run.id, after=_snapshot(run))
    emit(session, "ml.run.queued", "ml_run", run.id, {"flow": run.flow, "resume_of": run.resume_of})
    return run


def get_run(*, session: Session, ref: int | str) -> MlRun:
    return get_by_id(session, MlRun, ref, label="run")


def list_runs(*, session: Session, params: ListParams) -> PageResult:
    """Runs, oldest first (filters: flow, status, created_at, created_by)."""
    stmt = select(MlRun).where(*filter_clauses(params.filters, RUN_FILTERS))
    return paginate(session, stmt, params, key=MlRun.id)


def recent_runs(*, session: Session, flow: str | None = None, limit: int = 50) -> list[MlRun]:
    stmt = select(MlRun).order_by(MlRun.id.desc()).limit(limit)
    if flow:
        stmt = stmt.where(MlRun.flow == flow)
    return list(session.scalars(stmt))


def cancel_run(*, session: Session, ref: int | str) -> MlRun:
    """Stop a run: a queued one never starts; a running one has its process tree killed by
    the job watching it and ends failed, with `resume` offered."""
    run = get_by_id(session, MlRun, ref, label="run")
    session.refresh(run, with_for_update=True)
    if run.status not in {"queued", "running"}:
        raise Conflict(f"run {run.id} is {run.status}", details={"status": run.status})
    before = _snapshot(run)
    run.cancel_requested = True
    if run.status == "queued" and run.job_id is not None:
        job = jobs.get_job(session=session, job_id=run.job_id)
        if job.status in {"scheduled", "pending"}:
            jobs.cancel_job(session=session, job_id=run.job_id)
            _end(run, "failed", error=f"canceled by {current_actor().name} before it started")
    record_change(session, "cancel", "ml_run", run.id, before=before, after=_snapshot(run))
    emit(session, "ml.run.cancel_requested", "ml_run", run.id, {"flow": run.flow})
    return run


def resume_run(*, session: Session, ref: int | str) -> MlRun:
    """A new run that resumes a failed one with Metaflow's `resume` (finished steps reused)."""
    origin = get_run(session=session, ref=ref)
    if origin.status != "failed" or not origin.metaflow_run_id:
        raise Conflict(
            f"run {origin.id} cannot be resumed: it is {origin.status}"
            + ("" if origin.metaflow_run_id else " and Metaflow never started it"),
            details={"status": origin.status},
        )
    spec = s.RunCreate(
        flow=origin.flow,
        parameters=dict(origin.parameters),
        decorators=list(origin.decorators),
        auto_promote=origin.auto_promote,
    )
    return start_run(session=session, spec=spec, resume_of=origin)


def _end(run: MlRun, status: str, *, error: str = "", failed_step: str = "") -> None:
    run.status = status
    run.error = error[-8000:]
    run.failed_step = failed_step
    run.finished_at = utcnow()


def log_path(run_id: int) -> Path:
    return get_settings().home.resolve() / "ml" / "logs" / f"run-{run_id}.log"


def execute_run(run_id: int, *, progress: ProgressFn | None = None) -> dict[str, Any]:
    """The body of the `ml.run` job: run the flow, watch it, record how it ended."""
    with session_scope() as session:
        run = get_run(session=session, ref=run_id)
        if run.status not in {"queued", "running"}:
            return {"run": run.id, "status": run.status}
        found = flows_registry.get_flow(run.flow)
        origin = ""
        if run.resume_of is not None:
            origin = get_run(session=session, ref=run.resume_of).metaflow_run_id
        if run.status == "running" and run.metaflow_run_id:
            origin = run.metaflow_run_id  # an earlier attempt died: carry on from it
        run.status, run.started_at = "running", run.started_at or utcnow()
        run.metaflow_flow = found.class_name
        parameters, decorators = dict(run.parameters), list(run.decorators)
        emit(session, "ml.run.started", "ml_run", run.id, {"flow": run.flow})
    total = len(found.steps)
    run_id_file = runner.metaflow_root() / "run-ids" / f"popcorn-{run_id}"
    run_id_file.parent.mkdir(parents=True, exist_ok=True)
    run_id_file.unlink(missing_ok=True)
    args = runner.command(
        found.path,
        parameters=parameters,
        decorators=decorators,
        run_id_file=run_id_file,
        resume_from=origin,
    )

    def tick(watch: runner.Watch) -> bool:
        done = len(set(watch.finished))
        step = watch.started[-1] if watch.started else ""
        values: dict[str, Any] = {
            "progress": {"done": done, "total": total, "step": step},
            "log_tail": watch.tail(),
        }
        if watch.run_id:
            values["metaflow_run_id"] = watch.run_id
        with session_scope() as session:
            session.execute(update(MlRun).where(MlRun.id == run_id).values(**values))
            wanted = session.scalar(select(MlRun.cancel_requested).where(MlRun.id == run_id))
        if progress is not None:
            progress(min(done, total), total, f"{step or 'starting'}")
        return bool(wanted)

    code, watch, killed = runner.run_subprocess(args, log_path=log_path(run_id), on_tick=tick)
    metaflow_id = watch.run_id
    if run_id_file.is_file():
        metaflow_id = run_id_file.read_text().strip() or metaflow_id
    return _finish_run(run_id, code=code, watch=watch, killed=killed, metaflow_id=metaflow_id)


def _finish_run(
    run_id: int, *, code: int, watch: runner.Watch, killed: bool, metaflow_id: str
) -> dict[str, Any]:
    from popcorn.ml import registry, tracking
    from popcorn.storage import get_store

    log_key = f"ml/logs/run-{run_id}.log"
    path = log_path(run_id)
    if path.is_file():
        get_store().put(log_key, path.read_bytes())
    with session_scope() as session:
        run = get_run(session=session, ref=run_id)
        before = _snapshot(run)
        run.metaflow_run_id = metaflow_id or run.metaflow_run_id
        run.log_tail, run.log_key = watch.tail(), log_key
        run.progress = {**run.progress, "done": len(set(watch.finished))}
        if code == 0 and not killed:
            _end(run, "succeeded")
            if run.auto_promote:
                # In the same transaction, so a client never sees the run succeeded while its
                # promotion is still to come; a model that cannot be promoted stays a note.
                try:
                    with session.begin_nested():
                        registry.auto_promote(session=session, run=run)
                except PopcornError as exc:
                    log.warning("run %s was not promoted: %s", run_id, exc.message)
                    run.error = f"not promoted: {exc.message}"
        else:
            failed = tracking.failure(pathspec(run)) if run.metaflow_run_id else None
            step = (failed or {}).get("step") or (watch.started[-1] if watch.started else "")
            if killed:
                why = f"canceled: the run's processes were killed at step {step or 'start'}"
            elif code < 0:
                why = f"killed by signal {-code} at step {step or 'start'}"
            else:
                why = (failed or {}).get("traceback") or watch.tail()[-4000:]
            _end(run, "failed", error=why, failed_step=step)
        record_change(session, "update", "ml_run", run.id, before=before, after=_snapshot(run))
        emit(
            session,
            f"ml.run.{run.status}",
            "ml_run",
            run.id,
            {"flow": run.flow, "pathspec": pathspec(run), "failed_step": run.failed_step},
        )
        outcome = {"run": run.id, "status": run.status, "pathspec": pathspec(run)}
    return outcome


def read_log(*, session: Session, ref: int | str) -> str:
    """The whole log once a run ended (from the object store), the live tail before."""
    from popcorn.storage import get_store

    run = get_run(session=session, ref=ref)
    if run.log_key and run.status in {"succeeded", "failed"}:
        try:
            return get_store().get(run.log_key).decode(errors="replace")
        except NotFound:
            pass
    return run.log_tail


def run_detail(*, session: Session, ref: int | str) -> dict[str, Any]:
    """A run with what Metaflow recorded: steps, artifacts, cards, the failing step."""
    from popcorn.ml import tracking

    run = get_run(session=session, ref=ref)
    data = run_read(run)
    data["log_tail"] = run.log_tail
    data["metaflow"] = None
    if pathspec(run):
        try:
            data["metaflow"] = tracking.describe_run(pathspec(run))
        except NotFound:  # a run Metaflow has no record of (yet, or any more)
            data["metaflow"] = None
    return data


def run_card(*, session: Session, ref: int | str, step: str) -> str:
    from popcorn.ml import tracking

    run = get_run(session=session, ref=ref)
    if not pathspec(run):
        raise NotFound(f"run {run.id} has no Metaflow run yet", details={"run": run.id})
    return tracking.card_html(pathspec(run), step)


# Schedules: Popcorn's scheduler starts `ml.run` with the flow and its parameters.


def create_schedule(*, session: Session, spec: s.ScheduleCreate) -> dict[str, Any]:
    found = flows_registry.get_flow(spec.flow)
    _check_parameters(found, spec.parameters)
    sched = jobs.create_schedule(
        session=session,
        name=SCHEDULE_PREFIX + spec.name,
        task=RUN_TASK,
        arguments={
            "flow": found.name,
            "parameters": dict(spec.parameters),
            "auto_promote": spec.auto_promote,
        },
        queue="low",
        cron=spec.cron,
        interval_seconds=spec.interval_seconds,
    )
    emit(session, "ml.schedule.created", "schedule", sched.id, {"flow": found.name})
    return schedule_read(sched)


def schedule_read(sched: Any) -> dict[str, Any]:
    return {
        "name": sched.name.removeprefix(SCHEDULE_PREFIX),
        "flow": sched.arguments.get("flow", ""),
        "parameters": sched.arguments.get("parameters", {}),
        "cron": sched.cron,
        "interval_seconds": sched.interval_seconds,
        "enabled": sched.enabled,
        "next_run_at": sched.next_run_at,
        "last_run_at": sched.last_run_at,
    }


def list_schedules(*, session: Session) -> list[dict[str, Any]]:
    return [
        schedule_read(x)
        for x in jobs.list_schedules(session=session)
        if x.name.startswith(SCHEDULE_PREFIX)
    ]


def delete_schedule(*, session: Session, name: str) -> dict[str, Any]:
    sched = jobs.delete_schedule(session=session, name=SCHEDULE_PREFIX + name)
    emit(session, "ml.schedule.deleted", "schedule", sched.id, {"name": name})
    return schedule_read(sched)


def scheduled_run(flow: str, parameters: dict[str, str], auto_promote: bool) -> int:
    """A schedule fired: record the run (no second job: this job runs it)."""
    with session_scope() as session:
        spec = s.RunCreate(flow=flow, parameters=parameters, auto_promote=auto_promote)
        run = start_run(session=session, spec=spec, queue_job=False)
        return run.id


def collect_metrics() -> Iterator[Any]:
    """Scrape-time gauges: runs by flow and status, the version each model serves."""
    from prometheus_client.core import GaugeMetricFamily
    from sqlalchemy import func

    from popcorn.ml.models import MlModel

    runs = GaugeMetricFamily(
        "popcorn_ml_runs", "ML runs by flow and status", labels=["flow", "status"]
    )
    serving = GaugeMetricFamily(
        "popcorn_ml_model_promoted_version", "The version each model serves", labels=["model"]
    )
    with session_scope(readonly=True) as session:
        stmt = select(MlRun.flow, MlRun.status, func.count()).group_by(MlRun.flow, MlRun.status)
        for flow, status, count in session.execute(stmt):
            runs.add_metric([flow, status], float(count))
        for name, version in session.execute(select(MlModel.name, MlModel.promoted_version)):
            if version is not None:
                serving.add_metric([name], float(version))
    yield runs
    yield serving
