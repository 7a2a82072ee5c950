"""Background jobs of the certificates domain: discovery sweeps, the daily scan, pending issues."""

from __future__ import annotations

from typing import Any

from popcorn.certificates import service
from popcorn.db import session_scope
from popcorn.jobs import report_progress, task


@task("certificates.discover", timeout=3600)
def discover(
    source: int | str | None = None,
    endpoints: list[str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Sweep a discovery source (or a list of host:port) and record what each endpoint serves."""
    return service.run_discovery(endpoints=endpoints or (), source=source, timeout=timeout)


@task("certificates.scan", timeout=3600)
def scan(intervals: list[int] | None = None) -> dict[str, Any]:
    """Expiry warnings, automatic rotations, retried deployments and fresh CRLs."""
    return service.run_scan(
        intervals=intervals or service.DEFAULT_INTERVALS,
        progress=lambda done, total: report_progress(done, total, message="rotations"),
    )


@task("certificates.complete_pending", timeout=600)
def complete_pending() -> dict[str, int]:
    """Collect certificates that asynchronous issuers have signed since they were requested."""
    with session_scope() as session:
        return service.complete_pending(session=session)
