"""Signals: ingest here, and every other behaviour of the domain under one name.

Every function takes `session=` and is what the API, the CLI and the jobs call. Samples are
Parquet objects in the object store (store.py) while the series' metadata lives in the
`signals_series` table; an ingest writes both in one all-or-nothing step. The other sections
live beside this module and are re-exported here: series lookup and listing (catalog.py),
range queries (series.py), retention (retention.py) and alert analysis (analysis.py).
Other domains use `signals.api` only.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.db import dialect_insert, session_scope, utcnow
from popcorn.errors import InvalidInput, NotFound
from popcorn.signals import ingest as parsers
from popcorn.signals import store
from popcorn.signals.analysis import (
    INLINE_LIMIT,
    analysis_dict,
    analysis_series,
    analyze_alert,
    chunk_bounds,
    compute_rows,
    fail_analysis,
    get_analysis,
    job_failure,
    list_analyses,
    merge_analysis,
    save_chunk,
)
from popcorn.signals.catalog import (
    AGGREGATIONS,
    find_series,
    from_ms,
    get_series,
    list_series,
    series_dict,
    series_name,
    to_ms,
)
from popcorn.signals.models import Series
from popcorn.signals.promql import (
    parse_duration,
    parse_time,
)
from popcorn.signals.retention import (
    DEFAULT_RETENTION_DAYS,
    RETENTION_SCHEDULE,
    apply_retention,
    compact,
    ensure_retention_schedule,
    get_settings_view,
    run_retention,
    run_retention_now,
    set_retention,
    storage_stats,
)
from popcorn.signals.series import QueryResult, query, resample

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_RETENTION_DAYS",
    "INLINE_LIMIT",
    "RETENTION_SCHEDULE",
    "IngestResult",
    "QueryResult",
    "analysis_dict",
    "analysis_series",
    "analyze_alert",
    "apply_retention",
    "chunk_bounds",
    "compact",
    "compute_rows",
    "ensure_retention_schedule",
    "fail_analysis",
    "find_series",
    "get_analysis",
    "get_series",
    "get_settings_view",
    "ingest_batch",
    "ingest_file",
    "ingest_json",
    "ingest_prometheus_text",
    "job_failure",
    "list_analyses",
    "list_series",
    "merge_analysis",
    "pull_from_prometheus",
    "query",
    "resample",
    "run_retention",
    "run_retention_now",
    "save_chunk",
    "series_dict",
    "series_name",
    "set_retention",
    "storage_stats",
]

# --------------------------------------------------------------------------- ingest


@dataclass
class IngestResult:
    samples: int
    series: int
    new_series: int
    files: int
    duplicates: int = 0
    skipped: int = 0
    replaced: int = 0
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
            "replaced": self.replaced,
            "files": self.files,
            "first_time": self.first_time.isoformat() if self.first_time else None,
            "last_time": self.last_time.isoformat() if self.last_time else None,
        }


@dataclass
class _Staged:
    """Samples written to (not yet committed) files, and what the series table must learn."""

    stats: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # first, last, count
    keys: dict[int, parsers.SeriesKey] = field(default_factory=dict)
    # series found in the table when `add` looked: the rest are created at commit
    seen: set[int] = field(default_factory=set)
    # samples counted as new: checked again under the series' row locks at commit
    fresh: list[tuple[parsers.IntArray, parsers.IntArray]] = field(default_factory=list)
    samples: int = 0
    duplicates: int = 0
    skipped: int = 0
    replaced: int = 0
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
        # read before writing: these samples replace them
        spans = _stored_spans(np.unique(sid).tolist())
        self.seen.update(spans)
        hit = _already_stored(session, sid, ts, spans, pending=self.stats)
        stored = _per_series(sid[hit])
        self.fresh.append((sid[~hit], ts[~hit]))
        self.files += store.write_sorted(session, sid, ts, values)
        cuts = np.flatnonzero(np.diff(sid)) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, sid.size], strict=True):
            p, first, last = int(sid[a]), int(ts[a]), int(ts[b - 1])
            count = int(b - a) - stored.get(p, 0)
            if p in self.stats:
                f0, l0, c0 = self.stats[p]
                first, last, count = min(f0, first), max(l0, last), c0 + count
            self.stats[p] = (first, last, count)
        for p, key in zip(prints.tolist(), batch.series, strict=True):
            self.keys.setdefault(p, key)
        self.samples += int(sid.size)
        self.duplicates += int(batch.samples - sid.size)
        self.replaced += sum(stored.values())

    def commit(self, session: Session, source: str, *, audit: bool = True) -> IngestResult:
        """Record the series (and, unless it is a stream, the audit entry) in the caller's
        transaction."""
        if self.samples == 0:
            raise InvalidInput(f"{source}: no samples to ingest", details={"source": source})
        batch_id = uuid.uuid4().hex[:16]
        existing, new = _lock_or_create(session, self.stats, self.keys, self.seen)
        self._recount(existing)
        _widen(session, existing, self.stats)
        result = IngestResult(
            samples=self.samples,
            series=len(self.stats),
            new_series=new,
            files=self.files,
            duplicates=self.duplicates,
            skipped=self.skipped,
            replaced=self.replaced,
            first_time=from_ms(min(v[0] for v in self.stats.values())),
            last_time=from_ms(max(v[1] for v in self.stats.values())),
            batch_id=batch_id,
        )
        if audit:
            record_change(
                session,
                "ingest",
                "signals_batch",
                batch_id,
                after={"source": source, **result.as_dict()},
            )
        if new:
            ensure_retention_schedule(session=session)
        store.order_at_commit(session)  # last: the caller commits next
        return result

    def _recount(self, rows: dict[int, Any]) -> None:
        """Under the series' row locks, drop from the counts what writers that committed
        since `add` looked have stored meanwhile (an HA pair sending the same samples).

        Every writer of a series holds its row lock until it commits, so what is committed
        now stays as it is until this transaction ends: a sample is new exactly when it is
        not there now. Only samples inside the locked row's span can be there, so a stream
        of new timestamps reads nothing here.
        """
        if not rows or not self.fresh:
            return
        sid = np.concatenate([f[0] for f in self.fresh])
        ts = np.concatenate([f[1] for f in self.fresh])
        spans = {p: (to_ms(r.first_at), to_ms(r.last_at)) for p, r in rows.items()}
        maybe = _within(sid, ts, spans)
        if not maybe.any():
            return
        sid, ts = sid[maybe], ts[maybe]
        found = store.read(np.unique(sid).tolist(), int(ts.min()), int(ts.max()) + 1)
        again = _per_series(sid[_hits(found, sid, ts)])
        for p, n in again.items():
            first, last, count = self.stats[p]
            self.stats[p] = (first, last, count - n)
        self.replaced += sum(again.values())


def _per_series(sid: parsers.IntArray) -> dict[int, int]:
    prints, counts = np.unique(sid, return_counts=True)
    return dict(zip(prints.tolist(), counts.tolist(), strict=True))


def _hits(
    found: store.Samples, sid: parsers.IntArray, ts: parsers.IntArray
) -> npt.NDArray[np.bool_]:
    """Which (sid, ts) pairs are among the samples `found`."""
    hit = np.isin(ts, found.ts)  # a cheap pre-filter on timestamps alone
    if hit.any():
        existing = set(zip(found.sid.tolist(), found.ts.tolist(), strict=True))
        candidates = np.flatnonzero(hit)
        pairs = zip(sid[candidates].tolist(), ts[candidates].tolist(), strict=True)
        hit[candidates] = [pair in existing for pair in pairs]
    return hit


def _already_stored(
    session: Session,
    sid: parsers.IntArray,
    ts: parsers.IntArray,
    stored: dict[int, tuple[int, int]],
    pending: dict[int, tuple[int, int, int]] | None = None,
) -> npt.NDArray[np.bool_]:
    """Which of these (sorted) samples have a timestamp already stored.

    A sample at a stored timestamp replaces the stored one (later writes win on read), so
    it must not count again: overlapping pulls keep `sample_count` true. Only samples
    within their series' stored [first_at, last_at] can be there, so the files are read
    for those alone: a stream of new samples (remote write, a scrape) reads none.
    `stored` holds the committed spans (`_stored_spans`), `pending` the spans this
    transaction already wrote (earlier chunks of a pull). What others commit after this
    look is checked again at commit (`_Staged._recount`).
    """
    hit = np.zeros(sid.size, np.bool_)
    if sid.size == 0:
        return hit
    spans = dict(stored)
    for fp, (first, last, _count) in (pending or {}).items():
        if fp in spans:
            spans[fp] = (min(spans[fp][0], first), max(spans[fp][1], last))
        else:
            spans[fp] = (first, last)
    maybe = _within(sid, ts, spans)
    if not maybe.any():
        return hit
    sid, ts = sid[maybe], ts[maybe]
    found = store.read(np.unique(sid).tolist(), int(ts.min()), int(ts.max()) + 1, session=session)
    hit[maybe] = _hits(found, sid, ts)
    return hit


def _stored_spans(prints: list[int]) -> dict[int, tuple[int, int]]:
    """The committed [first, last] span (ms) of those of these series the table has.

    Its own read-only session: the caller's would take SQLite's write lock this early and
    hold it while files are written (and a job's progress updates wait on it).
    """
    spans: dict[int, tuple[int, int]] = {}
    with session_scope(readonly=True) as reader:
        for lo in range(0, len(prints), 500):
            rows = reader.execute(
                select(Series.fingerprint, Series.first_at, Series.last_at).where(
                    Series.fingerprint.in_(prints[lo : lo + 500])
                )
            )
            spans.update((fp, (to_ms(first), to_ms(last))) for fp, first, last in rows)
    return spans


def _within(
    sid: parsers.IntArray, ts: parsers.IntArray, spans: dict[int, tuple[int, int]]
) -> npt.NDArray[np.bool_]:
    """Which samples fall inside their series' [first, last] span (none for unknown series)."""
    if not spans:
        return np.zeros(sid.size, np.bool_)
    prints = np.array(sorted(spans), np.int64)
    first = np.array([spans[p][0] for p in prints.tolist()], np.int64)
    last = np.array([spans[p][1] for p in prints.tolist()], np.int64)
    pos = np.minimum(np.searchsorted(prints, sid), prints.size - 1)
    return (prints[pos] == sid) & (ts >= first[pos]) & (ts <= last[pos])


def ingest_batch(
    *, session: Session, batch: parsers.Batch, source: str, audit: bool = True
) -> IngestResult:
    """Store a validated batch: samples to Parquet, series metadata to the database.

    Out-of-order samples are sorted; a series' repeated timestamp keeps the value given last.
    Nothing is visible to others until the session commits, and on rollback the files go.
    `audit=False` for streams (remote write every few seconds), which would otherwise add
    an audit record per request; their volume is counted in metrics instead.
    """
    staged = _Staged()
    staged.add(session, batch)
    return staged.commit(session, source, audit=audit)


def _lock_or_create(
    session: Session,
    stats: dict[int, tuple[int, int, int]],
    keys: dict[int, parsers.SeriesKey],
    seen: set[int],
) -> tuple[dict[int, Any], int]:
    """Create the missing series and lock the others; returns the locked rows by fingerprint
    and how many series this call created.

    Two passes, each in fingerprint order, so concurrent writers never wait for each other
    in a cycle (PostgreSQL would abort one as a deadlock). First the series `add` did not
    see are inserted, skipping those another writer made meanwhile (the insert waits for
    that writer's commit instead of failing). Then every series not created here is locked,
    those included. An insert waits only for another writer's uncommitted insert, and a
    writer inserts before it locks any row; a lock waits only for a committed row another
    writer locked, and locks are taken in one order: no cycle can form. Only a series that
    retention deleted after `add` looked is inserted late, in a second round.
    """
    prints = sorted(stats)
    created: set[int] = set()
    existing: dict[int, Any] = {}
    absent = [p for p in prints if p not in seen]
    while True:
        created |= _insert_series(session, absent, stats, keys)
        rest = [p for p in prints if p not in created and p not in existing]
        existing.update(_lock_series(session, rest))
        # a series retention deleted since `add` looked: create it again
        absent = [p for p in prints if p not in created and p not in existing]
        if not absent:
            return existing, len(created)


def _insert_series(
    session: Session,
    prints: list[int],
    stats: dict[int, tuple[int, int, int]],
    keys: dict[int, parsers.SeriesKey],
) -> set[int]:
    """Insert these (sorted) series, skipping those another writer has already inserted
    (committed, or once its transaction commits); returns those inserted here.

    Ids follow the order the batch named the series in (listings are in id order). On
    PostgreSQL the rows go in fingerprint order, with ids drawn beforehand; SQLite has one
    writer at a time, so there the batch's order is the insert order.
    """
    if not prints:
        return set()
    wanted = set(prints)
    in_batch = [p for p in keys if p in wanted]
    ids: dict[int, int] = {}
    if session.get_bind().dialect.name == "postgresql":
        drawn = session.scalars(_DRAW_IDS, {"n": len(in_batch)}).all()
        ids = dict(zip(in_batch, sorted(drawn), strict=True))
    else:
        prints = in_batch
    now = utcnow()
    # Core statements, not entities: a remote-write request touches a thousand series or
    # more, and ORM bookkeeping per row cost more than the SQL.
    rows = []
    for p in prints:
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
            | ({"id": ids[p]} if ids else {})
        )
    stmt = dialect_insert(session, Series).on_conflict_do_nothing(index_elements=["fingerprint"])
    inserted = session.execute(stmt.returning(Series.fingerprint), rows)
    return {int(p) for p in inserted.scalars()}


