"""Builds and runs: a build asks for a suite on a set of devices; each test is queued once
per device family in the set that can run it; agents' beats take work through the
placement policy and bring results back (`dispatch.py`), flaky-looking failures are
retried, timeouts and dead devices are caught by the sweep, and a finished run reports to
its pipeline.

Nothing is dropped: a test whose device goes silent is `lost` and queued again (a new
attempt), or marked `error` with the reason once it has used its attempts.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.db import utcnow
from popcorn.devicelab import placement, service
from popcorn.devicelab import query as q
from popcorn.devicelab.models import LabBuild, LabDevice, LabExecution, LabRun, LabTest
from popcorn.devicelab.schemas import BuildCreate, RunCreate
from popcorn.errors import Conflict, InvalidInput
from popcorn.jobs import enqueue
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id
from popcorn.outbox import emit

# The order a device takes queued executions in (fewest candidate devices, longest first), the
# order of the queue's index: adoption and dispatch both read it.
QUEUE_ORDER = (
    LabExecution.candidate_count,
    LabExecution.expected_duration_s.desc(),
    LabExecution.id,
)

CALLBACK_TASK = "devicelab.callback"
SWEEP_TASK = "devicelab.sweep"
RUN_FILTERS = {"status": LabRun.status, "build_id": LabRun.build_id, "suite": LabRun.suite}
EXEC_FILTERS = {
    "status": LabExecution.status,
    "test_name": LabExecution.test_name,
    "device_name": LabExecution.device_name,
    "family": LabExecution.family,
    "flaky": LabExecution.flaky,
    "attribution": LabExecution.attribution,
}
_last_sweep = 0.0
ADOPT_PAGE = 500  # queued executions `adopt` reads at a time


# --- builds -----------------------------------------------------------------------------------


def create_build(*, session: Session, spec: BuildCreate) -> LabBuild:
    from popcorn.context import current_actor

    build = LabBuild(**spec.model_dump(), created_by=current_actor().name)
    session.add(build)
    session.flush()
    record_change(session, "create", "devicelab_build", build.id, after=spec.model_dump())
    emit(session, "devicelab.build.created", "devicelab_build", build.id, spec.model_dump())
    return build


def get_build(*, session: Session, ref: int | str) -> LabBuild:
    return get_by_id(session, LabBuild, ref, label="build")


def list_builds(*, session: Session, params: ListParams) -> PageResult:
    return paginate(session, select(LabBuild), params, key=LabBuild.id)


# --- runs -------------------------------------------------------------------------------------


def get_run(*, session: Session, ref: int | str) -> LabRun:
    return get_by_id(session, LabRun, ref, label="run")


def list_runs(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(LabRun).where(*filter_clauses(params.filters, RUN_FILTERS))
    return paginate(session, stmt, params, key=LabRun.id)


def list_executions(*, session: Session, run: int | str, params: ListParams) -> PageResult:
    found = get_run(session=session, ref=run)
    stmt = select(LabExecution).where(
        LabExecution.run_id == found.id, *filter_clauses(params.filters, EXEC_FILTERS)
    )
    return paginate(session, stmt, params, key=LabExecution.id)


def run_devices(*, session: Session, devices: str) -> list[LabDevice]:
    node = q.parse(devices, q.DEVICE_FIELDS)
    rows = session.scalars(
        select(LabDevice).where(LabDevice.health != "failed").order_by(LabDevice.id)
    )
    return [d for d in rows if q.matches(node, service.device_record(d))]


def plan(
    *, session: Session, tests: list[LabTest], devices: list[LabDevice], strict: bool = True
) -> list[tuple[LabTest, str, list[int]]]:
    """(test, family, candidate devices) for every test on every family that can run it.

    A test no device of the set can run is refused with its requirement, before anything
    is queued (or, not `strict`, left out).
    """
    by_family: dict[str, list[LabDevice]] = defaultdict(list)
    for device in devices:
        by_family[device.family].append(device)
    caps = {d.id: service.capability_record(d) for d in devices}
    out: list[tuple[LabTest, str, list[int]]] = []
    unplaceable: list[dict[str, Any]] = []
    for test in tests:
        placed = False
        for family, members in sorted(by_family.items()):
            candidates = [d.id for d in members if placement.capable(test.requires, caps[d.id])]
            if candidates:
                out.append((test, family, candidates))
                placed = True
        if not placed:
            unplaceable.append({"test": test.name, "requires": test.requires})
    if unplaceable and strict:
        first = unplaceable[0]
        raise InvalidInput(
            f"no device in the set has what {len(unplaceable)} test(s) require, "
            f"e.g. {first['test']} needs {first['requires']}",
            details={"unplaceable": unplaceable[:50]},
        )
    return out


def start_run(
    *,
    session: Session,
    spec: RunCreate,
    hook_id: int | None = None,
    callback_url: str = "",
) -> LabRun:
    """Queue a suite of a build on a device set (every test on every capable family)."""
    from popcorn.context import current_actor
    from popcorn.devicelab import analysis

    if spec.build is None and spec.build_id is None:
        raise InvalidInput("name a build (build_id) or describe one (build)")
    if not spec.suite and not spec.query:
        raise InvalidInput("name a suite or a test query")
    tests = service.select_tests(session=session, query=spec.query, suite=spec.suite)
    if not tests:
        raise InvalidInput("the suite and query select no tests", details={"query": spec.query})
    devices = run_devices(session=session, devices=spec.devices)
    if not devices:
        raise InvalidInput(
            "the device query matches no usable device", details={"devices": spec.devices}
        )
    planned = plan(session=session, tests=tests, devices=devices)
    build = (
        create_build(session=session, spec=spec.build)
        if spec.build is not None
        else get_build(session=session, ref=spec.build_id or 0)
    )
    selection: dict[str, Any] = {"mode": spec.select, "planned": len(planned)}
    probabilities: dict[tuple[int, str], float] = {}
    if spec.select == "predicted":
        found = analysis.choose(session=session, build=build, planned=planned, recall=spec.recall)
        if found is None:
            selection["fallback"] = (
                f"no promoted {analysis.MODEL} model: every test runs; {analysis.TRAIN_HINT}"
            )
        else:
            chosen, probabilities, info = found
            selection.update(info)
            skipped = [f"{t.name}@{fam}" for t, fam, _ in planned if (t.id, fam) not in chosen]
            selection["skipped"] = skipped[:2000]
            planned = [p for p in planned if (p[0].id, p[1]) in chosen]
    run = LabRun(
        build_id=build.id,
        suite=spec.suite,
        query=spec.query,
        devices=spec.devices,
        status="running",
        retries=spec.retries,
        max_attempts=spec.max_attempts,
        selection=selection,
        hook_id=hook_id,
        callback_url=callback_url,
        created_by=current_actor().name,
    )
    session.add(run)
    session.flush()
    now = utcnow()
    session.add_all(
        LabExecution(
            run_id=run.id,
            build_id=build.id,
            test_id=test.id,
            test_name=test.name,
            family=family,
            candidates=candidates,
            expected_duration_s=test.expected_duration_s,
            timeout_s=test.timeout_s,
            reason="first",
            probability=probabilities.get((test.id, family)),
            queued_at=now,
        )
        for test, family, candidates in planned
    )
    run.summary = {"executions": len(planned), "queued": len(planned)}
    record_change(
        session,
        "create",
        "devicelab_run",
        run.id,
        after={
            "build": build.id,
            "suite": spec.suite,
            "query": spec.query,
            "devices": spec.devices,
            "executions": len(planned),
            "selection": spec.select,
        },
    )
    emit(
        session,
        "devicelab.run.started",
        "devicelab_run",
        run.id,
        {"build": build.id, "executions": len(planned)},
    )
    return run


def cancel_run(*, session: Session, ref: int | str) -> LabRun:
    run = get_run(session=session, ref=ref)
    if run.status not in ("queued", "running"):
        raise Conflict(f"run {run.id} is already {run.status}")
    session.execute(
        update(LabExecution)
        .where(
            LabExecution.run_id == run.id,
            LabExecution.status.in_(("queued", "assigned", "running")),
        )
        .values(status="cancelled", finished_at=utcnow(), message="run cancelled")
    )
    _finish(session, run, status="cancelled")
    return run


# --- rescheduling -----------------------------------------------------------------------------


def _candidates(session: Session, execution: LabExecution) -> list[int]:
    """The devices that may take a test again: its run's device set as it is now (a device
    that joined since counts), of the same family, able to run it, and not offline."""
    run = session.get(LabRun, execution.run_id)
    test = session.get(LabTest, execution.test_id)
    if run is None or test is None:
        return list(execution.candidates)
    fresh = [
        d.id
        for d in run_devices(session=session, devices=run.devices)
        if d.family == execution.family
        and d.agent_state != "offline"
        and placement.capable(test.requires, service.capability_record(d))
    ]
    return fresh or list(execution.candidates)


def runs_on(session: Session, device_id: int) -> ColumnElement[bool]:
    """`device_id` is among an execution's candidates, tested by the database."""
    if session.get_bind().dialect.name == "postgresql":
        return LabExecution.candidates.op("@>", is_comparison=True)(
            func.jsonb_build_array(device_id)
        )
    each = func.json_each(LabExecution.candidates).table_valued("value")
    return exists().select_from(each).where(each.c.value == device_id)


