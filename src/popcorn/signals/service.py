"""Signals: ingest, series lookup, range queries, retention and alert analysis.

Every function here takes `session=` and is what the API, the CLI, the jobs and other
domains call. Samples go to the Parquet store (store.py) while the series' metadata lives
in the `signals_series` table; an ingest writes both in one all-or-nothing step.

Other domains call `analyze_alert()` (remediation does, for its evidence),
`find_series()` and `query()`.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import emit
from popcorn.signals import ingest as parsers
from popcorn.signals import store
from popcorn.signals.models import Analysis, AnalysisChunk, Series, Setting
from popcorn.signals.promql import (
    Selector,
    format_series,
    parse_duration,
    parse_selector,
    parse_time,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SCOPE_LABELS = ("site", "device")
AGGREGATIONS = ("mean", "max", "min", "sum", "last", "count")
DEFAULT_RETENTION_DAYS = 30
RETENTION_SCHEDULE = "signals.retention"
MAX_QUERY_SERIES = 1000
MAX_QUERY_POINTS = 11_000
MAX_CELLS = 20_000_000
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


# --------------------------------------------------------------------------- ingest


@dataclass
class IngestResult:
    samples: int
    series: int
    new_series: int
    files: int
    duplicates: int = 0
    skipped: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    batch_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "samples": self.samples,
            "series": self.series,
            "new_series": self.new_series,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "files": self.files,
            "first_time": self.first_time.isoformat() if self.first_time else None,
            "last_time": self.last_time.isoformat() if self.last_time else None,
        }


@dataclass
class _Staged:
    """Samples written to (not yet committed) files, and what the series table must learn."""

    stats: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # first, last, count
    keys: dict[int, parsers.SeriesKey] = field(default_factory=dict)
    samples: int = 0
    duplicates: int = 0
    skipped: int = 0
    files: int = 0

    def add(self, session: Session, batch: parsers.Batch) -> None:
        """Write one batch's files (no database statement: no lock is taken here)."""
        prints = np.array(
            [store.fingerprint(metric, dict(labels)) for metric, labels in batch.series],
            np.int64,
        )
        self.skipped += batch.skipped
        if batch.samples == 0:
            return
        sid = prints[batch.index]
        keep = store.dedupe_sorted(sid, batch.ts)
        sid, ts, values = sid[keep], batch.ts[keep], batch.value[keep]
        self.files += store.write_sorted(session, sid, ts, values)
        cuts = np.flatnonzero(np.diff(sid)) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, sid.size], strict=True):
            p, first, last, count = int(sid[a]), int(ts[a]), int(ts[b - 1]), int(b - a)
            if p in self.stats:
                f0, l0, c0 = self.stats[p]
                first, last, count = min(f0, first), max(l0, last), c0 + count
            self.stats[p] = (first, last, count)
        for p, key in zip(prints.tolist(), batch.series, strict=True):
            self.keys.setdefault(p, key)
        self.samples += int(sid.size)
        self.duplicates += int(batch.samples - sid.size)

    def commit(self, session: Session, source: str) -> IngestResult:
        """Record the series and the audit entry in the caller's transaction."""
        if self.samples == 0:
            raise InvalidInput(f"{source}: no samples to ingest", details={"source": source})
        batch_id = uuid.uuid4().hex[:16]
        new = _upsert_series(session, self.stats, self.keys)
        result = IngestResult(
            samples=self.samples,
            series=len(self.stats),
            new_series=new,
            files=self.files,
            duplicates=self.duplicates,
            skipped=self.skipped,
            first_time=from_ms(min(v[0] for v in self.stats.values())),
            last_time=from_ms(max(v[1] for v in self.stats.values())),
            batch_id=batch_id,
        )
        record_change(
            session,
            "ingest",
            "signals_batch",
            batch_id,
            after={"source": source, **result.as_dict()},
        )
        if new:
            ensure_retention_schedule(session=session)
        return result


def ingest_batch(*, session: Session, batch: parsers.Batch, source: str) -> IngestResult:
    """Store a validated batch: samples to Parquet, series metadata to the database.

    Out-of-order samples are sorted; a series' repeated timestamp keeps the value given last.
    Nothing is visible to others until the session commits, and on rollback the files go.
    """
    staged = _Staged()
    staged.add(session, batch)
    return staged.commit(session, source)


