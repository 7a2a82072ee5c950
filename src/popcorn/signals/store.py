"""The sample store: Parquet objects in the platform's object store, one prefix per UTC day.

Samples are never rows in SQL. Each ingest batch writes one object per UTC day it touches
(`signals/samples/day=YYYY-MM-DD/part-<seq>-<id>.parquet` in `popcorn.storage`), holding three
columns (`sid`: the series' 64-bit fingerprint, `ts`: int64 milliseconds, `value`: float64)
sorted by series then time, in row groups whose statistics let a read skip the series it does
not want (reads go through pyarrow's filesystem for the store, local or S3, so they fetch only
the row groups they need). Objects are ordered by a write sequence; when two hold the same
series and timestamp, the later one wins (a re-ingested sample replaces the old one).

Which objects exist for readers is decided by the database, not by listing the store: every
object is recorded in `signals_sample_files` in the batch's own transaction, and readers read
only listed objects. So a batch becomes visible with its commit and never if it rolls back;
the objects of a rolled-back batch are deleted at once, and any a crash left behind are swept
by compaction. An object's place in write order is taken when its batch commits, under the
locks of the series it writes, so of two batches writing one sample the one that committed
last wins, and an object still to be listed always orders after every object already merged.

Compaction merges each run of consecutive small objects (a remote-write request is one) into
one, every two minutes, under a database lease per day so two machines never compact the same
day; an object past `SMALL_ROWS` is left as it is, so a busy day is not rewritten again and
again. Retention deletes whole days.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from sqlalchemy import delete, event, func, select
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.db import on_commit, session_scope, utcnow
from popcorn.signals.models import SampleFile
from popcorn.storage import get_store

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DAY_MS = 86_400_000
ROW_GROUP_ROWS = 131_072
COMPACT_GRACE_SECONDS = 60.0  # an object is merged once listed this long (see compact_day)
SMALL_ROWS = 1_000_000  # objects with fewer rows are merged with their small neighbours
ORPHAN_GRACE_SECONDS = 3600.0  # an object this old and unlisted belongs to no open batch
LEASE_SECONDS = 900.0
PREFIX = "signals/samples"
SCHEMA = pa.schema([("sid", pa.int64()), ("ts", pa.int64()), ("value", pa.float64())])
_STAGED = "signals_staged_objects"


def root() -> Path:
    """Where the sample objects are when the store is a local directory."""
    return Path(get_store().location) / PREFIX


def fingerprint(metric: str, labels: dict[str, str]) -> int:
    """A stable signed 64-bit hash of the metric name and sorted labels."""
    canonical = json.dumps([metric, sorted(labels.items())], separators=(",", ":"))
    digest = hashlib.blake2b(canonical.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def day_of(ts_ms: int) -> date:
    return datetime.fromtimestamp(ts_ms // DAY_MS * 86_400, UTC).date()


def _seq_of(key: str) -> int | None:
    """The write sequence in an object's name (nanoseconds since the epoch)."""
    try:
        return int(key.rsplit("/", 1)[-1].split("-")[1])
    except (IndexError, ValueError):
        return None


def _listed(session: Session, first: date, last: date, *, lock: bool = False) -> list[SampleFile]:
    """The objects listed for these days in `session`'s view, in write order; `lock` holds
    their rows until `session` ends (retention and compaction of one day wait for each other)."""
    query = (
        select(SampleFile)
        .where(SampleFile.day >= first, SampleFile.day <= last)
        .order_by(SampleFile.day, SampleFile.seq, SampleFile.key)
    )
    return list(session.scalars(query.with_for_update() if lock else query))


def _visible(first: date, last: date, session: Session | None) -> list[str]:
    """Keys a reader may read: what is committed, plus what `session` wrote so far.

    The committed list comes from a session of its own, so `session` sends no statement
    and takes no lock (on SQLite a writer's lock would stall the job's progress reports).
    """
    with session_scope(readonly=True) as fresh:
        found = {(f.day, f.seq, f.key) for f in _listed(fresh, first, last)}
    if session is not None:
        staged: list[SampleFile] = session.info.get(_STAGED, [])
        found |= {(f.day, f.seq, f.key) for f in staged if first <= f.day <= last}
    return [key for _day, _seq, key in sorted(found)]


def partitions(session: Session) -> list[date]:
    """The days that have samples, oldest first."""
    return list(session.scalars(select(SampleFile.day).distinct().order_by(SampleFile.day)))


