"""A worker killed (SIGKILL) at any point of a job's life never leaves the job stuck.

Each test runs a real scheduler and a real worker that pauses at one point of the
lifecycle (see the pause points in tests/support/popcorn_test_plugins.py), kills
the worker there, starts a fresh one (as `popcorn up` would) and shows the job
reaches an end by itself within a bound.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import popcorn_test_plugins  # noqa: F401  (registers test tasks in this process too)
import pytest
from popcorn_testing import Processes, wait_until
from sqlalchemy import text

from popcorn import jobs
from popcorn.db import get_engine, session_scope

LOST_AFTER = "4"  # seconds; the scheduler's job_lost_after in these tests
BOUND = 60.0  # every crash must be recovered from within this


def submit(task: str, **kwargs: Any) -> int:
    with session_scope() as session:
        return jobs.enqueue(session, task, **kwargs).id


def record(job_id: int) -> jobs.JobRecord:
    with session_scope(readonly=True) as session:
        found = jobs.get_job(session=session, job_id=job_id)
        session.expunge(found)
        return found


def rq_state(job_id: int) -> tuple[str | None, bool]:
    """The rq status of the job's current attempt, and whether it waits on its queue."""
    from rq import Queue
    from rq.job import Job

    rec = record(job_id)
    rq_id = jobs.rq_job_id(job_id, rec.attempts)
    raw = jobs.get_redis().hget(Job.key_for(rq_id), "status")
    waiting = jobs.get_redis().lpos(Queue.redis_queue_namespace_prefix + rec.queue, rq_id)
    return (raw.decode() if raw else None), waiting is not None


@pytest.fixture
def crash_env(processes: Processes, tmp_path: Path) -> Iterator[Path]:
    """A scheduler running with a short lost-worker time; yields the pause marker."""
    marker = tmp_path / "paused"
    processes.env["POPCORN_JOB_LOST_AFTER"] = LOST_AFTER
    processes.env["POPCORN_TEST_PAUSE"] = ""
    yield marker


def start_ready_worker(processes: Processes, *, fork: bool = False) -> Any:
    """A worker that is listening, so a job submitted next is taken at once.

    Otherwise a slow start on a busy machine leaves the job waiting long enough for
    the scheduler to count it as lost the moment the worker pauses with it.
    """
    from rq import Worker

    proc = processes.start("worker") if fork else processes.start("worker", "--no-fork")
    wait_until(lambda: Worker.count(connection=jobs.get_redis()) > 0, timeout=120)
    return proc


def pause(processes: Processes, point: str, marker: Path) -> None:
    processes.env["POPCORN_TEST_PAUSE"] = f"{point}:{marker}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "left_as"),
    [
        ("dequeued", "pending"),  # rq took it off the queue; the worker never started it
        ("claimed", "pending"),  # rq started it; the record was never marked running
        ("mid-run", "running"),
        ("result", "running"),  # the task returned; its result was never stored
        ("deferred", "running"),  # rq ended it as a success; its result was never stored
    ],
)
def test_worker_killed_at_any_point_the_job_still_finishes(
    point: str, left_as: str, crash_env: Path, processes: Processes, tmp_path: Path
) -> None:
    log = tmp_path / "attempts"
    pause(processes, point, crash_env)
    processes.start("scheduler", log=tmp_path / "scheduler.log")
    first = start_ready_worker(processes)
    job_id = submit("test.crashable", arguments={"log": str(log)})
    wait_until(crash_env.exists, timeout=30)
    processes.kill(first)

    assert record(job_id).status == left_as
    if point == "dequeued":
        assert rq_state(job_id) == ("queued", False)  # off its queue, in no worker's hands
    if point == "claimed":
        assert rq_state(job_id)[0] == "started"

    processes.start("worker", "--no-fork")
    started = time.monotonic()
    wait_until(lambda: record(job_id).status == "finished", timeout=BOUND)
    assert time.monotonic() - started < BOUND
    done = record(job_id)
    assert done.result == {"done": True}
    ran = log.read_text().count("attempt")
    # killed before the task ran: one run; killed while it ran or before rq ended it: it
    # ran again; killed once rq held its success: the scheduler stored that, no new run
    assert ran == (2 if point in {"mid-run", "result"} else 1)
    assert done.attempts == ran
    if point == "deferred":
        assert "worker lost" not in done.error


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "runs"),
    [
        ("claimed", 1),  # rq started it; the worker had not claimed the record yet
        ("forking", 1),  # claimed, never forked: the attempt is lost, the task never ran
        ("mid-run", 2),  # worker and work horse killed while the task ran
        ("result", 1),  # the horse ended (rq holds its success); the worker never stored it
    ],
)
def test_forking_worker_killed_at_any_point_the_job_still_finishes(
    point: str, runs: int, crash_env: Path, processes: Processes, tmp_path: Path
) -> None:
    log = tmp_path / "attempts"
    pause(processes, point, crash_env)
    processes.start("scheduler")
    first = start_ready_worker(processes, fork=True)
    job_id = submit("test.crashable", arguments={"log": str(log)})
    wait_until(crash_env.exists, timeout=30)
    processes.kill(first)
    assert record(job_id).status == ("pending" if point == "claimed" else "running")

    processes.start("worker")
    wait_until(lambda: record(job_id).status == "finished", timeout=BOUND)
    done = record(job_id)
    assert done.result == {"done": True}
    assert log.read_text().count("attempt") == runs
    assert done.attempts == (2 if point in {"forking", "mid-run"} else 1)