def _upsert_series(
    session: Session,
    stats: dict[int, tuple[int, int, int]],
    keys: dict[int, parsers.SeriesKey],
) -> int:
    """Create missing series (racing writers tolerated) and widen the existing ones."""
    now = utcnow()
    prints = sorted(stats)
    existing: dict[int, Series] = {}
    for lo in range(0, len(prints), 500):
        chunk = prints[lo : lo + 500]
        stmt = select(Series).where(Series.fingerprint.in_(chunk)).order_by(Series.id)
        existing.update({s.fingerprint: s for s in session.scalars(stmt.with_for_update())})
    missing = [p for p in keys if p in stats and p not in existing]  # ids in batch order
    if missing:
        rows = []
        for p in missing:
            metric, labels = keys[p]
            label_map = dict(labels)
            first, last, count = stats[p]
            rows.append(
                {
                    "fingerprint": p,
                    "metric": metric,
                    "labels": label_map,
                    "site": label_map.get("site"),
                    "device": label_map.get("device"),
                    "first_at": from_ms(first),
                    "last_at": from_ms(last),
                    "sample_count": count,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        dialect = session.get_bind().dialect.name
        if dialect in ("postgresql", "sqlite"):
            module = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"])
            stmt = module.insert(Series).on_conflict_do_nothing(index_elements=["fingerprint"])
            inserted = session.execute(stmt.returning(Series.fingerprint), rows)
            created = {int(p) for p in inserted.scalars()}
        else:
            session.execute(insert(Series), rows)
            created = set(missing)
        raced = [p for p in missing if p not in created]
        if raced:  # another writer created them between our select and insert
            stmt = select(Series).where(Series.fingerprint.in_(raced)).with_for_update()
            existing.update({s.fingerprint: s for s in session.scalars(stmt)})
    else:
        created = set()
    updates = []
    for p, series in existing.items():
        first, last, count = stats[p]
        updates.append(
            {
                "id": series.id,
                "first_at": min(series.first_at, from_ms(first)),
                "last_at": max(series.last_at, from_ms(last)),
                "sample_count": series.sample_count + count,
                "updated_at": now,
            }
        )
    if updates:
        session.execute(update(Series), updates)
        for series in existing.values():
            session.expire(series)
    return len(created)


def ingest_json(*, session: Session, payload: Any) -> IngestResult:
    return ingest_batch(session=session, batch=parsers.parse_json(payload), source="json")


def ingest_prometheus_text(
    *, session: Session, text: str, default_time: datetime | None = None
) -> IngestResult:
    """Prometheus exposition text; samples without a timestamp are stamped `default_time`."""
    default_ms = to_ms(default_time) if default_time else None
    batch = parsers.parse_prometheus_text(text, default_ms)
    return ingest_batch(session=session, batch=batch, source="prometheus")


def ingest_file(*, session: Session, path: str | Path, fmt: str | None = None) -> IngestResult:
    """A CSV, Parquet, JSON or Prometheus text file (format from `fmt` or the extension)."""
    batch = parsers.read_file(path, fmt)
    return ingest_batch(session=session, batch=batch, source=f"file:{Path(path).name}")


def pull_from_prometheus(
    *,
    session: Session,
    url: str,
    match: str,
    start: Any,
    end: Any,
    step: Any = "60s",
    progress: Callable[[int, int], None] | None = None,
    transport: Any = None,
) -> IngestResult:
    """Copy a range of a Prometheus-compatible server's series into Popcorn, all or nothing."""
    start_dt, end_dt = parse_time(start, "start"), parse_time(end, "end")
    step_s = parse_duration(step, "step")
    if end_dt <= start_dt:
        raise InvalidInput("end: must be after start", details={"start": str(start_dt)})
    total_chunks = math.ceil((end_dt - start_dt).total_seconds() / (step_s * 10_000)) or 1
    staged = _Staged()
    pulled = parsers.pull_prometheus(
        url, match, start_dt.timestamp(), end_dt.timestamp(), step_s, transport=transport
    )
    # Files are written chunk by chunk with no database lock held; the series table is
    # updated once at the end, so the whole pull commits or vanishes as one.
    for done, batch in enumerate(pulled, start=1):
        staged.add(session, batch)
        if progress:
            progress(done, total_chunks)
    if staged.samples == 0:
        raise NotFound(
            f"no samples for {match} on {url} in that window",
            details={"match": match, "start": str(start_dt), "end": str(end_dt)},
        )
    return staged.commit(session, f"prometheus:{url}")


# --------------------------------------------------------------------------- series


def _as_selector(selector: str | Selector) -> Selector:
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
    sel = _as_selector(selector) if selector is not None else None
    stmt = select(Series)
    if sel is not None:
        if sel.metric is not None:
            stmt = stmt.where(Series.metric == sel.metric)
        eq = sel.equalities()
        for label in SCOPE_LABELS:
            if eq.get(label):
                stmt = stmt.where(getattr(Series, label) == eq[label])
    wanted = _scope_values(scope)
    if wanted and sel is None and set(wanted) <= set(SCOPE_LABELS):
        from sqlalchemy import or_

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


def _scope_values(scope: dict[str, Any] | None) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for key, value in (scope or {}).items():
        if not parsers.LABEL_RE.match(str(key)):
            raise InvalidInput(f"scope: {key!r} is not a label name", details={"scope": key})
        values = value if isinstance(value, list | tuple | set) else [value]
        out[str(key)] = {str(v) for v in values}
    return out


def _in_scope(labels: dict[str, str], wanted: dict[str, set[str]]) -> bool:
    return any(labels.get(k) in v for k, v in wanted.items())


def _proximity(labels: dict[str, str], wanted: dict[str, set[str]]) -> float:
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


# --------------------------------------------------------------------------- queries


@dataclass
class QueryResult:
    start: datetime
    end: datetime
    step: float | None
    agg: str
    series: list[Series]
    timestamps: list[FloatArray]  # seconds, per series (shared grid when resampled)
    values: list[FloatArray]

    def as_dict(self) -> dict[str, Any]:
        out = []
        for s, ts, vals in zip(self.series, self.timestamps, self.values, strict=True):
            out.append(
                {
                    "id": s.id,
                    "name": series_name(s),
                    "metric": s.metric,
                    "labels": dict(s.labels or {}),
                    "timestamps": [_num(t) for t in ts.tolist()],
                    "values": [None if v != v else v for v in vals.tolist()],
                }
            )
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "step": self.step,
            "agg": self.agg,
            "series": out,
        }


def _num(t: float) -> float | int:
    return int(t) if t == int(t) else t


def resample(
    ts_ms: IntArray, values: FloatArray, start_ms: int, step_ms: int, n: int, agg: str
) -> FloatArray:
    """Aggregate sorted samples into `n` cells `[start + k*step, start + (k+1)*step)`; empty
    cells are NaN."""
    out = np.full(n, np.nan)
    if ts_ms.size == 0:
        return out
    cell = (ts_ms - start_ms) // step_ms
    ok = (cell >= 0) & (cell < n)
    cell, vals = cell[ok], values[ok]
    if cell.size == 0:
        return out
    firsts = np.r_[0, np.flatnonzero(np.diff(cell)) + 1]
    cells = cell[firsts]
    if agg == "last":
        out[cells] = vals[np.r_[firsts[1:] - 1, cell.size - 1]]
    elif agg == "max":
        out[cells] = np.maximum.reduceat(vals, firsts)
    elif agg == "min":
        out[cells] = np.minimum.reduceat(vals, firsts)
    else:
        sums = np.add.reduceat(vals, firsts)
        counts = np.diff(np.r_[firsts, cell.size])
        out[cells] = {"sum": sums, "count": counts.astype(np.float64)}.get(agg, sums / counts)
    return out


def _window(start: Any, end: Any) -> tuple[datetime, datetime]:
    start_dt, end_dt = parse_time(start, "start"), parse_time(end, "end")
    if end_dt <= start_dt:
        raise InvalidInput(
            "end: must be after start", details={"start": str(start_dt), "end": str(end_dt)}
        )
    return start_dt, end_dt


def query(
    *,
    session: Session,
    selector: str | Selector,
    start: Any,
    end: Any,
    step: Any = None,
    agg: str = "mean",
    max_series: int = MAX_QUERY_SERIES,
) -> QueryResult:
    """Samples of every matching series in `[start, end)`, raw or resampled to `step`.

    Resampled series share one grid starting at `start`; cells without samples are NaN
    (gaps stay visible). No matching series, or no sample in the window, is a NotFound.
    """
    if agg not in AGGREGATIONS:
        raise InvalidInput(f"agg: {agg!r} is not one of {', '.join(AGGREGATIONS)}")
    sel = _as_selector(selector)
    start_dt, end_dt = _window(start, end)
    step_s = parse_duration(step, "step") if step not in (None, "") else None
    start_ms, end_ms = to_ms(start_dt), to_ms(end_dt)
    n = 0
    if step_s is not None:
        n = math.ceil((end_ms - start_ms) / (step_s * 1000))
        if n > MAX_QUERY_POINTS:
            raise InvalidInput(
                f"step: {n} points per series is more than {MAX_QUERY_POINTS}; use a larger step",
                details={"points": n},
            )
    series = find_series(session=session, selector=sel, limit=max_series)
    if not series:
        raise NotFound(f"no series match {sel}", details={"selector": str(sel)})
    if len(series) > max_series:
        raise InvalidInput(
            f"selector {sel} matches more than {max_series} series; narrow it",
            details={"selector": str(sel), "max_series": max_series},
        )
    samples = store.read([s.fingerprint for s in series], start_ms, end_ms)
    if samples.ts.size == 0:
        raise NotFound(
            f"no samples for {sel} between {start_dt.isoformat()} and {end_dt.isoformat()}",
            details={
                "selector": str(sel),
                "start": start_dt.isoformat(),
                "end": end_dt.isoformat(),
            },
        )
    per = samples.split()
    empty = (np.empty(0, np.int64), np.empty(0))
    timestamps: list[FloatArray] = []
    values: list[FloatArray] = []
    if step_s is not None:
        grid: FloatArray = np.asarray((start_ms + np.arange(n) * step_s * 1000) / 1000.0)
    for s in series:
        ts, vals = per.get(s.fingerprint, empty)
        if step_s is None:
            timestamps.append(np.asarray(ts / 1000.0, dtype=np.float64))
            values.append(vals)
        else:
            timestamps.append(grid)
            values.append(resample(ts, vals, start_ms, int(step_s * 1000), n, agg))
    return QueryResult(start_dt, end_dt, step_s, agg, series, timestamps, values)


def load_block(
    series: Sequence[Series], start_ms: int, step_ms: int, n: int, agg: str = "mean"
) -> FloatArray:
    """Series resampled onto one grid: rows in the order given, NaN where no sample fell."""
    block = np.full((len(series), n), np.nan)
    if not series or n <= 0:
        return block
    samples = store.read([s.fingerprint for s in series], start_ms, start_ms + n * step_ms)
    per = samples.split()
    for row, s in enumerate(series):
        found = per.get(s.fingerprint)
        if found is not None:
            block[row] = resample(found[0], found[1], start_ms, step_ms, n, agg)
    return block


# --------------------------------------------------------------------------- retention


def _setting(session: Session, name: str, default: Any) -> Any:
    row = session.get(Setting, name)
    return default if row is None else row.value


def get_settings_view(*, session: Session) -> dict[str, Any]:
    return {"retention_days": int(_setting(session, "retention_days", DEFAULT_RETENTION_DAYS))}


def set_retention(*, session: Session, days: int) -> dict[str, Any]:
    """Keep samples for `days` days; older day partitions go at the next retention run."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise InvalidInput("retention_days: must be a whole number from 1 to 3650")
    before = get_settings_view(session=session)
    row = session.get(Setting, "retention_days")
    if row is None:
        session.add(Setting(name="retention_days", value=days, updated_at=utcnow()))
    else:
        row.value = days
        row.updated_at = utcnow()
    session.flush()
    after = get_settings_view(session=session)
    record_change(session, "update", "signals_settings", "retention", before=before, after=after)
    ensure_retention_schedule(session=session)
    return after


def ensure_retention_schedule(*, session: Session) -> None:
    """The hourly `signals.retention` job exists once anything is stored or retention is set."""
    if session.scalar(select(jobs.Schedule.id).where(jobs.Schedule.name == RETENTION_SCHEDULE)):
        return
    jobs.create_schedule(
        session=session,
        name=RETENTION_SCHEDULE,
        task="signals.retention",
        interval_seconds=3600,
        queue="low",
    )


def apply_retention(*, session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Delete day partitions older than the retention, fix the series they touched, compact.

    Series left without samples are removed; the others get their first time and sample
    count from what remains.
    """
    days = int(_setting(session, "retention_days", DEFAULT_RETENTION_DAYS))
    cutoff = store.cutoff_day(days, now)
    dropped, removed = store.drop_days_before(cutoff)
    cutoff_dt = datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC)
    deleted_series = 0
    if removed:
        touched = list(
            session.scalars(
                select(Series).where(Series.fingerprint.in_(list(removed))).with_for_update()
            )
        )
        gone = [s for s in touched if s.last_at < cutoff_dt]
        keep = [s for s in touched if s.last_at >= cutoff_dt]
        if gone:
            session.execute(delete(Series).where(Series.id.in_([s.id for s in gone])))
            deleted_series = len(gone)
        firsts = store.first_timestamps(s.fingerprint for s in keep)
        for s in keep:
            s.sample_count = max(0, s.sample_count - removed.get(s.fingerprint, 0))
            if s.fingerprint in firsts:
                s.first_at = from_ms(firsts[s.fingerprint])
            s.updated_at = utcnow()
    compacted = compact(session=session)
    summary = {
        "retention_days": days,
        "cutoff": cutoff.isoformat(),
        "dropped_days": [d.isoformat() for d in dropped],
        "samples_removed": int(sum(removed.values())),
        "series_removed": deleted_series,
        "compacted_days": compacted["days"],
    }
    if dropped:
        record_change(session, "delete", "signals_partitions", cutoff.isoformat(), after=summary)
    return summary


