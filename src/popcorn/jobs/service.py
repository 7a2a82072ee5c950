"""What people do with jobs, the same from the API and the CLI: submit, cancel, look up, list.

Submissions and cancellations are audited here, so every path writes one record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.jobs.broker import enqueue
from popcorn.jobs.models import ENDED, JobRecord, Schedule
from popcorn.jobs.registry import check_submission, get_task
from popcorn.jobs.scheduler import next_run
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate

JOB_FILTERS = {
    "status": JobRecord.status,
    "queue": JobRecord.queue,
    "task": JobRecord.task,
    "schedule": JobRecord.schedule,
    "created_at": JobRecord.created_at,
}


def get_job(*, session: Session, job_id: int) -> JobRecord:
    record = session.get(JobRecord, job_id)
    if record is None:
        raise NotFound(f"no job {job_id!r}", details={"id": job_id})
    return record


def list_jobs(*, session: Session, params: ListParams) -> PageResult:
    """A page of jobs, oldest first (filters: status, queue, task, schedule, created_at)."""
    if params.q:
        raise InvalidInput("free-text search is not supported on jobs")
    stmt = select(JobRecord).where(*filter_clauses(params.filters, JOB_FILTERS))
    return paginate(session, stmt, params, key=JobRecord.id)


def recent_jobs(
    *, session: Session, filters: Mapping[str, Sequence[str]], limit: int = 50
) -> list[JobRecord]:
    """The newest jobs matching the same filters as `list_jobs`."""
    stmt = select(JobRecord).where(*filter_clauses(filters, JOB_FILTERS))
    return list(session.scalars(stmt.order_by(JobRecord.id.desc()).limit(limit)))


def counts_by_status(*, session: Session) -> dict[str, int]:
    """How many job records are in each state (the console's overview)."""
    stmt = select(JobRecord.status, func.count()).group_by(JobRecord.status)
    return {status: int(count) for status, count in session.execute(stmt).all()}


def submit_job(
    *,
    session: Session,
    task: str,
    arguments: dict[str, Any] | None = None,
    queue: str | None = None,
    delay_seconds: float | None = None,
    retries: int | None = None,
    timeout: int | None = None,
) -> JobRecord:
    """A person submits a public task by name, within its declared limits; audited."""
    spec = get_task(task)
    bounded = check_submission(
        spec, arguments=arguments or {}, queue=queue, timeout=timeout, retries=retries
    )
    record = enqueue(
        session,
        task,
        arguments=bounded,
        queue=queue,
        delay_seconds=delay_seconds,
        retries=retries,
        timeout=timeout,
    )
    record_change(session, "submit", "job", record.id, after={"task": task, "queue": record.queue})
    return record


def cancel_job(*, session: Session, job_id: int) -> JobRecord:
    """Cancel a job that has not started yet; audited."""
    record = session.get(JobRecord, job_id, with_for_update=True)
    if record is None:
        raise NotFound(f"no job {job_id!r}", details={"id": job_id})
    if record.status not in {"scheduled", "pending"}:
        raise Conflict(f"job is {record.status}; only scheduled or pending jobs can be canceled")
    before = {"status": record.status}
    record.status = "canceled"
    record.ended_at = utcnow()
    record_change(session, "cancel", "job", job_id, before=before, after={"status": "canceled"})
    return record


def wait_for(job_id: int, *, timeout: float = 30.0, poll: float = 0.1) -> JobRecord:
    """Block until a job ends (used by the CLI's --wait and by tests)."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(readonly=True) as session:
            record = get_job(session=session, job_id=job_id)
            if record.status in ENDED:
                session.expunge(record)
                return record
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {record.status} after {timeout}s")
        time.sleep(poll)


def list_schedules(*, session: Session) -> list[Schedule]:
    return list(session.scalars(select(Schedule).order_by(Schedule.name)))


def create_schedule(
    *,
    session: Session,
    name: str,
    task: str,
    arguments: dict[str, Any] | None = None,
    queue: str = "default",
    cron: str | None = None,
    interval_seconds: int | None = None,
    enabled: bool = True,
) -> Schedule:
    """Store a repeating job; exactly one of `cron` and `interval_seconds`."""
    get_task(task)
    if (cron is None) == (interval_seconds is None):
        raise InvalidInput(
            "give exactly one of cron and interval_seconds",
            details={"cron": cron, "interval_seconds": interval_seconds},
        )
    if cron is not None:
        from croniter import croniter

        if not croniter.is_valid(cron):
            raise InvalidInput(f"invalid cron expression {cron!r}", details={"cron": cron})
    if session.scalar(select(Schedule.id).where(Schedule.name == name)) is not None:
        raise Conflict(f"a schedule named {name!r} exists", details={"name": name})
    sched = Schedule(
        name=name,
        task=task,
        arguments=arguments or {},
        queue=queue,
        cron=cron,
        interval_seconds=interval_seconds,
        enabled=enabled,
    )
    sched.next_run_at = next_run(sched, utcnow())
    session.add(sched)
    session.flush()
    record_change(
        session,
        "create",
        "schedule",
        sched.id,
        after={"name": name, "task": task, "cron": cron, "interval_seconds": interval_seconds},
    )
    return sched


def ensure_schedule(
    *,
    session: Session,
    name: str,
    task: str,
    queue: str = "default",
    cron: str | None = None,
    interval_seconds: int | None = None,
) -> bool:
    """A domain's own repeating job exists; made the first time it is needed.

    Safe when two requests make it at once: the loser's insert rolls back to a savepoint
    and the winner's schedule stands. Returns whether this call made it.
    """
    if session.scalar(select(Schedule.id).where(Schedule.name == name)) is not None:
        return False
    try:
        with session.begin_nested():
            create_schedule(
                session=session,
                name=name,
                task=task,
                queue=queue,
                cron=cron,
                interval_seconds=interval_seconds,
            )
    except (IntegrityError, Conflict):
        return False
    return True


def delete_schedule(*, session: Session, name: str) -> Schedule:
    sched = session.scalar(select(Schedule).where(Schedule.name == name))
    if sched is None:
        raise NotFound(f"no schedule {name!r}", details={"name": name})
    record_change(session, "delete", "schedule", sched.id, before={"name": name})
    session.delete(sched)
    return sched
