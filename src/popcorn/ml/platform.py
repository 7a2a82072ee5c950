"""Platform data for flows, read through other domains' facades (flows run in a
subprocess with the installation's settings, so they reach the same database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from popcorn import domains

SERIES = "requests_per_second"
MIN_WEEKS = 3


def this_hour() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def region_history(regions: list[str], *, weeks: int) -> dict[str, list[float]] | None:
    """Hourly `requests_per_second{region=...}` per region from signals, or None when
    signals is absent or holds less than three weeks for any region."""
    if not domains.installed("signals"):
        return None
    from popcorn.db import session_scope
    from popcorn.errors import NotFound
    from popcorn.signals import api as signals_api

    end = this_hour()
    start = end - timedelta(weeks=weeks)
    history: dict[str, list[float]] = {}
    with session_scope(readonly=True) as session:
        for region in regions:
            try:
                found = signals_api.query(
                    session=session,
                    selector=f'{SERIES}{{region="{region}"}}',
                    start=start,
                    end=end,
                    step=3600,
                    agg="mean",
                )
            except NotFound:  # no such series: the flow generates its history
                return None
            if not found.values:
                return None
            values = [float(v) for v in found.values[0] if v == v]  # drop NaN gaps
            if len(values) < MIN_WEEKS * 24 * 7:
                return None
            history[region] = values
    return history