def _queue_after(last: Row[int, int, int, float]) -> ColumnElement[bool]:
    """Rows after `last` (id, test, candidate count, duration) in the queue index's order."""
    ident, _, count, duration = last
    return or_(
        LabExecution.candidate_count > count,
        and_(
            LabExecution.candidate_count == count,
            or_(
                LabExecution.expected_duration_s < duration,
                and_(LabExecution.expected_duration_s == duration, LabExecution.id > ident),
            ),
        ),
    )


def adopt(*, session: Session, device: LabDevice) -> int:
    """A device that (re)joins takes its share of queued tests it could run: those of its
    family in running runs whose device set it matches.

    The queue is read `ADOPT_PAGE` rows at a time per build, along the queue index
    (`ix_devicelab_executions_queue`, as a beat's window is) and only where the device is
    not yet a candidate, so a deep queue costs pages, never one read of everything; each
    page's adopted executions are written before the next is read."""
    if device.health == "failed":
        return 0
    record, caps = service.device_record(device), service.capability_record(device)
    builds: dict[int, list[int]] = {}
    for run_id, build_id, devices in session.execute(
        select(LabRun.id, LabRun.build_id, LabRun.devices).where(LabRun.status == "running")
    ):
        if q.matches(q.parse(devices, q.DEVICE_FIELDS), record):
            builds.setdefault(build_id, []).append(run_id)
    capable: dict[int, bool] = {}
    not_yet = ~runs_on(session, device.id)
    adopted = 0
    for build_id in sorted(builds):
        queue = (
            select(
                LabExecution.id,
                LabExecution.test_id,
                LabExecution.candidate_count,
                LabExecution.expected_duration_s,
            )
            .where(
                LabExecution.family == device.family,
                LabExecution.status == "queued",
                LabExecution.build_id == build_id,
                LabExecution.run_id.in_(builds[build_id]),
                not_yet,
            )
            .order_by(*QUEUE_ORDER)
            .limit(ADOPT_PAGE)
        )
        page = session.execute(queue).all()
        while page:
            unknown = {row[1] for row in page} - set(capable)
            if unknown:
                for test_id, requires in session.execute(
                    select(LabTest.id, LabTest.requires).where(LabTest.id.in_(unknown))
                ):
                    capable[test_id] = placement.capable(requires, caps)
            ids = [row[0] for row in page if capable.get(row[1], False)]
            if ids:
                for execution in session.scalars(
                    select(LabExecution).where(LabExecution.id.in_(ids))
                ):
                    execution.candidates = [*execution.candidates, device.id]
                session.flush()
                adopted += len(ids)
            if len(page) < ADOPT_PAGE:
                break
            page = session.execute(queue.where(_queue_after(page[-1]))).all()
    return adopted


