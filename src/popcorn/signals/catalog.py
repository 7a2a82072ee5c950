"""The series catalog: which series exist, which a selector or scope names, and how they list.

Kept apart from `series` (samples and range queries) so that listing and looking up series
reads only the `signals_series` table and imports neither numpy nor the Parquet store: the
`signals series` command and the series pages stay quick to start.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.signals.models import Series
from popcorn.signals.promql import Selector, format_series, parse_selector

METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TIME_COLUMNS = ("timestamp", "ts", "time")
FORMATS = ("json", "csv", "parquet", "prometheus")
SCOPE_LABELS = ("site", "device")
AGGREGATIONS = ("mean", "max", "min", "sum", "last", "count")
SERIES_FILTERS = {
    "id": Series.id,
    "metric": Series.metric,
    "site": Series.site,
    "device": Series.device,
    "first_at": Series.first_at,
    "last_at": Series.last_at,
    "sample_count": Series.sample_count,
}


def series_name(series: Series) -> str:
    return format_series(series.metric, dict(series.labels or {}))


def to_ms(when: datetime) -> int:
    return round(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


# --------------------------------------------------------------------------- series


def as_selector(selector: str | Selector) -> Selector:
    return selector if isinstance(selector, Selector) else parse_selector(selector)


def find_series(
    *,
    session: Session,
    selector: str | Selector | None = None,
    scope: dict[str, Any] | None = None,
    limit: int | None = None,
) -> list[Series]:
    """Series matching a selector and/or any of an inventory scope's label values, by id.

    A scope is `{"site": "ams1", "device": ["r1", "r2"]}`: a series is in scope when one of
    its labels has one of the given values.
    """
    if selector is None and not scope:
        raise InvalidInput("give a selector or a scope", details={"selector": None})
    sel = as_selector(selector) if selector is not None else None
    stmt = select(Series)
    if sel is not None:
        if sel.metric is not None:
            stmt = stmt.where(Series.metric == sel.metric)
        eq = sel.equalities()
        for label in SCOPE_LABELS:
            if eq.get(label):
                stmt = stmt.where(getattr(Series, label) == eq[label])
    wanted = scope_values(scope)
    if wanted and sel is None and set(wanted) <= set(SCOPE_LABELS):
        stmt = stmt.where(or_(*[getattr(Series, k).in_(sorted(v)) for k, v in wanted.items()]))
    found = []
    for series in session.scalars(stmt.order_by(Series.id)):
        labels = series.labels or {}
        if sel is not None and not sel.matches(series.metric, labels):
            continue
        if wanted and sel is None and not _in_scope(labels, wanted):
            continue
        found.append(series)
        if limit is not None and len(found) > limit:
            break
    return found


def scope_values(scope: dict[str, Any] | None) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for key, value in (scope or {}).items():
        if not LABEL_RE.match(str(key)):
            raise InvalidInput(f"scope: {key!r} is not a label name", details={"scope": key})
        values = value if isinstance(value, list | tuple | set) else [value]
        out[str(key)] = {str(v) for v in values}
    return out


def _in_scope(labels: dict[str, str], wanted: dict[str, set[str]]) -> bool:
    return any(labels.get(k) in v for k, v in wanted.items())


def proximity_of(labels: dict[str, str], wanted: dict[str, set[str]]) -> float:
    """Share of the scope's labels a series matches: 1 on the alerting device, less nearby."""
    return sum(labels.get(k) in v for k, v in wanted.items()) / len(wanted)


def list_series(*, session: Session, params: ListParams, match: str | None = None) -> PageResult:
    stmt = select(Series).where(*filter_clauses(params.filters, SERIES_FILTERS))
    if match:
        ids = [s.id for s in find_series(session=session, selector=match)]
        stmt = stmt.where(Series.id.in_(ids))
    return paginate(session, stmt, params, key=Series.id)


def get_series(*, session: Session, series_id: int) -> Series:
    series = session.get(Series, series_id)
    if series is None:
        raise NotFound(f"no series {series_id}", details={"id": series_id})
    return series


def series_dict(series: Series) -> dict[str, Any]:
    return {
        "id": series.id,
        "name": series_name(series),
        "metric": series.metric,
        "labels": dict(series.labels or {}),
        "fingerprint": f"{series.fingerprint & 0xFFFFFFFFFFFFFFFF:016x}",
        "site": series.site,
        "device": series.device,
        "first_time": series.first_at.isoformat(),
        "last_time": series.last_at.isoformat(),
        "sample_count": series.sample_count,
    }
