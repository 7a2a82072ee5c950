"""Running jobs: the rq entry point, heartbeats, progress, outcomes, and the worker loop.

One attempt goes: rq hands the job to a worker (rq's "started"), `_claim` marks
the record running, the task runs while a thread beats its heartbeat, and
`_finish` or `_fail_attempt` stores the outcome. A crash at any point leaves a
record the scheduler recognises (see `popcorn.jobs.scheduler`).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from popcorn.config import get_settings
from popcorn.context import acting_as
from popcorn.db import session_scope, utcnow
from popcorn.jobs.broker import get_redis, rq_queue
from popcorn.jobs.models import QUEUES, JobRecord
from popcorn.jobs.registry import get_task

log = logging.getLogger("popcorn.jobs")

HEARTBEAT_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 300.0
# How long a worker keeps trying to store an outcome while the database is busy.
OUTCOME_WRITE_SECONDS = 60.0

T = TypeVar("T")


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


def heartbeat_seconds() -> float:
    """Beat often enough that several beats fit in the time after which a job is lost."""
    return min(HEARTBEAT_SECONDS, get_settings().job_lost_after / 4)


@contextmanager
def _heartbeat(record_id: int) -> Iterator[None]:
    stop = threading.Event()
    interval = heartbeat_seconds()

    def beat() -> None:
        while not stop.wait(interval):
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


def _persistently(write: Callable[[], T], what: str) -> T:
    """Retry a write the database refused for being busy, for up to OUTCOME_WRITE_SECONDS.

    An outcome that still cannot be stored is left to the reaper: the record
    stays "running" without a heartbeat, and the attempt is retried.
    """
    deadline = time.monotonic() + OUTCOME_WRITE_SECONDS
    delay = 0.2
    while True:
        try:
            return write()
        except OperationalError:
            if time.monotonic() > deadline:
                raise
            log.warning("could not store %s yet (database busy); retrying", what)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _claim(record_id: int, worker: str) -> tuple[str, dict[str, Any], str] | None:
    """Mark a pending record running; None when it is not pending (canceled, duplicate)."""
    with session_scope() as session:
        record = session.get(JobRecord, record_id, with_for_update=True)
        if record is None or record.status != "pending":
            return None
        record.status = "running"
        record.attempts += 1
        record.started_at = record.heartbeat_at = utcnow()
        record.worker = worker
        return record.task, dict(record.arguments), record.created_by


def _finish(record_id: int, result: Any) -> None:
    """Store a successful attempt's result."""

    def write() -> None:
        with session_scope() as session:
            record = session.get(JobRecord, record_id, with_for_update=True)
            if record is not None and record.status == "running":
                record.status = "finished"
                record.result = result
                record.ended_at = utcnow()
                record.error = ""

    _persistently(write, f"the result of job {record_id}")


def execute(record_id: int) -> Any:
    """The rq entry point: run one attempt of a recorded job and store its outcome."""
    _after_fork()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    claimed = _claim(record_id, worker)
    if claimed is None:
        return None  # canceled, already run by a duplicate delivery, or unknown
    task_name, kwargs, actor = claimed
    try:
        spec = get_task(task_name)
    except Exception as exc:
        _fail_attempt(record_id, _describe(exc))
        return None
    token = _running.set(_Running(record_id))
    try:
        # The heartbeat lasts until the outcome is stored, so a worker waiting on a
        # busy database to store a result is not taken for a dead one.
        with _heartbeat(record_id), acting_as(actor or "job", "admin", f"job-{record_id}"):
            try:
                result = spec.func(**kwargs)
            except Exception as exc:
                _fail_attempt(record_id, _describe(exc))
                return None
            _finish(record_id, result)
    finally:
        _running.reset(token)
    return result


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def _fail_attempt(record_id: int, error: str) -> None:
    """Retry with backoff while attempts remain, else mark failed."""

    def write() -> None:
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

    _persistently(write, f"the failure of job {record_id}")


def run_worker(
    queues: list[str] | None = None,
    *,
    burst: bool = False,
    name: str | None = None,
    fork: bool = True,
    exit_process: bool = False,
) -> None:
    """An rq worker; `fork=False` runs jobs in-process (faster, less isolation).

    Queues are served in the order given; by default all of them, "alerts" first.
    `exit_process` ends the process as soon as the worker has stopped (see
    `popcorn.jobs.runner.leave_process`): what `popcorn worker` does.
    """
    import popcorn.domains
    from popcorn.jobs.runner import leave_process, make_worker

    popcorn.domains.load_tasks()
    worker = make_worker(
        [rq_queue(q) for q in (queues or list(QUEUES))],
        connection=get_redis(),
        name=name or f"popcorn-{socket.gethostname()}-{os.getpid()}",
        fork=fork,
    )
    worker.work(burst=burst, logging_level=get_settings().log_level)
    if exit_process:
        leave_process(0)