def requeue(session: Session, execution: LabExecution, reason: str) -> LabExecution:
    again = LabExecution(
        run_id=execution.run_id,
        build_id=execution.build_id,
        test_id=execution.test_id,
        test_name=execution.test_name,
        family=execution.family,
        candidates=_candidates(session, execution),
        expected_duration_s=execution.expected_duration_s,
        timeout_s=execution.timeout_s,
        attempt=execution.attempt + 1,
        reason=reason,
        probability=execution.probability,
        queued_at=utcnow(),
    )
    session.add(again)
    return again


def reschedule_device(*, session: Session, device: LabDevice, why: str) -> int:
    """Every test assigned to a device that stopped (silent or restarted): lost, and queued
    again while attempts remain, else marked `error` with the reason."""
    active = list(
        session.scalars(
            select(LabExecution).where(
                LabExecution.device_id == device.id, LabExecution.status.in_(service.ACTIVE)
            )
        )
    )
    runs = set()
    for execution in active:
        run = session.get(LabRun, execution.run_id)
        assert run is not None
        execution.status = "lost"
        execution.finished_at = utcnow()
        execution.message = f"device {device.name} stopped mid-test: {why}"
        if execution.attempt < run.max_attempts:
            requeue(session, execution, "rescheduled")
        else:
            execution.status = "error"
            execution.message += f" (after {execution.attempt} attempts)"
        emit(
            session,
            "devicelab.execution.rescheduled",
            "devicelab_execution",
            execution.id,
            {"device": device.name, "test": execution.test_name, "why": why},
        )
        runs.add(run)
    session.flush()
    for run in runs:
        finish_if_done(session=session, run=run)
    return len(active)


