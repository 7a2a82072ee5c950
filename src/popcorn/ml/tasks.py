"""ML jobs: running a flow (started by a person, a resume or a schedule)."""

from __future__ import annotations

from typing import Any

from popcorn.jobs import report_progress, task
from popcorn.ml import service


@task(service.RUN_TASK, queue="low", retries=1, timeout=6 * 3600)
def run_flow(
    run: int | None = None,
    flow: str | None = None,
    parameters: dict[str, str] | None = None,
    auto_promote: bool = True,
) -> dict[str, Any]:
    """Run a recorded run; a schedule passes the flow instead and the run is recorded here.
    A retry after a lost worker resumes the Metaflow run the first attempt started."""
    if run is None:
        if not flow:
            raise ValueError("ml.run needs a run or a flow")
        run = service.scheduled_run(flow, dict(parameters or {}), auto_promote)

    def progress(done: int, total: int, message: str) -> None:
        report_progress(done, total, message=message)

    return service.execute_run(int(run), progress=progress)
