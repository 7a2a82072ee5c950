"""Notebook jobs: one attempt of a run, and the scheduler tick that fires due definitions."""

from __future__ import annotations

from typing import Any

from popcorn.jobs import task
from popcorn.notebooks import service


@task(service.RUN_TASK, queue="default", timeout=24 * 3600 + 120)
def run(run_id: int) -> dict[str, Any]:
    """Run a notebook, Spark job or callable once; a failure with attempts left is retried
    with backoff by the job machinery."""
    from popcorn.notebooks import execute

    return execute.run_attempt(int(run_id))


@task(service.TICK_TASK, queue="high", retries=0, timeout=60)
def tick() -> dict[str, int]:
    """Start the runs of due schedule ticks (each once) and end runs that lost their worker."""
    return service.tick()