def compact(
    *, session: Session, grace_seconds: float = store.COMPACT_GRACE_SECONDS
) -> dict[str, Any]:
    """Merge each day's settled files into one; drop duplicate samples and fix counts."""
    days = 0
    duplicates: dict[int, int] = {}
    for _day, path in store.partitions():
        if len(store._files(path)) < 2:
            continue
        removed = store.compact_day(path, grace_seconds)
        days += 1
        for s, n in removed.items():
            duplicates[s] = duplicates.get(s, 0) + n
    for fp, n in duplicates.items():
        session.execute(
            update(Series)
            .where(Series.fingerprint == fp)
            .values(sample_count=func.max(Series.sample_count - n, 0))
            if session.get_bind().dialect.name == "sqlite"
            else update(Series)
            .where(Series.fingerprint == fp)
            .values(sample_count=func.greatest(Series.sample_count - n, 0))
        )
    return {"days": days, "duplicates_removed": int(sum(duplicates.values()))}


def storage_stats(*, session: Session) -> dict[str, Any]:
    parts = store.partitions()
    return {
        "series": int(session.scalar(select(func.count(Series.id))) or 0),
        "samples": int(
            session.scalar(select(func.coalesce(func.sum(Series.sample_count), 0))) or 0
        ),
        "bytes": store.bytes_used(),
        "partitions": len(parts),
        "oldest_day": parts[0][0].isoformat() if parts else None,
        "newest_day": parts[-1][0].isoformat() if parts else None,
        **get_settings_view(session=session),
    }


