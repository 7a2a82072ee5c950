"""Running jobs: the rq entry point, heartbeats, progress, outcomes, and the worker loop.

One attempt goes: rq hands the job to a worker (rq's "started"), `_claim` marks
the record running, the task runs while a thread beats its heartbeat, and
`_finish` or `_fail_attempt` stores the outcome. A crash at any point leaves a
record the scheduler recognises (see `popcorn.jobs.scheduler`).

A worker stores a success in the same transaction as its next claim (or before it
waits for work, or stops): one commit per job instead of two. rq holds that
outcome meanwhile (what `execute` returns is the attempt's outcome), so a worker
killed before storing it loses nothing: the scheduler takes it from rq.

In-process, `execute` does all of that itself. A forking worker claims and
stores in the worker, around the fork (`popcorn.jobs.runner`): it hands the claim
to the work horse (`hand_off`), the horse only runs the task and writes its
outcome to a file the worker reads once the horse has exited, so a horse opens
the database only when its task does.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, bindparam, update
from sqlalchemy.exc import DBAPIError, OperationalError

from popcorn.config import get_settings
from popcorn.context import acting_as
from popcorn.db import get_engine, session_scope, utcnow
from popcorn.jobs.broker import get_redis
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


# The statements every job runs, built once (on the table, not through the ORM: building
# an ORM update per call cost more than running it).
_jobs: Table = JobRecord.__table__  # type: ignore[assignment]
_CLAIM = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("b_id"), _jobs.c.status == "pending")
    .values(
        status="running",
        attempts=_jobs.c.attempts + 1,
        started_at=bindparam("b_now"),
        heartbeat_at=bindparam("b_now"),
        worker=bindparam("b_worker"),
    )
    .returning(_jobs.c.task, _jobs.c.arguments, _jobs.c.created_by, _jobs.c.attempts)
)
_FINISH = (
    update(_jobs)
    .where(
        _jobs.c.id == bindparam("b_id"),
        _jobs.c.status == "running",
        _jobs.c.attempts == bindparam("b_attempt"),
    )
    .values(status="finished", result=bindparam("b_result"), ended_at=bindparam("b_now"), error="")
)
_BEAT = (
    update(_jobs)
    .where(_jobs.c.id.in_(bindparam("b_ids", expanding=True)), _jobs.c.status == "running")
    .values(heartbeat_at=bindparam("b_now"))
)


class _KeptConnection:
    """The connection a worker keeps for the statements every job runs.

    Taking a pooled connection out and back around each statement cost as much as the
    statement itself (a pool round trip and a reset); kept, a claim and a finish take
    half the time. Only the main thread uses it, where a worker runs its jobs; other
    threads take pooled connections. A forked work horse never uses its parent's.
    """

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._engine: Engine | None = None
        self._pid = 0
        self._inherited: list[Connection] = []  # a parent's, never used nor closed here

    def get(self) -> Connection:
        engine = get_engine()
        if self._conn is None or self._engine is not engine or self._pid != os.getpid():
            self.drop()
            self._conn, self._engine, self._pid = engine.connect(), engine, os.getpid()
        return self._conn

    def drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._pid != os.getpid():
            self._inherited.append(conn)  # closing it here would close the parent's socket
            return
        try:
            conn.close()
        except Exception:  # a connection the server dropped may fail to close
            log.debug("closing the kept job connection failed", exc_info=True)


_kept = _KeptConnection()


def _in_transaction(work: Callable[[Connection], T]) -> T:
    """Run `work` in one transaction on the kept connection (a pooled one off the main
    thread); a connection the server dropped (a restart) is replaced once."""
    if threading.current_thread() is not threading.main_thread():
        with get_engine().begin() as conn:
            return work(conn)
    retried = False
    while True:
        conn = _kept.get()
        try:
            with conn.begin():
                return work(conn)
        except DBAPIError as exc:
            _kept.drop()
            if retried or not exc.connection_invalidated:
                raise
            retried = True


def prepare_statements() -> None:
    """Connect once and compile the statements every job runs (they match no record).

    Done in a worker before it forks, a work horse inherits an initialised engine and
    its compiled-statement cache instead of building both for its one job.
    """
    now = utcnow()

    def compile_all(conn: Connection) -> None:
        conn.execute(_CLAIM, {"b_id": -1, "b_now": now, "b_worker": ""}).first()
        conn.execute(_FINISH, {"b_id": -1, "b_attempt": 0, "b_result": None, "b_now": now})
        conn.execute(_BEAT, {"b_ids": [-1], "b_now": now})

    _in_transaction(compile_all)


# A work horse forked while its worker's heartbeat thread was writing inherited what that
# thread held: on SQLite, the write lock of a transaction that will never end in the horse
# (its first write then waited out the busy timeout and failed the job). The heartbeat
# writes under this lock, and a fork waits until it is free.
_no_fork_meanwhile = threading.Lock()
os.register_at_fork(
    before=_no_fork_meanwhile.acquire,
    after_in_parent=_no_fork_meanwhile.release,
    after_in_child=_no_fork_meanwhile.release,
)


class _Heartbeats:
    """One thread per process beats the heartbeat of every job running in it.

    A thread started and joined per job cost more than the job itself on a busy
    machine; this one starts with the first job of a process (a forked work horse
    has none of its parent's threads, so it starts its own) and then lives on.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._running: Counter[int] = Counter()  # a job can be added twice (run, then deferred)
        self._pid = 0

    def add(self, record_id: int) -> None:
        with self._lock:
            self._ensure_thread()
            self._running[record_id] += 1

    def discard(self, record_id: int) -> None:
        with self._lock:
            self._running[record_id] -= 1
            if self._running[record_id] <= 0:
                del self._running[record_id]

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._running = Counter()
        thread = threading.Thread(target=self._beat, name="popcorn-job-heartbeat", daemon=True)
        thread.start()

    def _beat(self) -> None:
        interval = heartbeat_seconds()
        while True:
            time.sleep(interval)
            with self._lock:
                ids = list(self._running)
            if not ids:
                continue
            try:
                with _no_fork_meanwhile, get_engine().begin() as conn:
                    conn.execute(_BEAT, {"b_ids": ids, "b_now": utcnow()})
            except Exception:
                log.warning("job heartbeat failed", exc_info=True)

    @contextmanager
    def beating(self, record_id: int) -> Iterator[None]:
        self.add(record_id)
        try:
            yield
        finally:
            self.discard(record_id)


_heartbeats = _Heartbeats()
# A forking worker beats for the jobs its horses run: a horse must not inherit its lock
# taken (it would wait forever on it), nor its list of jobs.
os.register_at_fork(after_in_child=_heartbeats.reset)


def _heartbeat(record_id: int) -> Any:
    """Beat this job's heartbeat until the block ends (its claim set the first beat)."""
    return _heartbeats.beating(record_id)


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


@dataclass(frozen=True)
class Claim:
    """One claimed attempt: what to run, as whom, and which attempt it is."""

    record_id: int
    attempt: int
    task: str
    kwargs: dict[str, Any]
    actor: str


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# Successes a worker has yet to store: (record id, attempt, result), each stored with
# the worker's next claim or by `store_deferred_outcomes`.
_deferred: list[tuple[int, int, Any]] = []


def _finish_params(outcome: tuple[int, int, Any], now: datetime) -> dict[str, Any]:
    record_id, attempt, result = outcome
    return {"b_id": record_id, "b_attempt": attempt, "b_result": result, "b_now": now}


def _stored(outcomes: list[tuple[int, int, Any]]) -> None:
    for outcome in outcomes:
        _deferred.remove(outcome)
        _heartbeats.discard(outcome[0])


def _claim(record_id: int, worker: str) -> Claim | None:
    """Mark a pending record running; None when it is not pending (canceled, duplicate).

    One conditional UPDATE: of two deliveries of the same attempt only one finds the
    record pending (the database serialises the two updates of the row). The worker's
    deferred successes are stored in the same transaction.
    """
    now = utcnow()
    outcomes = list(_deferred)

    def claim(conn: Connection) -> Any:
        if outcomes:
            conn.execute(_FINISH, [_finish_params(outcome, now) for outcome in outcomes])
        return conn.execute(_CLAIM, {"b_id": record_id, "b_now": now, "b_worker": worker}).first()

    row = _in_transaction(claim)
    _stored(outcomes)
    if row is None:
        return None
    return Claim(record_id, row.attempts, row.task, dict(row.arguments), row.created_by)


def _finish(record_id: int, result: Any, attempt: int) -> None:
    """Store a successful attempt's result (only over that attempt, still running)."""

    def write() -> None:
        _in_transaction(
            lambda conn: conn.execute(
                _FINISH, _finish_params((record_id, attempt, result), utcnow())
            )
        )

    _persistently(write, f"the result of job {record_id}")


def _defer_finish(record_id: int, result: Any, attempt: int) -> None:
    """Leave a success to be stored with the next claim; its heartbeat beats meanwhile."""
    _heartbeats.add(record_id)
    _deferred.append((record_id, attempt, result))


def store_deferred_outcomes() -> None:
    """Store the successes left for the next claim: a worker does before it waits or stops.

    One that still cannot be stored stays with rq, where the scheduler finds it.
    """
    outcomes = list(_deferred)
    if not outcomes:
        return

    def write() -> None:
        now = utcnow()
        _in_transaction(
            lambda conn: conn.execute(_FINISH, [_finish_params(o, now) for o in outcomes])
        )

    try:
        _persistently(write, f"the results of {len(outcomes)} jobs")
    except Exception:
        log.exception("could not store the results of jobs %s", [o[0] for o in outcomes])
    _stored(outcomes)


def _as_json(ok: bool, value: Any) -> tuple[bool, Any]:
    """A result the record cannot hold is a failed attempt, found before it is stored."""
    if not ok:
        return ok, value
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        return False, f"the result cannot be stored as JSON: {exc}"
    return ok, value


def rq_result(ok: bool, value: Any) -> dict[str, Any]:
    """What rq keeps of an attempt: a success's result, so that the scheduler can store it
    should the worker die first; a failure is stored before rq ends the attempt."""
    return {"ok": True, "value": value} if ok else {"ok": False}


def _attempt(claim: Claim) -> tuple[bool, Any]:
    """Run a claimed attempt's task: (True, its result) or (False, the error)."""
    try:
        spec = get_task(claim.task)
    except Exception as exc:
        return False, _describe(exc)
    token = _running.set(_Running(claim.record_id))
    try:
        with acting_as(claim.actor or "job", "admin", f"job-{claim.record_id}"):
            return True, spec.func(**claim.kwargs)
    except Exception as exc:
        return False, _describe(exc)
    finally:
        _running.reset(token)


def store_outcome(claim: Claim, ok: bool, value: Any, *, defer: bool = False) -> None:
    """Store an attempt's outcome: its result, or a failure (retried while retries remain).

    `defer` leaves a success for the next claim (see `_defer_finish`).
    """
    if ok and defer:
        _defer_finish(claim.record_id, value, claim.attempt)
    elif ok:
        _finish(claim.record_id, value, claim.attempt)
    else:
        _fail_attempt(claim.record_id, value, attempt=claim.attempt)


@dataclass(frozen=True)
class _Handoff:
    """What a forking worker leaves for the work horse it is about to fork."""

    record_id: int
    claim: Claim | None  # None: not pending (canceled, a duplicate); nothing to run
    outcome_fd: int  # the horse writes its outcome here, from offset 0
    worker_pid: int


_handoff: _Handoff | None = None


def hand_off(record_id: int, claim: Claim | None, outcome_fd: int) -> None:
    """In a forking worker, just before the fork: the horse runs this claim."""
    global _handoff
    _handoff = _Handoff(record_id, claim, outcome_fd, os.getpid())


def end_hand_off() -> None:
    global _handoff
    _handoff = None


def read_outcome(outcome_fd: int) -> tuple[bool, Any] | None:
    """The outcome a work horse wrote; None when it wrote none (killed before it could)."""
    size = os.fstat(outcome_fd).st_size
    data = os.pread(outcome_fd, size, 0) if size else b""
    try:
        outcome = json.loads(data)
        return bool(outcome["ok"]), outcome["value"]
    except (ValueError, KeyError, TypeError):
        return None


def _write_outcome(outcome_fd: int, ok: bool, value: Any) -> tuple[bool, Any]:
    try:
        data = json.dumps({"ok": ok, "value": value}).encode()
    except (TypeError, ValueError) as exc:
        ok, value = False, f"the result cannot be stored as JSON: {exc}"
        data = json.dumps({"ok": ok, "value": value}).encode()
    written = 0
    while written < len(data):
        written += os.pwrite(outcome_fd, data[written:], written)
    return ok, value


def _run_handed_off(handoff: _Handoff) -> Any:
    """In a work horse: run the claim the worker made and write the outcome for it to store.

    Should the worker have died meanwhile, nobody would read that outcome: the horse
    stores it itself (else the scheduler re-runs the attempt once its heartbeat stops).
    """
    _after_fork()
    claim = handoff.claim
    if claim is None:
        return None
    ok, value = _write_outcome(handoff.outcome_fd, *_attempt(claim))
    if os.getppid() != handoff.worker_pid:
        store_outcome(claim, ok, value)
    return rq_result(ok, value)


# Set by a Popcorn worker while it works: successes are stored with its next claim.
_deferring = False


def defer_successes(on: bool) -> None:
    global _deferring
    _deferring = on


def _forget_deferred() -> None:
    """In a work horse: what its worker left to store is the worker's to store."""
    defer_successes(False)
    _deferred.clear()


os.register_at_fork(after_in_child=_forget_deferred)


def execute(record_id: int) -> Any:
    """The rq entry point: run one attempt of a recorded job and store its outcome.

    What it returns is what rq keeps of the attempt (`rq_result`).
    """
    handoff = _handoff
    if handoff is not None and handoff.record_id == record_id and os.getpid() != handoff.worker_pid:
        return _run_handed_off(handoff)
    _after_fork()
    claim = _claim(record_id, worker_name())
    if claim is None:
        return None  # canceled, already run by a duplicate delivery, or unknown
    # The heartbeat lasts until the outcome is stored, so a worker waiting on a
    # busy database to store a result is not taken for a dead one.
    with _heartbeat(record_id):
        ok, value = _as_json(*_attempt(claim))
        store_outcome(claim, ok, value, defer=_deferring)
    return rq_result(ok, value)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def _fail_attempt(record_id: int, error: str, *, attempt: int | None = None) -> None:
    """Retry with backoff while attempts remain, else mark failed (only the given attempt's)."""

    def write() -> None:
        with session_scope() as session:
            record = session.get(JobRecord, record_id, with_for_update=True)
            if record is None or record.status not in {"running", "pending"}:
                return
            if attempt is not None and record.attempts != attempt:
                return  # a later attempt runs now: this one was reaped already
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
    from popcorn.jobs.runner import leave_process, make_worker, warm_up

    warm_up()  # once, before any fork: every work horse inherits it
    worker = make_worker(
        list(queues or QUEUES),
        connection=get_redis(),
        name=name or f"popcorn-{socket.gethostname()}-{os.getpid()}",
        fork=fork,
    )
    worker.work(burst=burst, logging_level=get_settings().log_level)
    if exit_process:
        leave_process(0)