def _put_table(day: date, table: pa.Table, seq: int | None = None) -> SampleFile:
    """Write one object (the store makes it whole or absent); the caller lists it."""
    seq = seq if seq is not None else time.time_ns()
    key = f"{PREFIX}/day={day.isoformat()}/part-{seq:020d}-{uuid.uuid4().hex[:12]}.parquet"
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        row_group_size=ROW_GROUP_ROWS,
        compression="zstd",
        compression_level=1,
        use_dictionary=["sid"],
        write_statistics=True,
    )
    data = sink.getvalue().to_pybytes()
    get_store().put(key, data)
    return SampleFile(
        day=day, seq=seq, key=key, rows=table.num_rows, bytes=len(data), created_at=utcnow()
    )


def write_sorted(session: Session, sid: IntArray, ts: IntArray, values: FloatArray) -> int:
    """Write samples sorted by (sid, ts); they are visible with `session`'s commit and their
    objects are deleted if it rolls back. Returns the number of objects (one per UTC day)."""
    if sid.size == 0:
        return 0
    days = ts // DAY_MS
    written: list[SampleFile] = []
    try:
        if days.min() == days.max():
            groups: Iterable[tuple[int, npt.NDArray[np.intp] | slice]] = [
                (int(days[0]), slice(None))
            ]
        else:
            order = np.argsort(days, kind="stable")
            sorted_days = days[order]
            cuts = np.flatnonzero(np.diff(sorted_days)) + 1
            groups = [(int(days[part[0]]), part) for part in np.split(order, cuts) if part.size]
        for day_number, index in groups:
            table = pa.table(
                {"sid": sid[index], "ts": ts[index], "value": values[index]}, schema=SCHEMA
            )
            day = datetime.fromtimestamp(day_number * 86_400, UTC).date()
            written.append(_put_table(day, table))
    except BaseException:
        _delete(f.key for f in written)
        raise
    _stage(session, written)
    return len(written)


def _stage(session: Session, files: list[SampleFile]) -> None:
    """List the objects in `session`: they are deleted again if it rolls back."""
    session.add_all(files)
    staged: list[SampleFile] = session.info.setdefault(_STAGED, [])
    staged.extend(files)
    on_commit(session, lambda: session.info.pop(_STAGED, None))


def order_at_commit(session: Session) -> None:
    """Place the objects `session` wrote after every object listed so far: called just before
    the batch commits, while it holds its series' row locks, so the batch that commits last
    wins and compaction (which merges only objects listed `COMPACT_GRACE_SECONDS` ago) never
    merges past an object still to be listed, however long ago it was written."""
    now = time.time_ns()
    for i, file in enumerate(session.info.get(_STAGED, [])):
        file.seq = now + i


@event.listens_for(Session, "after_rollback")
def _remove_rolled_back(session: Session) -> None:
    if session.in_nested_transaction():  # back to a savepoint: the transaction goes on
        return
    _delete(f.key for f in session.info.pop(_STAGED, []))


def _delete(keys: Iterable[str]) -> None:
    store = get_store()
    for key in keys:
        with contextlib.suppress(Exception):  # a leftover is swept later; never mask the cause
            store.delete(key)


def _read_table(key: str, **options: object) -> pa.Table:
    filesystem, base = get_store().arrow()
    return pq.read_table(f"{base}/{key}", filesystem=filesystem, schema=SCHEMA, **options)


@dataclass
class Samples:
    """Samples of several series sorted by (sid, ts), one value per timestamp."""

    sid: IntArray
    ts: IntArray
    value: FloatArray

    def split(self) -> dict[int, tuple[IntArray, FloatArray]]:
        """Per-series (timestamps, values) views."""
        if self.sid.size == 0:
            return {}
        cuts = np.flatnonzero(np.diff(self.sid)) + 1
        starts = np.r_[0, cuts]
        ends = np.r_[cuts, self.sid.size]
        return {
            int(self.sid[a]): (self.ts[a:b], self.value[a:b])
            for a, b in zip(starts, ends, strict=True)
        }


def dedupe_sorted(sid: IntArray, ts: IntArray, order_key: IntArray | None = None) -> IntArray:
    """Indices that sort by (sid, ts, order_key) keeping the last entry of each (sid, ts)."""
    keys = (ts, sid) if order_key is None else (order_key, ts, sid)
    order = np.lexsort(keys)
    s, t = sid[order], ts[order]
    if order.size < 2:
        return order
    last = np.r_[(s[1:] != s[:-1]) | (t[1:] != t[:-1]), True]
    return order[last]