# --------------------------------------------------------------------------- analysis

INLINE_LIMIT = 500
DEFAULT_CHUNK_SIZE = 500
MAX_ANALYSIS_SIGNALS = 100_000
HISTORY_OFFSETS_S = (86_400, 7 * 86_400)
TOP_IN_EVENT = 5


def analyze_alert(
    *,
    session: Session,
    alert_time: Any,
    trigger: int | str | None = None,
    selector: str | None = None,
    scope: dict[str, Any] | None = None,
    window_minutes: int = 120,
    after_minutes: int = 15,
    step: Any = None,
    options: dict[str, Any] | None = None,
    inline: bool | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Analysis:
    """Rank the signals around an alert: which changed just before it, and together.

    Candidates are the series matching `selector`, or else those whose labels carry one of
    `scope`'s values (`{"site": "ams1", "device": ["r1"]}`); with both, the scope weighs
    each candidate by proximity. `trigger` (a series id or a selector for one series) is the
    alerting signal. The window is `window_minutes` before the alert to `after_minutes`
    after it, on a grid of `step` (default one minute, coarser for long windows); the same
    window one day and one week earlier removes daily and weekly cycles where stored.

    `inline=None` analyses up to INLINE_LIMIT signals now and larger sets as one rq job per
    `chunk_size` signals plus a merge job; `True` always analyses now, `False` always uses
    jobs. The returned Analysis is `finished` (inline) or `queued`.
    """
    alert_dt = parse_time(alert_time, "alert_time")
    if not 5 <= int(window_minutes) <= 14 * 1440:
        raise InvalidInput("window_minutes: must be between 5 and 20160 (two weeks)")
    if not 0 <= int(after_minutes) <= 1440:
        raise InvalidInput("after_minutes: must be between 0 and 1440")
    if not 10 <= int(chunk_size) <= 50_000:
        raise InvalidInput("chunk_size: must be between 10 and 50000")
    total_s = (int(window_minutes) + int(after_minutes)) * 60
    step_s = (
        int(parse_duration(step, "step"))
        if step not in (None, "")
        else max(60, math.ceil(total_s / 1440 / 60) * 60)
    )
    if step_s < 1 or total_s / step_s > 20_000:
        raise InvalidInput("step: the window would have more than 20000 points; use a larger step")
    if total_s / step_s < 30:
        raise InvalidInput("step: the window needs at least 30 points; use a smaller step")
    step_ms = step_s * 1000
    alert_ms = to_ms(alert_dt)
    start_ms = (alert_ms - int(window_minutes) * 60_000) // step_ms * step_ms
    n = math.ceil((alert_ms + int(after_minutes) * 60_000 - start_ms) / step_ms)
    end_ms = start_ms + n * step_ms
    opts = _options(options)

    trigger_series = _resolve_trigger(session, trigger) if trigger not in (None, "") else None
    candidates = find_series(session=session, selector=selector, scope=scope)
    if trigger_series is not None:
        candidates = [s for s in candidates if s.id != trigger_series.id]
    start_dt, end_dt = from_ms(start_ms), from_ms(end_ms)
    with_data = [s for s in candidates if s.last_at >= start_dt and s.first_at < end_dt]
    if not with_data:
        raise NotFound(
            f"no candidate signal has samples between {start_dt.isoformat()} and "
            f"{end_dt.isoformat()} ({len(candidates)} matched the selector/scope)",
            details={"candidates": len(candidates), "start": start_dt.isoformat()},
        )
    if len(with_data) > MAX_ANALYSIS_SIGNALS:
        raise InvalidInput(f"{len(with_data)} candidate signals; at most {MAX_ANALYSIS_SIGNALS}")
    if trigger_series is not None and not (
        trigger_series.last_at >= start_dt and trigger_series.first_at < end_dt
    ):
        raise NotFound(f"the trigger {series_name(trigger_series)} has no samples in the window")
    history = [
        off * 1000
        for off in HISTORY_OFFSETS_S
        if any(s.first_at <= from_ms(start_ms - off * 1000) for s in with_data[:5000])
    ]
    params = {
        "series_ids": [s.id for s in with_data],
        "trigger_id": trigger_series.id if trigger_series else None,
        "alert_s": alert_ms // 1000,
        "start_ms": start_ms,
        "step_ms": step_ms,
        "n": n,
        "history_offsets_ms": history,
        "options": opts.to_dict(),
        "proximity_scope": {k: sorted(v) for k, v in _scope_values(scope).items()}
        if scope and selector
        else None,
        "candidates_without_data": len(candidates) - len(with_data),
    }
    analysis = Analysis(
        status="queued",
        alert_time=alert_dt,
        trigger=str(trigger) if trigger not in (None, "") else None,
        selector=selector,
        scope=dict(scope or {}),
        window_minutes=int(window_minutes),
        step_seconds=step_s,
        params=params,
        signal_count=len(with_data),
        created_by=_actor(),
        created_at=utcnow(),
    )
    session.add(analysis)
    session.flush()
    record_change(session, "create", "signals_analysis", analysis.id, after=_brief(analysis))
    run_now = inline if inline is not None else len(with_data) <= INLINE_LIMIT
    if run_now:
        result = compute_rows(session=session, analysis=analysis, lo=0, hi=len(with_data))
        analysis.chunks_total = analysis.chunks_done = 1
        _finish(session, analysis, result)
        return analysis
    ids = params["series_ids"]
    for index, lo in enumerate(range(0, len(ids), int(chunk_size))):
        chunk = AnalysisChunk(
            analysis_id=analysis.id, index=index, bounds=[lo, min(lo + int(chunk_size), len(ids))]
        )
        session.add(chunk)
        session.flush()
        job = jobs.enqueue(
            session,
            "signals.analysis_chunk",
            arguments={"analysis_id": analysis.id, "index": index},
        )
        chunk.job_id = job.id
        analysis.chunks_total += 1
    return analysis


def _actor() -> str:
    from popcorn.context import current_actor

    return current_actor().name


def _options(options: dict[str, Any] | None) -> Any:
    from popcorn.signals.rank import AnalysisOptions

    try:
        return AnalysisOptions.from_dict(options)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"options: {exc}", details={"options": options}) from None


