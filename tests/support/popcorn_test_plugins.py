"""Tasks and subscribers loaded through POPCORN_PLUGINS by the test suite's processes."""

from __future__ import annotations

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
