"""A forking worker's heartbeat thread writes to the database while the worker forks its
work horses: no horse may inherit the database's locks held and hang.

SQLite is not safe across a fork taken while another thread is inside it; the horse's
first query then waits forever. The suite once stalled on it for five minutes, once in
a few thousand jobs; a heartbeat beating without pause makes it most forks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import popcorn_test_plugins  # noqa: F401  (registers test.writes in this process too)
import pytest
from popcorn_testing import Processes, wait_until
from sqlalchemy import select

from popcorn import jobs
from popcorn.db import session_scope

JOBS = 30

# Another thread holds the core's locks while the process forks; the child then takes them.
FORK_WHILE_HELD = textwrap.dedent(
    """
    import os, signal, threading, time
    from sqlalchemy import text
    from popcorn import db, jobs
    from popcorn.jobs import broker

    held = threading.Event()

    def hold():
        with db._lock, db._schema_lock, broker._redis_lock:
            held.set()
            time.sleep(60)

    threading.Thread(target=hold, daemon=True).start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)  # a lock inherited held: the child dies of SIGALRM
        db.get_engine()
        jobs.get_redis()
        with db.session_scope(readonly=True) as session:
            session.execute(text("SELECT 1"))
        os._exit(0)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """
)


def test_a_child_forked_while_another_thread_holds_the_core_locks_can_take_them(
    installation: dict[str, str],
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_HELD],
        env={**os.environ, **installation},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0"  # not -14 (SIGALRM)


def statuses(ids: list[int]) -> dict[str, int]:
    with session_scope(readonly=True) as session:
        found = session.scalars(select(jobs.JobRecord.status).where(jobs.JobRecord.id.in_(ids)))
        counts: dict[str, int] = {}
        for status in found:
            counts[status] = counts.get(status, 0) + 1
        return counts


@pytest.mark.slow
def test_work_horses_forked_during_heartbeats_never_hang(processes: Processes) -> None:
    with session_scope() as session:
        ids = [jobs.enqueue(session, "test.writes").id for _ in range(JOBS)]
    processes.env["POPCORN_TEST_BEAT_SECONDS"] = "0.0005"
    processes.start("worker", "--burst")

    # a horse that inherited a heartbeat's transaction waits on a lock nobody will free
    # until the database's busy timeout (30 s), then fails its job
    done = wait_until(
        lambda: (s := statuses(ids)).get("finished", 0) + s.get("failed", 0) == JOBS and s,
        timeout=120,
    )
    assert done == {"finished": JOBS}
    with session_scope(readonly=True) as session:
        results = session.scalars(select(jobs.JobRecord.result).where(jobs.JobRecord.id.in_(ids)))
        assert all(r == {"written": True} for r in results)
