"""Tasks and subscribers loaded through POPCORN_PLUGINS by the test suite's processes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from popcorn.jobs import report_progress, task
from popcorn.outbox import DomainEvent, subscribe


@task("test.flaky", retries=2, timeout=30)
def flaky(marker: str, fail_times: int) -> dict[str, Any]:
    """Fails `fail_times` times (counted in a file), then succeeds."""
    path = Path(marker)
    seen = int(path.read_text()) if path.exists() else 0
    path.write_text(str(seen + 1))
    if seen < fail_times:
        raise RuntimeError(f"planned failure {seen + 1}")
    return {"attempt": seen + 1}


@task("test.slow", retries=1, timeout=120)
def slow(seconds: float, marker: str) -> dict[str, Any]:
    """Appends a line per start to `marker`, then works for `seconds`."""
    with open(marker, "a") as fh:
        fh.write("start\n")
    steps = int(seconds * 10)
    for i in range(steps):
        time.sleep(0.1)
        report_progress(i + 1, steps, partial={"step": i + 1})
    return {"done": True}


@subscribe("test.file-log", "test.*")
def file_log(event: DomainEvent, session: Session) -> None:
    """Appends each delivered event to the file named in its payload."""
    with open(event.payload["log"], "a") as fh:
        fh.write(f"{event.id} {event.object_id} {event.payload.get('n')}\n")


# --- crash points ---------------------------------------------------------------
# POPCORN_TEST_PAUSE="<point>:<marker file>" makes the first process that reaches
# <point> in a job's life write its pid to the marker and wait there until
# "<marker>.go" exists (or it is killed). Later processes find the marker and go on.
# Points: "dequeued" (rq took the job off its queue, not yet started), "claimed"
# (rq started it, the record is still pending), "forking" (a forking worker claimed
# the record and has not forked yet), "mid-run" (inside test.crashable), "result"
# (the task returned, its outcome is not stored yet), "deferred" (rq ended the attempt
# as a success; the worker, finding no next job, is about to store its result).

PAUSE_ENV = "POPCORN_TEST_PAUSE"


def pause_at(point: str) -> None:
    name, _, marker = os.environ.get(PAUSE_ENV, "").partition(":")
    if name != point or not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    deadline = time.monotonic() + 600
    while not os.path.exists(marker + ".go") and time.monotonic() < deadline:
        time.sleep(0.05)


def _install_pause_points() -> None:
    from rq.worker.base import BaseWorker

    from popcorn.jobs import worker as job_worker

    prepare, claim, store = (
        BaseWorker.prepare_execution,
        job_worker._claim,
        job_worker.store_outcome,
    )
    hand_off, store_deferred = job_worker.hand_off, job_worker.store_deferred_outcomes

    def paused_prepare(self: Any, job: Any) -> Any:
        pause_at("dequeued")
        return prepare(self, job)

    def paused_claim(record_id: int, worker: str) -> Any:
        pause_at("claimed")
        return claim(record_id, worker)

    def paused_store(claimed: Any, ok: bool, value: Any, *, defer: bool = False) -> None:
        pause_at("result")
        store(claimed, ok, value, defer=defer)

    def paused_store_deferred() -> None:
        if job_worker._deferred:
            pause_at("deferred")
        store_deferred()

    def paused_hand_off(record_id: int, claimed: Any, outcome_fd: int) -> None:
        hand_off(record_id, claimed, outcome_fd)
        pause_at("forking")

    BaseWorker.prepare_execution = paused_prepare  # type: ignore[method-assign]
    job_worker.hand_off = paused_hand_off
    job_worker._claim = paused_claim
    job_worker.store_outcome = paused_store
    job_worker.store_deferred_outcomes = paused_store_deferred


if os.environ.get(PAUSE_ENV):
    _install_pause_points()


@task("test.crashable", retries=2, timeout=60)
def crashable(log: str) -> dict[str, Any]:
    """Appends a line per attempt to `log`; pauses at "mid-run" when asked to."""
    with open(log, "a") as fh:
        fh.write("attempt\n")
    pause_at("mid-run")
    return {"done": True}


@task("test.alert", queue="alerts", retries=0, timeout=30)
def alert(log: str) -> dict[str, Any]:
    """Stands for alert processing: notes when it ran."""
    with open(log, "a") as fh:
        fh.write(f"{time.time()}\n")
    return {"handled": True}


@task("test.writes", retries=0, timeout=60)
def writes() -> dict[str, Any]:
    """A job whose work horse writes to the database: its progress."""
    report_progress(1, 1, message="written")
    return {"written": True}


# POPCORN_TEST_BEAT_SECONDS="<seconds>": the worker's heartbeat thread beats this often
# (a tight beat makes a fork during a heartbeat write likely rather than rare).
BEAT_ENV = "POPCORN_TEST_BEAT_SECONDS"

if os.environ.get(BEAT_ENV):
    from popcorn.jobs import worker as _job_worker

    _job_worker.heartbeat_seconds = lambda: float(os.environ[BEAT_ENV])
