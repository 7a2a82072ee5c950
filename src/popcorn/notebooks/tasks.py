"""Notebook jobs: one attempt of a run, and the scheduler tick that fires due definitions."""

from __future__ import annotations

import uuid
from typing import Any

from popcorn.jobs import before_fork, get_redis, task
from popcorn.notebooks import service


@task(service.RUN_TASK, queue="default", timeout=24 * 3600 + 120)
def run(run_id: int) -> dict[str, Any]:
    """Run a notebook, Spark job or callable once; a failure with attempts left is retried
    with backoff by the job machinery."""
    from popcorn.notebooks import execute

    return execute.run_attempt(int(run_id))


TICK_LOCK = "popcorn:notebooks:tick"


@task(service.TICK_TASK, queue="high", retries=0, timeout=120)
def tick() -> dict[str, int]:
    """Start the runs of due schedule ticks (each once) and end runs that lost their worker.

    One tick at a time: the scheduler enqueues one every few seconds, and when firing takes
    longer (a thousand schedules due at once) the next ones return at once instead of
    piling up on the high queue and keeping every worker from the runs themselves.
    """
    redis = get_redis()
    owner = uuid.uuid4().hex
    if not redis.set(TICK_LOCK, owner, nx=True, ex=130):
        return {"fired": 0, "lost": 0, "busy": 1}
    try:
        return service.tick()
    finally:
        if redis.get(TICK_LOCK) in (owner, owner.encode()):
            redis.delete(TICK_LOCK)


@before_fork
def prefork() -> None:
    """Import papermill, nbclient and jupyter_client once in the worker (seconds of imports),
    so each forked work horse starts its kernel without importing them again; only where
    notebook jobs are defined, so other installations' workers start as fast as before."""
    import contextlib

    if not service.any_definitions():
        return

    import nbclient
    import nbformat
    import papermill.translators
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    del nbclient, nbformat, papermill, AsyncKernelManager
    with contextlib.suppress(Exception):  # the kernel spec lookup imports ipykernel's parts
        KernelSpecManager().get_kernel_spec("python3")