def _resolve_trigger(session: Session, trigger: int | str) -> Series:
    if isinstance(trigger, int) or str(trigger).strip().isdigit():
        return get_series(session=session, series_id=int(trigger))
    found = find_series(session=session, selector=str(trigger), limit=1)
    if not found:
        raise NotFound(f"trigger: no series match {trigger}", details={"trigger": trigger})
    if len(found) > 1:
        raise InvalidInput(
            f"trigger: {trigger} matches more than one series; name exactly one",
            details={"trigger": trigger},
        )
    return found[0]


def _brief(analysis: Analysis) -> dict[str, Any]:
    return {
        "status": analysis.status,
        "alert_time": analysis.alert_time.isoformat(),
        "trigger": analysis.trigger,
        "selector": analysis.selector,
        "scope": analysis.scope,
        "signal_count": analysis.signal_count,
    }


def compute_rows(*, session: Session, analysis: Analysis, lo: int, hi: int) -> Any:
    """Analyse candidates `lo:hi` of an analysis (one chunk, or all of them inline).

    Needs only reads; tasks call it in a read-only session so that chunks run side by side.
    """
    from popcorn.signals.rank import AnalysisError, analyze_block

    p = analysis.params
    ids: list[int] = p["series_ids"][lo:hi]
    rows = {s.id: s for s in session.scalars(select(Series).where(Series.id.in_(ids)))}
    series = [rows[i] for i in ids if i in rows]
    start_ms, step_ms, n = int(p["start_ms"]), int(p["step_ms"]), int(p["n"])
    block = load_block(series, start_ms, step_ms, n)
    history = None
    if p["history_offsets_ms"]:
        history = np.stack(
            [load_block(series, start_ms - off, step_ms, n) for off in p["history_offsets_ms"]]
        )
    trigger = None
    trigger_name = None
    if p["trigger_id"] is not None:
        trig_series = get_series(session=session, series_id=int(p["trigger_id"]))
        trigger = load_block([trig_series], start_ms, step_ms, n)[0]
        trigger_name = series_name(trig_series)
        if not np.isfinite(trigger).any():
            raise InvalidInput(f"the trigger {trigger_name} has no samples in the window")
    proximity = None
    if p.get("proximity_scope"):
        wanted = {k: set(v) for k, v in p["proximity_scope"].items()}
        proximity = np.array([_proximity(s.labels or {}, wanted) for s in series])
    grid_s = (start_ms + np.arange(n, dtype=np.int64) * step_ms) // 1000
    try:
        return analyze_block(
            grid_s,
            block,
            int(p["alert_s"]),
            trigger=trigger,
            names=[series_name(s) for s in series],
            options=p["options"],
            proximity=proximity,
            history=history,
            index_offset=lo,
            trigger_name=trigger_name,
        )
    except AnalysisError as exc:
        raise InvalidInput(f"analysis: {exc}") from None