def maybe_sweep(*, session: Session, every: float = 1.0) -> None:
    global _last_sweep
    if time.monotonic() - _last_sweep >= every:
        _last_sweep = time.monotonic()
        sweep(session=session)


def sweep(*, session: Session) -> dict[str, int]:
    """Offline devices, their tests rescheduled; timed-out tests; expired reservations."""
    now = utcnow()
    cutoff = now - timedelta(seconds=service.offline_after())
    silent = list(
        session.scalars(
            select(LabDevice).where(
                LabDevice.agent_state == "online", LabDevice.last_heartbeat < cutoff
            )
        )
    )
    moved = 0
    for device in silent:
        device.agent_state = "offline"
        record_change(
            session, "offline", "devicelab_device", device.id, after={"agent_state": "offline"}
        )
        emit(
            session,
            "devicelab.device.offline",
            "devicelab_device",
            device.id,
            {"name": device.name},
        )
        moved += reschedule_device(session=session, device=device, why="no heartbeat")
    late = list(
        session.scalars(
            select(LabExecution).where(
                LabExecution.status.in_(service.ACTIVE), LabExecution.deadline < now
            )
        )
    )
    for execution in late:
        run = session.get(LabRun, execution.run_id)
        assert run is not None
        execution.status = "timeout"
        execution.failure_kind = "timeout"
        execution.finished_at = now
        execution.message = f"no result within the test's timeout of {execution.timeout_s:.0f} s"
        if execution.attempt <= run.retries:
            requeue(session, execution, "retry")
        emit(
            session,
            "devicelab.execution.timeout",
            "devicelab_execution",
            execution.id,
            {"test": execution.test_name},
        )
        session.flush()
        finish_if_done(session=session, run=run)
    expired = service.expire_reservations(session=session)
    return {
        "offline": len(silent),
        "rescheduled": moved,
        "timeouts": len(late),
        "reservations_expired": expired,
    }


# --- completion -------------------------------------------------------------------------------


def finish_if_done(*, session: Session, run: LabRun) -> bool:
    """End a run whose executions are all final. The run's row is locked first (PostgreSQL):
    two agents handing in a run's last two results at once are then counted one after the
    other, so the second sees the first's and ends the run (each alone would see the
    other's still running and leave it running for ever)."""
    status = session.scalar(select(LabRun.status).where(LabRun.id == run.id).with_for_update())
    if status != "running":
        return False
    pending = session.scalar(
        select(func.count())
        .select_from(LabExecution)
        .where(
            LabExecution.run_id == run.id,
            LabExecution.status.in_(("queued", "assigned", "running")),
        )
    )
    if pending:
        return False
    from popcorn.devicelab import analysis

    summary = analysis.summarise_run(session=session, run=run)
    _finish(session, run, status="passed" if summary["failed"] == 0 else "failed", summary=summary)
    return True


def _finish(
    session: Session, run: LabRun, *, status: str, summary: dict[str, Any] | None = None
) -> None:
    before = {"status": run.status}
    run.status = status
    run.finished_at = utcnow()
    if summary is not None:
        run.summary = summary
    record_change(
        session, "finish", "devicelab_run", run.id, before=before, after={"status": status}
    )
    emit(
        session,
        "devicelab.run.finished",
        "devicelab_run",
        run.id,
        {"status": status, "build": run.build_id, "summary": run.summary},
    )
    if run.callback_url:
        enqueue(session, CALLBACK_TASK, arguments={"run_id": run.id})


def stage_status(run: LabRun) -> str:
    """Spinnaker's webhook stage vocabulary: RUNNING, SUCCEEDED, TERMINAL or CANCELED."""
    return {
        "passed": "SUCCEEDED",
        "failed": "TERMINAL",
        "error": "TERMINAL",
        "cancelled": "CANCELED",
    }.get(run.status, "RUNNING")


def run_status(*, session: Session, ref: int | str, base_url: str = "") -> dict[str, Any]:
    run = get_run(session=session, ref=ref)
    counts = dict(
        session.execute(
            select(LabExecution.status, func.count())
            .where(LabExecution.run_id == run.id)
            .group_by(LabExecution.status)
        ).all()
    )
    summary = dict(run.summary)
    summary["executions_by_status"] = counts
    base = base_url.rstrip("/")
    return {
        "run": run.id,
        "status": run.status,
        "stage_status": stage_status(run),
        "passed": None if run.status in ("queued", "running") else run.status == "passed",
        "summary": summary,
        "report_url": f"{base}/ui/devicelab/runs/{run.id}",
        "junit_url": f"{base}/api/v1/devicelab/runs/{run.id}/junit",
    }
