"""The agent path: a beat hands in finished results and takes work back, in one transaction.

An agent's beat carries the results it finished since the last one; they are recorded
together (one read of their executions and runs, one multi-row insert of their events,
one audit record for the batch, each run's completion checked once), then the device
claims queued work through the placement policy in a single conditional update, placing
from a window of the queue read in placement order (a few rows per build, whatever the
queue's depth). The single-result endpoint (`report_result`) is the same code with a batch
of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.db import utcnow
from popcorn.devicelab import placement, scheduling, service
from popcorn.devicelab.models import LabBuild, LabDevice, LabExecution, LabRun, LabTest
from popcorn.devicelab.schemas import AgentResult
from popcorn.errors import Conflict
from popcorn.outbox import emit, emit_many

FLAKY_KINDS = ("infra", "network", "device", "timeout")
# A queued execution as placement reads it: id, build, candidates, duration, timeout.
Queued = Row[int, int, list[int], float, float]


def _assignment(execution: LabExecution, test: LabTest, build: LabBuild) -> dict[str, Any]:
    return {
        "execution": execution.id,
        "test": test.name,
        "attempt": execution.attempt,
        "expected_duration_s": test.expected_duration_s,
        "timeout_s": execution.timeout_s,
        "behaviour": test.behaviour,
        "build": {"id": build.id, "app_version": build.app_version, "components": build.components},
    }


def poll(
    *,
    session: Session,
    device: LabDevice,
    running: list[int],
    results: Sequence[AgentResult] = (),
) -> dict[str, Any]:
    """An agent's beat: it is alive, here is what it finished and what it runs; answer with
    what was recorded, what to stop and what to start (new work only while the device is
    healthy and not reserved by a person).

    What to start includes, again, every test the platform holds for the device that the
    agent does not say it runs: a beat whose answer was lost (the agent timed out after the
    platform committed) would otherwise leave those tests assigned to an agent that never
    heard of them, and the device idle. Redelivery is the same attempt, not a retry; the
    agent ignores an assignment it already runs or has finished."""
    service.mark_online(session=session, device=device)
    scheduling.maybe_sweep(session=session)
    recorded, refused = report_results(session=session, device=device, results=results)
    mine = set(
        session.scalars(
            select(LabExecution.id).where(
                LabExecution.device_id == device.id, LabExecution.status.in_(service.ACTIVE)
            )
        )
    )
    cancel = sorted(set(running) - mine)
    unheard = mine - set(running)
    starting = list(set(running) & mine)
    if starting:
        session.execute(
            update(LabExecution)
            .where(LabExecution.id.in_(starting), LabExecution.status == "assigned")
            .values(status="running")
            .execution_options(synchronize_session=False)
        )
    now = utcnow()
    held = bool(device.reserved_by and device.reserved_until and device.reserved_until > now)
    free = device.slots - len(mine)
    again = redeliver(session=session, device=device, ids=sorted(unheard))
    claimed: list[LabExecution] = []
    if free > 0 and not held and device.health != "failed":
        claimed = take_work(session=session, device=device, slots=free)
    given = again + claimed
    tests = _by_id(session, LabTest, {e.test_id for e in given})
    builds = _by_id(session, LabBuild, {e.build_id for e in given})
    assignments = [
        _assignment(e, tests[e.test_id], builds[e.build_id]) | {"redelivered": e.id in unheard}
        for e in given
    ]
    return {
        "platform_id": service.platform_id(),
        "device": device.name,
        "recorded": [e.id for e in recorded],
        "refused": refused,
        "cancel": cancel,
        "assignments": assignments,
    }


def redeliver(*, session: Session, device: LabDevice, ids: list[int]) -> list[LabExecution]:
    """The device's held executions `ids`, which its agent did not report running, to hand
    out again; audited (`redeliver`, one record per beat) because it means an answer was
    lost or the agent dropped work. Their deadline stands, so work whose every answer is
    lost still ends, as a timeout."""
    if not ids:
        return []
    again = list(
        session.scalars(
            select(LabExecution).where(LabExecution.id.in_(ids)).order_by(LabExecution.id)
        )
    )
    record_change(session, "redeliver", "devicelab_device", device.id, after={"executions": ids})
    return again


def _by_id(session: Session, model: Any, ids: set[int]) -> dict[int, Any]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(ids)))}


def queue_window(
    *, session: Session, device: LabDevice, slots: int
) -> tuple[dict[int, int], list[Queued]]:
    """(tests running per build, the queued executions this device may take next).

    Each build of a running run gives at most `slots` of its queued executions on the
    device's family that the device can run, in placement order (fewest candidates, then
    longest, then oldest) from the queue index: the first ones placement would take from
    that build, so the window decides as the whole queue would. On PostgreSQL the window's
    rows are locked and rows another beat has locked are skipped (two agents beating at
    once take different tests); SQLite has one writer at a time."""
    runs: dict[int, list[int]] = {}
    for run_id, build_id in session.execute(
        select(LabRun.id, LabRun.build_id).where(LabRun.status == "running")
    ):
        runs.setdefault(build_id, []).append(run_id)
    if not runs:
        return {}, []
    running = dict(
        session.execute(
            select(LabExecution.build_id, func.count())
            .where(LabExecution.status.in_(service.ACTIVE))
            .group_by(LabExecution.build_id)
        ).all()
    )
    runs_on = scheduling.runs_on(session, device.id)
    window: list[Queued] = []
    for build_id in sorted(runs):
        window += session.execute(
            select(
                LabExecution.id,
                LabExecution.build_id,
                LabExecution.candidates,
                LabExecution.expected_duration_s,
                LabExecution.timeout_s,
            )
            .where(
                LabExecution.family == device.family,  # candidates never cross families
                LabExecution.status == "queued",
                LabExecution.build_id == build_id,
                LabExecution.run_id.in_(runs[build_id]),
                runs_on,
            )
            .order_by(*scheduling.QUEUE_ORDER)
            .limit(slots)
            .with_for_update(skip_locked=True)
        ).all()
    return running, window


def take_work(*, session: Session, device: LabDevice, slots: int) -> list[LabExecution]:
    """Claim up to `slots` queued executions for this device by the placement policy.

    Placement sees the bounded window `queue_window` reads, never the whole queue; the
    claim is one conditional update per timeout value, so an execution is never taken
    twice."""
    running, mine = queue_window(session=session, device=device, slots=slots)
    if not mine:
        return []
    placer = placement.Placer()
    for build in sorted({row[1] for row in mine}):
        placer.build_order[build] = build
    placer.running.update(running)
    placer.add_all(placement.Job(i, b, frozenset(c), d) for i, b, c, d, _ in mine)
    timeouts = {row[0]: float(row[4]) for row in mine}
    picked: dict[float, list[int]] = {}
    for _ in range(slots):
        job = placer.take(device.id)
        if job is None:
            break
        picked.setdefault(timeouts[job.id], []).append(job.id)
    if not picked:
        return []
    now = utcnow()
    for timeout, ids in picked.items():
        session.execute(
            update(LabExecution)
            .where(LabExecution.id.in_(ids), LabExecution.status == "queued")
            .values(
                status="assigned",
                device_id=device.id,
                device_name=device.name,
                assigned_at=now,
                deadline=now + timedelta(seconds=timeout),
            )
            .execution_options(synchronize_session=False)
        )
    wanted = [i for ids in picked.values() for i in ids]
    claimed = list(
        session.scalars(
            select(LabExecution)
            .where(
                LabExecution.id.in_(wanted),
                LabExecution.device_id == device.id,
                LabExecution.status == "assigned",
            )
            .order_by(LabExecution.id)
            .execution_options(populate_existing=True)
        )
    )
    if claimed:
        ids = [e.id for e in claimed]
        record_change(session, "assign", "devicelab_device", device.id, after={"executions": ids})
        emit(
            session,
            "devicelab.execution.assigned",
            "devicelab_device",
            device.id,
            {"device": device.name, "executions": ids},
        )
    return claimed


def _looks_flaky(session: Session, execution: LabExecution, kind: str) -> bool:
    if kind in FLAKY_KINDS:
        return True
    flaky_before = session.scalar(
        select(func.count())
        .select_from(LabExecution)
        .where(LabExecution.test_id == execution.test_id, LabExecution.flaky.is_(True))
    )
    return bool(flaky_before)


def report_results(
    *, session: Session, device: LabDevice, results: Sequence[AgentResult]
) -> tuple[list[LabExecution], list[dict[str, Any]]]:
    """Record what an agent ran (a batch), retrying flaky-looking failures while their run
    allows it: (the executions recorded, the results refused with why). A result for an
    execution this device does not hold (rescheduled, timed out, someone else's) is
    refused, never recorded twice; the rest of the batch still counts."""
    if not results:
        return [], []
    latest = {r.execution: r for r in results}  # a result sent twice counts once
    executions = {
        e.id: e
        for e in session.scalars(
            select(LabExecution)
            .where(LabExecution.id.in_(list(latest)))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    runs = _by_id(session, LabRun, {e.run_id for e in executions.values()})
    now = utcnow()
    recorded: list[LabExecution] = []
    refused: list[dict[str, Any]] = []
    events: list[tuple[str, str, Any, dict[str, Any]]] = []
    for number, result in latest.items():
        execution = executions.get(number)
        if execution is None or execution.device_id != device.id:
            refused.append(
                {"execution": number, "reason": f"not assigned to {device.name}", "status": ""}
            )
            continue
        if execution.status not in service.ACTIVE:
            refused.append(
                {
                    "execution": number,
                    "reason": f"already {execution.status} (rescheduled or timed out)",
                    "status": execution.status,
                }
            )
            continue
        run = runs[execution.run_id]
        execution.status = result.status
        execution.duration_s = result.duration_s
        execution.message = result.message
        execution.failure_kind = result.failure_kind
        execution.finished_at = now
        retry = result.status in ("failed", "error") and execution.attempt <= run.retries
        if retry and _looks_flaky(session, execution, result.failure_kind):
            scheduling.requeue(session, execution, "retry")
        recorded.append(execution)
        events.append(
            (
                "devicelab.execution.finished",
                "devicelab_execution",
                execution.id,
                {
                    "run": run.id,
                    "test": execution.test_name,
                    "device": device.name,
                    "status": result.status,
                    "attempt": execution.attempt,
                },
            )
        )
    if recorded:
        record_change(
            session,
            "results",
            "devicelab_device",
            device.id,
            after={"results": {str(e.id): e.status for e in recorded}},
        )
        emit_many(session, events)
        session.flush()
        for run_id in sorted({e.run_id for e in recorded}):
            scheduling.finish_if_done(session=session, run=runs[run_id])
    return recorded, refused


def report_result(*, session: Session, device: LabDevice, result: AgentResult) -> LabExecution:
    """One result on its own (409 when the execution is not this device's to report)."""
    service.mark_online(session=session, device=device)
    recorded, refused = report_results(session=session, device=device, results=[result])
    if refused:
        why = refused[0]
        raise Conflict(
            f"execution {result.execution} is {why['reason']}",
            details={"status": why["status"]} if why["status"] else {},
        )
    return recorded[0]