def _result_dict(analysis: Analysis, result: Any) -> dict[str, Any]:
    """The ranked findings worth reading, each with its series id, plus clusters and counts."""
    ids: list[int] = analysis.params["series_ids"]
    data = dict(result.to_dict(include_unchanged=False))
    for finding in data["findings"]:
        finding["series_id"] = ids[finding["index"]]
    for cluster in data["clusters"]:
        cluster["member_series"] = [ids[i] for i in cluster["members"]]
        cluster["representative_series"] = ids[cluster["representative"]]
    return data


def _finish(session: Session, analysis: Analysis, result: Any) -> None:
    before = _brief(analysis)
    analysis.result = _result_dict(analysis, result)
    analysis.status = "finished"
    analysis.partial = None
    analysis.finished_at = utcnow()
    record_change(
        session, "update", "signals_analysis", analysis.id, before=before, after=_brief(analysis)
    )
    top = [
        {
            k: f.get(k)
            for k in ("series_id", "name", "verdict", "score", "change_time", "explanation")
        }
        for f in analysis.result["findings"][:TOP_IN_EVENT]
    ]
    emit(
        session,
        "signals.analysis.completed",
        "signals_analysis",
        analysis.id,
        {
            "analysis_id": analysis.id,
            "alert_time": analysis.alert_time.isoformat(),
            "signal_count": analysis.signal_count,
            "counts": analysis.result.get("counts", {}),
            "top": top,
            "clusters": [
                {k: c[k] for k in ("id", "member_series", "representative_series", "explanation")}
                for c in analysis.result["clusters"][:3]
            ],
        },
    )


