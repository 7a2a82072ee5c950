"""Remediation jobs: running an execution, and the periodic housekeeping."""

from __future__ import annotations

from typing import Any

from popcorn.jobs import task
from popcorn.remediation import packs

RUN_TASK = "remediation.run"
HOUSEKEEPING_TASK = "remediation.housekeeping"

# Discover packs when a worker loads its tasks, so that forked work horses inherit them
# instead of importing every pack again for each job.
packs.registry()


@task(RUN_TASK, retries=5, timeout=3600)
def run_execution(execution_id: int) -> dict[str, Any]:
    """Run an execution's steps until it ends or waits; resumable after a lost worker."""
    from popcorn.remediation import service

    return service.run_execution(int(execution_id))


@task(HOUSEKEEPING_TASK, queue="high", retries=0, timeout=300)
def housekeeping() -> dict[str, int]:
    """Expire approvals past their deadline, fail orphaned executions, admit queued ones."""
    from popcorn.remediation import service

    return service.housekeeping()