_DRAW_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('signals_series', 'id')) FROM generate_series(1, :n)"
)


def _widen(
    session: Session, existing: dict[int, Any], stats: dict[int, tuple[int, int, int]]
) -> None:
    """Widen the locked series by what this transaction adds."""
    now = utcnow()
    updates = []
    for p, row in existing.items():
        first, last, count = stats[p]
        updates.append(
            {
                "row_id": row.id,
                "first_at": min(row.first_at, from_ms(first)),
                "last_at": max(row.last_at, from_ms(last)),
                "sample_count": row.sample_count + count,
                "updated_at": now,
            }
        )
    if updates:
        stmt = update(Series).where(Series.id == bindparam("row_id"))
        session.connection().execute(stmt, updates)  # Core executemany: no ORM sync
        ids = {u["row_id"] for u in updates}
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Series) and obj.id in ids:
                session.expire(obj)  # loaded earlier by the caller: read the new values


def _lock_series(session: Session, prints: list[int]) -> dict[int, Any]:
    """The series rows of these (sorted) fingerprints, locked for update in that order."""
    rows: dict[int, Any] = {}
    for lo in range(0, len(prints), 500):
        stmt = (
            select(
                Series.id, Series.fingerprint, Series.first_at, Series.last_at, Series.sample_count
            )
            .where(Series.fingerprint.in_(prints[lo : lo + 500]))
            .order_by(Series.fingerprint)  # one order for every writer: no deadlock
            .with_for_update()
        )
        rows.update((row.fingerprint, row) for row in session.execute(stmt))
    return rows


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
    """Copy a range of a Prometheus-compatible server's series into Popcorn, all or nothing.

    The window is aligned to the step (start rounded up, end down to a multiple of it, as
    Grafana does), so pulls with a relative start (`now-5m`) land on one grid, and a pull
    that overlaps an earlier one replaces its samples instead of adding to them.
    """
    start_dt, end_dt = parse_time(start, "start"), parse_time(end, "end")
    step_s = parse_duration(step, "step")
    if end_dt <= start_dt:
        raise InvalidInput("end: must be after start", details={"start": str(start_dt)})
    first = math.ceil(start_dt.timestamp() / step_s) * step_s
    last = math.floor(end_dt.timestamp() / step_s) * step_s
    if last < first:
        raise InvalidInput(
            f"start, end: no multiple of the step ({step_s:g} s) between them",
            details={"start": str(start_dt), "end": str(end_dt), "step": step_s},
        )
    start_dt, end_dt = from_ms(round(first * 1000)), from_ms(round(last * 1000))
    total_chunks = math.ceil((end_dt - start_dt).total_seconds() / (step_s * 10_000)) or 1
    staged = _Staged()
    pulled = parsers.pull_prometheus(url, match, first, last, step_s, transport=transport)
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
