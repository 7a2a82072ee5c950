"""Device lab jobs: a finished run's pipeline callback, and the sweep (silent devices,
late tests, ended reservations) for installations where no agent polls for a while."""

from __future__ import annotations

from typing import Any

from popcorn.db import session_scope
from popcorn.devicelab import hooks, scheduling
from popcorn.jobs import task


@task(scheduling.CALLBACK_TASK, retries=5, timeout=60)
def callback(run_id: int) -> dict[str, Any]:
    """POST the run's status to the pipeline that started it (retried while it fails)."""
    return hooks.send_callback(int(run_id))


@task(scheduling.SWEEP_TASK, timeout=300)
def sweep() -> dict[str, int]:
    """Mark silent devices offline and reschedule their tests; time out late tests."""
    with session_scope() as session:
        return scheduling.sweep(session=session)
