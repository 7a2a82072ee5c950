"""Traffic jobs: executing a plan on AWS."""

from __future__ import annotations

from typing import Any

from popcorn.jobs import task
from popcorn.traffic import executions as execution_service


@task(execution_service.EXECUTE_TASK, queue="high", retries=1, timeout=4 * 3600)
def execute_plan(execution_id: int) -> dict[str, Any]:
    """Scale, shift step by step, roll back on failure or cancel. A retry after a lost worker
    rolls the execution back from its stored capture instead of resuming blind."""
    return execution_service.run_execution(int(execution_id))
