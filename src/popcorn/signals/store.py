"""The sample store: Parquet files under POPCORN_HOME/signals/samples, one directory per day.

Samples are never rows in SQL. Each ingest batch writes one file per UTC day it touches,
holding three columns (`sid`: the series' 64-bit fingerprint, `ts`: int64 milliseconds,
`value`: float64) sorted by series then time, in row groups whose statistics let a read
skip the series it does not want. Files are named by a write sequence; when two files hold
the same series and timestamp, the later file wins (a re-ingested sample replaces the old
one). Compaction merges a day's files into one, applying that rule; retention deletes whole
days. Because files are keyed by fingerprint, not by database id, a file never points at
the wrong series even if a database transaction rolled back around it.

A batch is all-or-nothing with its database transaction: its files become visible just
before the commit and are deleted again if the transaction rolls back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import event
from sqlalchemy.orm import Session

from popcorn.config import get_settings
from popcorn.db import on_commit

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

DAY_MS = 86_400_000
ROW_GROUP_ROWS = 131_072
COMPACT_GRACE_SECONDS = 300.0
SCHEMA = pa.schema([("sid", pa.int64()), ("ts", pa.int64()), ("value", pa.float64())])
_CLEANUP_KEY = "signals_staged_files"


def root() -> Path:
    return get_settings().home.resolve() / "signals" / "samples"


def fingerprint(metric: str, labels: dict[str, str]) -> int:
    """A stable signed 64-bit hash of the metric name and sorted labels."""
    canonical = json.dumps([metric, sorted(labels.items())], separators=(",", ":"))
    digest = hashlib.blake2b(canonical.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def day_of(ts_ms: int) -> date:
    return datetime.fromtimestamp(ts_ms // DAY_MS * 86_400, UTC).date()


def _day_dir(day: date) -> Path:
    return root() / f"day={day.isoformat()}"


def _files(day_dir: Path) -> list[Path]:
    """A day's visible files in write order (names carry a zero-padded sequence)."""
    return sorted(day_dir.glob("part-*.parquet"))


def partitions() -> list[tuple[date, Path]]:
    base = root()
    if not base.is_dir():
        return []
    out = []
    for path in base.glob("day=*"):
        try:
            out.append((date.fromisoformat(path.name[4:]), path))
        except ValueError:
            continue
    return sorted(out)


