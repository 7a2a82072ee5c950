"""The signals facade: what other domains may call, with typed answers.

Remediation's service pack ranks the signals around an alert through
`analyze_alert`, and any domain may read samples through `query`. Callers
import this module (after `popcorn.domains.require("signals", ...)` when
signals is optional for them) and never `signals.service` or its tables.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from popcorn.signals import service
from popcorn.signals.service import QueryResult

__all__ = ["AnalysisSummary", "QueryResult", "analyze_alert", "query"]


class AnalysisSummary(BaseModel):
    """An alert analysis: `finished` with its ranked findings, or `queued` (result empty)."""

    id: int
    status: str
    signal_count: int
    result: dict[str, Any]


def query(
    *,
    session: Session,
    selector: str,
    start: Any,
    end: Any,
    step: Any = None,
    agg: str = "mean",
) -> QueryResult:
    """Samples of the series matching `selector` in `[start, end)`, raw or resampled."""
    return service.query(
        session=session, selector=selector, start=start, end=end, step=step, agg=agg
    )


def analyze_alert(
    *,
    alert_time: Any,
    trigger: int | str | None = None,
    selector: str | None = None,
    scope: dict[str, Any] | None = None,
    window_minutes: int = 120,
    inline: bool = True,
) -> AnalysisSummary:
    """Rank the signals that changed around an alert (see `service.analyze_alert`).

    Opens its own short transactions (the ranking runs in a read-only one), so call it
    outside any write transaction: the caller's own write lock would block its save.
    """
    analysis = service.analyze_alert(
        alert_time=alert_time,
        trigger=trigger,
        selector=selector,
        scope=scope,
        window_minutes=window_minutes,
        inline=inline,
    )
    return AnalysisSummary(
        id=analysis.id,
        status=analysis.status,
        signal_count=analysis.signal_count,
        result=dict(analysis.result or {}),
    )
