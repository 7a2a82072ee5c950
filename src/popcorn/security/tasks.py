"""Security jobs: polling one account's watchers, applying repos that are due, expiring
justifications. Each is thin; the behaviour is in the service modules."""

from __future__ import annotations

from typing import Any

from popcorn.db import session_scope
from popcorn.jobs import task
from popcorn.security import issues, roles, service


@task(service.POLL_TASK, queue="low", retries=2, timeout=3600)
def poll(account_id: int, watchers: list[str] | None = None) -> dict[str, Any]:
    """Poll an account (the watchers named, or all); failures are reported per watcher."""
    return service.poll(int(account_id), watchers or None)


@task(issues.EXPIRE_TASK, queue="low", retries=1, timeout=600)
def expire_justifications() -> dict[str, int]:
    """Reopen issues whose accepted risk has expired."""
    with session_scope() as session:
        return {"reopened": issues.expire_justifications(session=session)}


@task(roles.APPLY_DUE_TASK, queue="low", retries=1, timeout=3600)
def apply_due() -> dict[str, Any]:
    """Apply the scheduled repos whose waiting period is over."""
    with session_scope() as session:
        return {"applied": roles.apply_due(session=session)}


@task(service.REPORT_TASK, queue="low", retries=1, timeout=1800)
def daily_report() -> dict[str, Any]:
    """Each account's report as a `security.report.daily` event (rules route it)."""
    with session_scope() as session:
        return {"reports": service.daily_reports(session=session)}