def read(
    sids: Iterable[int], start_ms: int, end_ms: int, *, session: Session | None = None
) -> Samples:
    """Samples of the given series with start_ms <= ts < end_ms, later writes winning.

    Reads what is committed, or with `session` also what that transaction wrote.
    """
    wanted = sorted(set(sids))
    empty = Samples(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    if not wanted or end_ms <= start_ms:
        return empty
    first_day = day_of(start_ms)
    last_day = day_of(end_ms - 1)
    for attempt in range(5):
        try:
            keys = _visible(first_day, last_day, session)
            return _read_once(wanted, start_ms, end_ms, keys)
        except FileNotFoundError:
            if attempt == 4:
                raise
            time.sleep(0.05)  # compaction or retention replaced an object under us: list again
    return empty


def _read_once(wanted: list[int], start_ms: int, end_ms: int, keys: list[str]) -> Samples:
    empty = Samples(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    if not keys:
        return empty
    wanted_arr = pa.array(wanted, pa.int64())
    # The sid bounds let pyarrow skip row groups by their statistics (`isin` alone cannot), so
    # a chunk of an analysis reads only the blocks holding its series.
    flt = (
        (pc.field("sid") >= min(wanted, default=0))
        & (pc.field("sid") <= max(wanted, default=-1))
        & pc.field("sid").isin(wanted_arr)
        & (pc.field("ts") >= start_ms)
        & (pc.field("ts") < end_ms)
    )
    # One scan over every object, on pyarrow's threads: the objects a day holds before
    # compaction (one per remote-write request) are opened side by side, not one by one.
    filesystem, base = get_store().arrow()
    rank = {f"{base}/{key}": i for i, key in enumerate(keys)}
    objects = ds.dataset(list(rank), schema=SCHEMA, format="parquet", filesystem=filesystem)
    batches: list[pa.RecordBatch] = []
    ranks: list[IntArray] = []
    for tagged in objects.scanner(filter=flt).scan_batches():
        batch = tagged.record_batch
        if batch.num_rows:
            batches.append(batch)
            ranks.append(np.full(batch.num_rows, rank[tagged.fragment.path], np.int64))
    if not batches:
        return empty
    merged = pa.Table.from_batches(batches, schema=SCHEMA)
    sid = merged.column("sid").to_numpy()
    ts = merged.column("ts").to_numpy()
    value = merged.column("value").to_numpy()
    keep = dedupe_sorted(sid, ts, np.concatenate(ranks) if len(keys) > 1 else None)
    return Samples(sid[keep], ts[keep], value[keep])


def count_by_series(keys: Iterable[str]) -> dict[int, int]:
    """Samples per series in the given objects of one day, a timestamp written twice (not
    yet compacted) counted once, as ingest counted it."""
    tables = [_read_table(key, columns=["sid", "ts"]) for key in keys]
    if not tables:
        return {}
    merged = pa.concat_tables(tables)
    sid = merged.column("sid").to_numpy()
    keep = dedupe_sorted(sid, merged.column("ts").to_numpy())
    prints, counts = np.unique(sid[keep], return_counts=True)
    return dict(zip(prints.tolist(), counts.tolist(), strict=True))


def drop_days_before(session: Session, cutoff: date) -> tuple[list[date], dict[int, int]]:
    """Unlist every day older than `cutoff` in `session` (objects go once it commits);
    returns the days and the rows removed per series."""
    files = list(
        session.scalars(
            select(SampleFile)
            .where(SampleFile.day < cutoff)
            .order_by(SampleFile.day, SampleFile.seq)
            .with_for_update()
        )
    )
    if not files:
        return [], {}
    removed: dict[int, int] = {}
    for day in sorted({f.day for f in files}):
        for s, n in count_by_series(f.key for f in files if f.day == day).items():
            removed[s] = removed.get(s, 0) + n
    keys = [f.key for f in files]
    session.execute(delete(SampleFile).where(SampleFile.id.in_([f.id for f in files])))
    on_commit(session, lambda: _delete(keys))
    return sorted({f.day for f in files}), removed


def first_timestamps(session: Session, sids: Iterable[int]) -> dict[int, int]:
    """The oldest stored timestamp of each series, looking at the oldest days first."""
    todo = set(sids)
    found: dict[int, int] = {}
    for day in partitions(session):
        if not todo:
            break
        keys = [f.key for f in _listed(session, day, day)]
        flt = pc.field("sid").isin(pa.array(sorted(todo), pa.int64()))
        table = pa.concat_tables([_read_table(k, columns=["sid", "ts"], filters=flt) for k in keys])
        if table.num_rows == 0:
            continue
        grouped = table.group_by("sid").aggregate([("ts", "min")])
        for s, t in zip(
            grouped.column("sid").to_pylist(), grouped.column("ts_min").to_pylist(), strict=True
        ):
            found[s] = t
            todo.discard(s)
    return found


def days_to_compact() -> list[date]:
    """Days listing more than one small object."""
    with session_scope(readonly=True) as session:
        return list(
            session.scalars(
                select(SampleFile.day)
                .where(SampleFile.rows < SMALL_ROWS)
                .group_by(SampleFile.day)
                .having(func.count(SampleFile.id) > 1)
                .order_by(SampleFile.day)
            )
        )


@contextlib.contextmanager
def day_lease(day: date) -> Iterator[bool]:
    """Hold the database lease on one day's objects (False: another process holds it)."""
    name = f"signals.compact:{day.isoformat()}"
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    held = jobs.acquire_lease(name, holder, LEASE_SECONDS)
    try:
        yield held
    finally:
        if held:
            jobs.release_lease(name, holder)


def compact_day(day: date, grace_seconds: float = COMPACT_GRACE_SECONDS) -> dict[int, int] | None:
    """Merge each run of consecutive small settled objects of the day into one; returns
    duplicate rows removed per series, or None when another process is compacting the day.

    Only objects listed more than `grace_seconds` ago are merged, and a merged object takes
    the place of the last of its run, so the write order of every sample stays as it was.
    """
    with day_lease(day) as held:
        if not held:
            return None
        cutoff = time.time_ns() - int(grace_seconds * 1e9)
        with session_scope() as session:
            runs: list[list[SampleFile]] = [[]]
            for file in _listed(session, day, day, lock=True):
                if file.seq > cutoff:
                    break
                if file.rows < SMALL_ROWS:
                    runs[-1].append(file)
                elif runs[-1]:
                    runs.append([])
            runs = [run for run in runs if len(run) > 1]
            removed: dict[int, int] = {}
            old: list[str] = []
            for run in runs:
                for sid, n in _merge(session, day, run).items():
                    removed[sid] = removed.get(sid, 0) + n
                old += [f.key for f in run]
        _delete(old)
        return removed


def _merge(session: Session, day: date, run: list[SampleFile]) -> dict[int, int]:
    """Replace `run` (consecutive in write order) by one object in `session`; returns the
    duplicate rows dropped per series."""
    tables = [_read_table(f.key) for f in run]
    ranks = np.concatenate([np.full(t.num_rows, i, np.int64) for i, t in enumerate(tables)])
    merged = pa.concat_tables(tables)
    sid = merged.column("sid").to_numpy()
    ts = merged.column("ts").to_numpy()
    keep = dedupe_sorted(sid, ts, ranks)
    removed: dict[int, int] = {}
    if keep.size < sid.size:
        before = dict(zip(*np.unique(sid, return_counts=True), strict=True))
        after = dict(zip(*np.unique(sid[keep], return_counts=True), strict=True))
        removed = {
            int(s): int(n - after.get(s, 0)) for s, n in before.items() if n > after.get(s, 0)
        }
    output = _put_table(day, merged.take(pa.array(keep)), seq=run[-1].seq)
    _stage(session, [output])
    session.execute(delete(SampleFile).where(SampleFile.id.in_([f.id for f in run])))
    return removed


def sweep_orphans(grace_seconds: float = ORPHAN_GRACE_SECONDS) -> int:
    """Delete objects no transaction listed (a crash between write and commit or rollback).

    A batch's objects are named by their write time, so `grace_seconds` covers transactions
    still open; a compaction's output carries an old name, so each day is swept under the
    day's lease, which the compaction holds until its output is listed.
    """
    cutoff = time.time_ns() - int(grace_seconds * 1e9)
    candidates: dict[date, list[str]] = {}
    for obj in get_store().list(f"{PREFIX}/"):
        seq = _seq_of(obj.key)
        day = _day_of_key(obj.key)
        if seq is not None and seq < cutoff and day is not None:
            candidates.setdefault(day, []).append(obj.key)
    swept = 0
    for day, keys in sorted(candidates.items()):
        with day_lease(day) as held:
            if not held:
                continue
            with session_scope(readonly=True) as session:
                listed = {f.key for f in _listed(session, day, day)}
            orphans = [k for k in keys if k not in listed]
            _delete(orphans)
            swept += len(orphans)
    return swept


def _day_of_key(key: str) -> date | None:
    try:
        return date.fromisoformat(key.split("/")[-2].removeprefix("day="))
    except (IndexError, ValueError):
        return None


def bytes_used(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(SampleFile.bytes), 0))) or 0)


def cutoff_day(retention_days: int, now: datetime | None = None) -> date:
    """The oldest day kept: every sample younger than `retention_days` stays (whole days)."""
    return ((now or datetime.now(UTC)) - timedelta(days=retention_days)).astimezone(UTC).date()