def _write_file(day_dir: Path, table: pa.Table, seq: int | None = None) -> Path:
    """Write to a hidden name, fsync, then rename into view: readers never see half a file."""
    day_dir.mkdir(parents=True, exist_ok=True)
    seq = seq if seq is not None else time.time_ns()
    name = f"part-{seq:020d}-{uuid.uuid4().hex[:12]}.parquet"
    staged = day_dir / f".{name}.tmp"
    pq.write_table(
        table,
        staged,
        row_group_size=ROW_GROUP_ROWS,
        compression="zstd",
        compression_level=1,
        use_dictionary=["sid"],
        write_statistics=True,
    )
    fd = os.open(staged, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    final = day_dir / name
    os.replace(staged, final)
    return final


def write_sorted(session: Session, sid: IntArray, ts: IntArray, values: FloatArray) -> int:
    """Write samples sorted by (sid, ts); files vanish again if `session` rolls back.

    Returns the number of files written (one per UTC day touched).
    """
    if sid.size == 0:
        return 0
    days = ts // DAY_MS
    written: list[Path] = []
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
            written.append(_write_file(_day_dir(day), table))
    except BaseException:
        _unlink(written)
        raise
    staged: list[Path] = session.info.setdefault(_CLEANUP_KEY, [])
    staged.extend(written)
    on_commit(session, lambda: session.info.pop(_CLEANUP_KEY, None))
    return len(written)


@event.listens_for(Session, "after_rollback")
def _remove_rolled_back(session: Session) -> None:
    _unlink(session.info.pop(_CLEANUP_KEY, []))


def _unlink(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


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


def read(sids: Iterable[int], start_ms: int, end_ms: int) -> Samples:
    """Samples of the given series with start_ms <= ts < end_ms, later writes winning."""
    wanted = sorted(set(sids))
    empty = Samples(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    if not wanted or end_ms <= start_ms:
        return empty
    first_day = day_of(start_ms)
    last_day = day_of(end_ms - 1)
    for attempt in range(5):
        try:
            return _read_once(wanted, start_ms, end_ms, first_day, last_day)
        except FileNotFoundError:
            if attempt == 4:
                raise
            time.sleep(0.05)  # compaction or retention replaced a file under us: list again
    return empty


def _read_once(wanted: list[int], start_ms: int, end_ms: int, first: date, last: date) -> Samples:
    wanted_arr = pa.array(wanted, pa.int64())
    flt = (
        pc.field("sid").isin(wanted_arr) & (pc.field("ts") >= start_ms) & (pc.field("ts") < end_ms)
    )
    tables: list[pa.Table] = []
    ranks: list[IntArray] = []
    rank = 0
    for day, path in partitions():
        if day < first or day > last:
            continue
        for file in _files(path):
            table = pq.read_table(file, filters=flt, schema=SCHEMA)
            if table.num_rows:
                tables.append(table)
                ranks.append(np.full(table.num_rows, rank, np.int64))
            rank += 1
    if not tables:
        return Samples(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    merged = pa.concat_tables(tables)
    sid = merged.column("sid").to_numpy()
    ts = merged.column("ts").to_numpy()
    value = merged.column("value").to_numpy()
    keep = dedupe_sorted(sid, ts, np.concatenate(ranks) if len(tables) > 1 else None)
    return Samples(sid[keep], ts[keep], value[keep])


def count_by_series(paths: Iterable[Path]) -> dict[int, int]:
    """Stored rows per series in the given files (duplicates included)."""
    counts: dict[int, int] = {}
    for file in paths:
        column = pq.read_table(file, columns=["sid"]).column("sid")
        grouped = pa.table({"sid": column}).group_by("sid").aggregate([("sid", "count")])
        for s, n in zip(
            grouped.column("sid").to_pylist(), grouped.column("sid_count").to_pylist(), strict=True
        ):
            counts[s] = counts.get(s, 0) + n
    return counts


def drop_days_before(cutoff: date) -> tuple[list[date], dict[int, int]]:
    """Delete every day partition older than `cutoff`; returns the days and rows removed."""
    dropped: list[date] = []
    removed: dict[int, int] = {}
    for day, path in partitions():
        if day >= cutoff:
            break
        for s, n in count_by_series(_files(path)).items():
            removed[s] = removed.get(s, 0) + n
        shutil.rmtree(path, ignore_errors=True)
        dropped.append(day)
    return dropped, removed


def first_timestamps(sids: Iterable[int]) -> dict[int, int]:
    """The oldest stored timestamp of each series, looking at the oldest days first."""
    todo = set(sids)
    found: dict[int, int] = {}
    for _day, path in partitions():
        if not todo:
            break
        files = _files(path)
        if not files:
            continue
        flt = pc.field("sid").isin(pa.array(sorted(todo), pa.int64()))
        table = pa.concat_tables(
            [pq.read_table(f, columns=["sid", "ts"], filters=flt, schema=SCHEMA) for f in files]
        )
        if table.num_rows == 0:
            continue
        grouped = table.group_by("sid").aggregate([("ts", "min")])
        for s, t in zip(
            grouped.column("sid").to_pylist(), grouped.column("ts_min").to_pylist(), strict=True
        ):
            found[s] = t
            todo.discard(s)
    return found


def compact_day(day_dir: Path, grace_seconds: float = COMPACT_GRACE_SECONDS) -> dict[int, int]:
    """Merge the day's settled files into one; returns duplicate rows removed per series.

    Only a prefix of files (in write order) older than `grace_seconds` is merged, so a batch
    whose transaction is still open is never folded in, and newer files keep winning.
    """
    files = _files(day_dir)
    cutoff = time.time() - grace_seconds
    prefix: list[Path] = []
    for file in files:
        if file.stat().st_mtime > cutoff:
            break
        prefix.append(file)
    if len(prefix) < 2:
        return {}
    tables = [pq.read_table(f, schema=SCHEMA) for f in prefix]
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
    seq = int(prefix[-1].name.split("-")[1])
    _write_file(day_dir, merged.take(pa.array(keep)), seq=seq)
    _unlink(prefix)
    return removed


def bytes_used() -> int:
    base = root()
    return sum(p.stat().st_size for p in base.rglob("*.parquet")) if base.is_dir() else 0


def cutoff_day(retention_days: int, now: datetime | None = None) -> date:
    """The oldest day kept: every sample younger than `retention_days` stays (whole days)."""
    return ((now or datetime.now(UTC)) - timedelta(days=retention_days)).astimezone(UTC).date()
