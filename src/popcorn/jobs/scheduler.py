"""The scheduler loop: every state a job can be left in after a crash leads somewhere.

Each tick (one active scheduler per installation, by lease):

- `promote_due`: delayed and retrying jobs whose time has come go to rq;
- `run_due_schedules`: cron and interval schedules stored in the database fire;
- `resend_lost`: a *pending* record is sent to rq again when rq no longer holds
  it waiting on its queue and no worker is about to run it: Redis lost it, a
  worker took it off the queue and died before starting it, a worker started it
  in rq and died before marking the record running, or rq ended it without the
  record ever being claimed;
- `reap_lost`: a *running* record whose heartbeat stopped lost its worker: when rq
  holds the attempt's success (the worker died before storing it), that result is
  stored; otherwise (mid-run, or before rq ended the attempt) it is retried with
  backoff or marked failed.

Sending the same attempt twice is safe: only one delivery can claim a pending
record (a row lock), the others find it running or ended and do nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from popcorn.config import get_settings
from popcorn.context import acting_as
from popcorn.db import session_scope, utcnow
from popcorn.jobs.broker import enqueue, get_redis, push, push_after_commit, rq_job_id
from popcorn.jobs.models import JobRecord, Lease, Schedule
from popcorn.jobs.worker import _fail_attempt, _finish

log = logging.getLogger("popcorn.jobs")

# rq states that mean the attempt is over as far as rq is concerned.
_RQ_ENDED = {"finished", "failed", "stopped", "canceled"}


def promote_due(*, limit: int = 500) -> int:
    """Move due delayed and retrying jobs to pending and hand them to rq."""
    now = utcnow()
    with session_scope() as session:
        due = list(
            session.scalars(
                select(JobRecord)
                .where(JobRecord.status == "scheduled", JobRecord.run_at <= now)
                .order_by(JobRecord.run_at)
                .limit(limit)
            )
        )
        for record in due:
            record.status = "pending"
            push_after_commit(session, record)
    return len(due)


def _why_lost(
    status: str | None, started_at: str | None, waiting: bool, claim_cutoff: datetime
) -> str | None:
    """Why rq will never run this pending record's attempt, or None if it still may."""
    from rq.utils import str_to_date

    if waiting:
        return None  # on its queue: a worker will take it
    if status is None:
        return "Redis no longer had it"
    if status == "queued":
        return "a worker took it off its queue and never started it"
    if status == "started":
        if started_at and str_to_date(started_at) < claim_cutoff:
            return "a worker started it and never marked it running"
        return None
    if status in _RQ_ENDED:
        return f"rq ended it ({status}) before it was marked running"
    return None


def resend_lost(
    *, older_than: float = 5.0, claim_timeout: float | None = None, limit: int = 1000
) -> int:
    """Send again the pending records that rq will never run, whatever their age.

    A record counts once it has been due for `older_than` seconds (so a commit
    whose push is under way is left alone); a worker that started it in rq gets
    `claim_timeout` seconds (default: the job_lost_after setting) to mark it running.
    """
    from rq import Queue
    from rq.job import Job

    claim_timeout = get_settings().job_lost_after if claim_timeout is None else claim_timeout
    now = utcnow()
    with session_scope(readonly=True) as session:
        rows = list(
            session.execute(
                select(
                    JobRecord.id,
                    JobRecord.queue,
                    JobRecord.attempts,
                    JobRecord.timeout,
                    JobRecord.task,
                )
                .where(
                    JobRecord.status == "pending",
                    JobRecord.run_at <= now - timedelta(seconds=older_than),
                )
                .order_by(JobRecord.id)
                .limit(limit)
            )
        )
    if not rows:
        return 0
    pipe = get_redis().pipeline(transaction=False)
    for row in rows:
        job_id = rq_job_id(row.id, row.attempts)
        pipe.hmget(Job.key_for(job_id), "status", "started_at")
        pipe.lpos(Queue.redis_queue_namespace_prefix + row.queue, job_id)
    answers = pipe.execute()
    claim_cutoff = now - timedelta(seconds=claim_timeout)
    resent = 0
    for i, row in enumerate(rows):
        (status, started_at), position = answers[2 * i], answers[2 * i + 1]
        reason = _why_lost(
            status.decode() if status else None,
            started_at.decode() if started_at else None,
            position is not None,
            claim_cutoff,
        )
        if reason:
            log.warning("re-sending job %s: %s", row.id, reason)
            push(row.id, row.queue, row.attempts, row.timeout, row.task)
            resent += 1
    return resent