def chunk_bounds(*, session: Session, analysis_id: int, index: int) -> tuple[Analysis, int, int]:
    """The analysis and candidate range of one chunk (NotFound if either is gone)."""
    analysis = get_analysis(session=session, analysis_id=analysis_id)
    chunk = session.scalar(
        select(AnalysisChunk).where(
            AnalysisChunk.analysis_id == analysis_id, AnalysisChunk.index == index
        )
    )
    if chunk is None:
        raise NotFound(f"analysis {analysis_id} has no chunk {index}")
    lo, hi = chunk.bounds
    return analysis, int(lo), int(hi)


def _chunk_payload(result: Any) -> dict[str, Any]:
    """What a chunk keeps: its interesting findings and its verdict counts."""
    data = dict(result.to_dict(include_unchanged=False))
    data["counts"] = dict(result.counts)
    return data


def save_chunk(*, session: Session, analysis_id: int, index: int, result: Any) -> dict[str, Any]:
    """Record one chunk's findings; the last chunk in enqueues the merge job.

    Idempotent: a chunk re-run by a retry counts once.
    """
    analysis = session.get(Analysis, analysis_id, with_for_update=True)
    if analysis is None or analysis.status in ("finished", "failed"):
        return {"analysis_id": analysis_id, "status": analysis.status if analysis else "gone"}
    chunk = session.scalar(
        select(AnalysisChunk)
        .where(AnalysisChunk.analysis_id == analysis_id, AnalysisChunk.index == index)
        .with_for_update()
    )
    if chunk is None:
        raise NotFound(f"analysis {analysis_id} has no chunk {index}")
    if chunk.status != "done":
        chunk.status = "done"
        chunk.result = _chunk_payload(result)
        chunk.finished_at = utcnow()
        analysis.chunks_done += 1
    analysis.status = "running"
    done = list(
        session.scalars(
            select(AnalysisChunk.result).where(
                AnalysisChunk.analysis_id == analysis_id, AnalysisChunk.status == "done"
            )
        )
    )
    merged = _merge_parts(done)
    analysis.partial = {
        "chunks_done": analysis.chunks_done,
        "chunks_total": analysis.chunks_total,
        "findings": _result_dict(analysis, merged)["findings"][:10],
    }
    if analysis.chunks_done >= analysis.chunks_total and analysis.job_id is None:
        job = jobs.enqueue(
            session, "signals.analysis_merge", arguments={"analysis_id": analysis_id}
        )
        analysis.job_id = job.id
    return {
        "analysis_id": analysis_id,
        "chunk": index,
        "chunks_done": analysis.chunks_done,
        "chunks_total": analysis.chunks_total,
        "findings": len(merged.findings),
    }


def _merge_parts(parts: Sequence[dict[str, Any]]) -> Any:
    from popcorn.signals.rank import merge_results

    merged = merge_results([dict(p) for p in parts])
    counts: dict[str, int] = {}
    for part in parts:
        for verdict, count in (part.get("counts") or {}).items():
            counts[verdict] = counts.get(verdict, 0) + int(count)
    merged.counts = counts
    return merged