@pytest.mark.slow
def test_killed_work_horse_is_a_failed_attempt_then_retried(
    crash_env: Path, processes: Processes, tmp_path: Path
) -> None:
    log = tmp_path / "attempts"
    pause(processes, "mid-run", crash_env)
    processes.start("scheduler")
    start_ready_worker(processes, fork=True)
    job_id = submit("test.crashable", arguments={"log": str(log)})
    wait_until(crash_env.exists, timeout=30)
    horse = int(crash_env.read_text())
    os.kill(horse, signal.SIGKILL)  # the worker lives on and sees its horse die

    failed = wait_until(lambda: (r := record(job_id)).status != "running" and r, timeout=BOUND)
    assert "killed by signal 9" in failed.error
    assert failed.status in {"scheduled", "pending", "finished"}
    wait_until(lambda: record(job_id).status == "finished", timeout=BOUND)
    assert log.read_text().count("attempt") == 2
    assert record(job_id).attempts == 2


@pytest.mark.slow
def test_work_horse_of_a_killed_worker_stores_its_own_outcome(
    crash_env: Path, processes: Processes, tmp_path: Path
) -> None:
    log = tmp_path / "attempts"
    pause(processes, "mid-run", crash_env)
    worker = start_ready_worker(processes, fork=True)  # no scheduler: nothing reaps the job
    job_id = submit("test.crashable", arguments={"log": str(log)})
    wait_until(crash_env.exists, timeout=30)
    os.kill(worker.pid, signal.SIGKILL)  # the worker only; its horse runs on
    worker.wait()
    Path(f"{crash_env}.go").touch()

    wait_until(lambda: record(job_id).status == "finished", timeout=BOUND)
    done = record(job_id)
    assert done.result == {"done": True} and done.attempts == 1
    assert log.read_text().count("attempt") == 1


@pytest.mark.slow
def test_worker_killed_mid_run_without_retries_fails_by_itself(
    crash_env: Path, processes: Processes, tmp_path: Path
) -> None:
    pause(processes, "mid-run", crash_env)
    processes.start("scheduler")
    first = start_ready_worker(processes)
    job_id = submit("test.crashable", arguments={"log": str(tmp_path / "a")}, retries=0)
    wait_until(crash_env.exists, timeout=30)
    processes.kill(first)
    processes.start("worker", "--no-fork")
    wait_until(lambda: record(job_id).status == "failed", timeout=BOUND)
    assert "worker lost" in record(job_id).error


@contextmanager
def database_locked() -> Iterator[None]:
    """Hold the database's write lock: SQLite's BEGIN EXCLUSIVE, PostgreSQL's table lock."""
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(str(engine.url.database), timeout=30, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    with engine.connect() as pg, pg.begin():
        pg.execute(text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
        yield


@pytest.mark.slow
def test_job_finishing_while_the_database_is_locked_is_stored_once_unlocked(
    crash_env: Path, processes: Processes, tmp_path: Path
) -> None:
    processes.env["POPCORN_JOB_LOST_AFTER"] = "10"  # longer than the lock: not a lost worker
    pause(processes, "result", crash_env)
    processes.start("scheduler")
    processes.start("worker", "--no-fork")
    job_id = submit("test.crashable", arguments={"log": str(tmp_path / "a")})
    wait_until(crash_env.exists, timeout=30)
    with database_locked():
        Path(f"{crash_env}.go").touch()  # the task returned; now it stores its result
        time.sleep(4)
    wait_until(lambda: record(job_id).status == "finished", timeout=BOUND)
    done = record(job_id)
    assert done.attempts == 1 and done.result == {"done": True}