def reap_lost(*, lost_after: float | None = None) -> int:
    """Running jobs whose heartbeat stopped lost their worker: retry or fail them."""
    lost_after = get_settings().job_lost_after if lost_after is None else lost_after
    cutoff = utcnow() - timedelta(seconds=lost_after)
    with session_scope(readonly=True) as session:
        rows = list(
            session.execute(
                select(JobRecord.id, JobRecord.attempts).where(
                    JobRecord.status == "running", JobRecord.heartbeat_at < cutoff
                )
            )
        )
    for record_id, attempt in rows:
        kept = _success_kept_by_rq(record_id, attempt)
        if kept is not None:
            log.warning(
                "job %s: its worker was lost after it succeeded; storing its result", record_id
            )
            _finish(record_id, kept["value"], attempt)
        else:
            _fail_attempt(
                record_id, f"worker lost: no heartbeat for {lost_after:.0f}s", attempt=attempt
            )
    return len(rows)


def _success_kept_by_rq(record_id: int, attempt: int) -> dict[str, Any] | None:
    """The outcome rq kept of this attempt, when rq ended it as a success (`rq_result`)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        # an attempt goes to rq before its claim counts it: attempt n is rq's job n - 1
        job = Job.fetch(rq_job_id(record_id, attempt - 1), connection=get_redis())
        if job.get_status(refresh=False) != "finished":
            return None
        kept = job.return_value()
    except NoSuchJobError:
        return None
    except Exception:  # Redis down, or a result this version cannot read: retry the job
        log.warning("could not read what rq kept of job %s", record_id, exc_info=True)
        return None
    if isinstance(kept, dict) and kept.get("ok") is True and "value" in kept:
        return kept
    return None


def next_run(schedule: Schedule, after: datetime) -> datetime:
    if schedule.cron:
        from croniter import croniter

        nxt: datetime = croniter(schedule.cron, after).get_next(datetime)
        return nxt
    assert schedule.interval_seconds
    return after + timedelta(seconds=schedule.interval_seconds)


def run_due_schedules() -> int:
    """Enqueue one job per due schedule; missed runs are not replayed in a burst.

    Due rows are locked (skipping locked ones), so a scheduler that lost its lease while
    ticking and the one that took over never fire the same run twice.
    """
    now = utcnow()
    fired = 0
    with session_scope() as session:
        due = list(
            session.scalars(
                select(Schedule)
                .where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
                .with_for_update(skip_locked=True)
            )
        )
        for sched in due:
            with acting_as(f"schedule:{sched.name}"):
                job = enqueue(
                    session,
                    sched.task,
                    arguments=sched.arguments,
                    queue=sched.queue,
                    schedule=sched.name,
                )
            sched.last_run_at = now
            sched.last_job_id = job.id
            sched.next_run_at = next_run(sched, now)
            fired += 1
    return fired


def acquire_lease(name: str, holder: str, ttl: float) -> bool:
    now = utcnow()
    try:
        with session_scope() as session:
            lease = session.get(Lease, name, with_for_update=True)
            if lease is None:
                session.add(
                    Lease(name=name, holder=holder, expires_at=now + timedelta(seconds=ttl))
                )
                return True
            if lease.holder != holder and lease.expires_at > now:
                return False
            lease.holder = holder
            lease.expires_at = now + timedelta(seconds=ttl)
            return True
    except IntegrityError:
        return False


def release_lease(name: str, holder: str) -> None:
    with session_scope() as session:
        lease = session.get(Lease, name, with_for_update=True)
        if lease is not None and lease.holder == holder:
            session.delete(lease)


def scheduler_tick() -> dict[str, int]:
    return {
        "promoted": promote_due(),
        "schedules": run_due_schedules(),
        "resent": resend_lost(),
        "reaped": reap_lost(),
    }


def run_scheduler(stop: Callable[[], bool], *, interval: float = 0.5) -> None:
    """The scheduler loop plus the outbox dispatcher; one active instance per installation."""
    import popcorn.domains

    popcorn.domains.load_subscribers()
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    ttl = get_settings().scheduler_lease_seconds
    dispatcher = threading.Thread(
        target=_dispatch_loop, args=(stop, holder, ttl), name="popcorn-outbox", daemon=True
    )
    dispatcher.start()
    try:
        while not stop():
            try:
                if acquire_lease("scheduler", holder, ttl=ttl):
                    scheduler_tick()
            except Exception:
                log.exception("scheduler tick failed; retrying")
            time.sleep(interval)
    finally:
        dispatcher.join(timeout=10)
        for name in ("scheduler", "outbox"):
            try:
                release_lease(name, holder)
            except Exception:
                log.warning("could not release lease %s", name)


def _dispatch_loop(stop: Callable[[], bool], holder: str, ttl: float) -> None:
    from popcorn import outbox

    last_renew = 0.0
    leased = False
    while not stop():
        try:
            if time.monotonic() - last_renew > ttl / 3:
                leased = acquire_lease("outbox", holder, ttl=ttl)
                last_renew = time.monotonic()
            if leased and outbox.dispatch_once() > 0:
                continue
        except Exception:
            log.exception("outbox dispatch failed; retrying")
        time.sleep(0.1)