def merge_analysis(*, session: Session, analysis_id: int) -> Analysis:
    """Merge every chunk of a jobs-run analysis into its final ranking."""
    analysis = session.get(Analysis, analysis_id, with_for_update=True)
    if analysis is None:
        raise NotFound(f"no analysis {analysis_id}", details={"id": analysis_id})
    if analysis.status in ("finished", "failed"):
        return analysis
    parts = list(
        session.scalars(
            select(AnalysisChunk)
            .where(AnalysisChunk.analysis_id == analysis_id)
            .order_by(AnalysisChunk.index)
        )
    )
    missing = [c.index for c in parts if c.status != "done"]
    if missing:
        raise Conflict(f"analysis {analysis_id}: chunks {missing} are not done")
    _finish(session, analysis, _merge_parts([c.result or {} for c in parts]))
    return analysis


def fail_analysis(*, session: Session, analysis_id: int, error: str) -> None:
    analysis = session.get(Analysis, analysis_id, with_for_update=True)
    if analysis is None or analysis.status in ("finished", "failed"):
        return
    before = _brief(analysis)
    analysis.status = "failed"
    analysis.error = error[:4000]
    analysis.finished_at = utcnow()
    record_change(
        session, "update", "signals_analysis", analysis.id, before=before, after=_brief(analysis)
    )


def get_analysis(*, session: Session, analysis_id: int) -> Analysis:
    analysis = session.get(Analysis, analysis_id)
    if analysis is None:
        raise NotFound(f"no analysis {analysis_id}", details={"id": analysis_id})
    return analysis


def job_failure(*, session: Session, analysis: Analysis) -> str | None:
    """Why a queued or running analysis can no longer finish (a chunk or merge job failed)."""
    if analysis.status not in ("queued", "running"):
        return None
    job_ids = list(
        session.scalars(
            select(AnalysisChunk.job_id).where(AnalysisChunk.analysis_id == analysis.id)
        )
    )
    if analysis.job_id:
        job_ids.append(analysis.job_id)
    failed = session.scalar(
        select(jobs.JobRecord).where(
            jobs.JobRecord.id.in_([j for j in job_ids if j]),
            jobs.JobRecord.status.in_(["failed", "canceled"]),
        )
    )
    if failed is None:
        return None
    reason = failed.error.splitlines()[0] if failed.error else "no error recorded"
    return f"job {failed.id} ({failed.task}) {failed.status}: {reason}"


def list_analyses(*, session: Session, params: ListParams) -> PageResult:
    allowed = {
        "status": Analysis.status,
        "alert_time": Analysis.alert_time,
        "created_at": Analysis.created_at,
    }
    stmt = select(Analysis).where(*filter_clauses(params.filters, allowed))
    return paginate(session, stmt, params, key=Analysis.id)


def analysis_dict(analysis: Analysis, *, full: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": analysis.id,
        "status": analysis.status,
        "alert_time": analysis.alert_time.isoformat(),
        "trigger": analysis.trigger,
        "selector": analysis.selector,
        "scope": analysis.scope,
        "window_minutes": analysis.window_minutes,
        "step_seconds": analysis.step_seconds,
        "signal_count": analysis.signal_count,
        "chunks_total": analysis.chunks_total,
        "chunks_done": analysis.chunks_done,
        "error": analysis.error,
        "created_by": analysis.created_by,
        "created_at": analysis.created_at.isoformat(),
        "finished_at": analysis.finished_at.isoformat() if analysis.finished_at else None,
    }
    if full:
        out["partial"] = analysis.partial
        out["result"] = analysis.result
    return out


def finding_for(analysis: Analysis, series_id: int) -> dict[str, Any] | None:
    for finding in (analysis.result or {}).get("findings", []):
        if finding.get("series_id") == series_id:
            return dict(finding)
    return None


def analysis_series(
    *, session: Session, analysis: Analysis, series_id: int
) -> tuple[Series, FloatArray, FloatArray, dict[str, Any] | None]:
    """One candidate's values on the analysis grid, and its finding if it was ranked."""
    p = analysis.params
    if series_id not in p["series_ids"] and series_id != p.get("trigger_id"):
        raise NotFound(
            f"series {series_id} is not part of analysis {analysis.id}",
            details={"analysis": analysis.id, "series": series_id},
        )
    series = get_series(session=session, series_id=series_id)
    start_ms, step_ms, n = int(p["start_ms"]), int(p["step_ms"]), int(p["n"])
    values = load_block([series], start_ms, step_ms, n)[0]
    grid = (start_ms + np.arange(n) * step_ms) / 1000.0
    return series, grid, values, finding_for(analysis, series_id)
