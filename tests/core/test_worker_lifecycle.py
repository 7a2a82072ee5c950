"""Workers stop when told: promptly when idle, right after the current job when busy.

Real `popcorn worker` processes, forking and in-process. rq's command thread used
to keep a stopping worker alive for about a minute; `popcorn up`, the demo and the
test suite all wait on a worker's exit.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import pytest
from popcorn_testing import Processes, wait_until

from popcorn import jobs
from popcorn.db import session_scope

pytestmark = pytest.mark.slow  # real worker processes, started afresh per test

STOP_BOUND = 5.0  # seconds an idle worker may take to exit after SIGTERM


def submit(task: str, **arguments: Any) -> int:
    with session_scope() as session:
        return jobs.enqueue(session, task, arguments=arguments).id


def status(job_id: int) -> str:
    with session_scope(readonly=True) as session:
        return jobs.get_job(session=session, job_id=job_id).status


@pytest.fixture(params=["forking", "in-process"])
def worker_args(request: pytest.FixtureRequest) -> list[str]:
    return ["worker"] if request.param == "forking" else ["worker", "--no-fork"]


def test_an_idle_worker_stops_within_seconds_of_sigterm(
    processes: Processes, worker_args: list[str]
) -> None:
    proc = processes.start(*worker_args)
    first = submit("core.echo", n=1)
    wait_until(lambda: status(first) == "finished", timeout=60)  # up, then idle
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"an idle worker was still running {STOP_BOUND:.0f}s after SIGTERM")
    assert proc.returncode == 0


def test_a_busy_worker_finishes_its_job_then_stops(
    processes: Processes, worker_args: list[str]
) -> None:
    proc = processes.start(*worker_args)
    running = submit("core.sleep", seconds=2)
    wait_until(lambda: status(running) == "running", timeout=60)
    waiting = submit("core.echo", n=2)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=2 + STOP_BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail("a busy worker did not stop right after its job")
    assert proc.returncode == 0
    assert status(running) == "finished"  # the current job ran to its end
    assert status(waiting) == "pending"  # and no new one was taken after SIGTERM
