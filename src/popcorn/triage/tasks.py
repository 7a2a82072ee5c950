"""Triage jobs: running a collection (parallel agent calls, then the group's analysis)."""

from __future__ import annotations

from typing import Any

from popcorn.jobs import report_progress, task
from popcorn.triage import service


@task(service.COLLECT_TASK, queue="low", retries=1, timeout=2 * 3600)
def collect(collection_id: int) -> dict[str, Any]:
    """Ask every pending host of a collection for its tables, then analyse the group. A
    retry after a lost worker asks only the hosts that had not answered yet."""

    def progress(done: int, total: int, message: str) -> None:
        report_progress(done, total, message=message)

    return service.run_collection(int(collection_id), progress=progress)
