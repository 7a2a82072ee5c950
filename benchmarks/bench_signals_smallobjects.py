"""Signals reads while a steady sender's objects wait for compaction.

Prometheus remote-writing one request a second leaves one sample object per request until
compaction merges them (every two minutes, objects listed for a minute or more). Measured on
an hour of such a sender (one object a second, 1,000 series with one sample each):

- a read of the hour (1, 100 and all 1,000 series) over the small objects, through
  `store.read` (one pyarrow dataset scan over every object),
- the baseline a pyarrow user writes first, and what Popcorn did before: `pq.read_table` of
  each object with the same filter, one after the other, then the same last-write-wins merge,
- the same read once the hour is compacted, the time that compaction took, and the cost of
  one steady two-minute compaction (120 new objects after the merged hour).

Run: .venv/bin/python benchmarks/bench_signals_smallobjects.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from common import LoadWatch, best, git_revision, machine, write_result

T0_MS = 1_772_445_600_000  # 2026-03-02T10:00:00Z
SERIES = 1000


def main() -> None:
    watch = LoadWatch()
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 minutes instead of an hour")
    args = parser.parse_args()
    n_objects = 600 if args.quick else 3600

    home = Path(tempfile.mkdtemp(prefix="popcorn-bench-smallobjects-"))
    os.environ["POPCORN_HOME"] = str(home)
    os.environ.pop("POPCORN_DATABASE_URL", None)
    from popcorn.config import reset_settings

    reset_settings()
    from popcorn.db import session_scope, upgrade
    from popcorn.signals import store
    from popcorn.storage import get_store

    upgrade()
    prints = np.sort(np.random.default_rng(7).integers(-(2**62), 2**62, SERIES)).astype(np.int64)

    def send(first: int, count: int) -> None:
        for i in range(first, first + count):
            with session_scope() as session:
                ts = np.full(SERIES, T0_MS + 1000 * i, np.int64)
                store.write_sorted(session, prints, ts, np.random.random(SERIES))
                store.order_at_commit(session)

    started = time.perf_counter()
    send(0, n_objects)
    write_s = time.perf_counter() - started
    day = store.day_of(T0_MS)
    end_ms = T0_MS + 1000 * n_objects

    def keys() -> list[str]:
        return store._visible(day, day, None)

    def baseline(wanted: list[int]) -> int:
        """Each object read on its own with the same filter, then last write wins."""
        filesystem, base = get_store().arrow()
        flt = (
            (pc.field("sid") >= min(wanted))
            & (pc.field("sid") <= max(wanted))
            & pc.field("sid").isin(pa.array(wanted, pa.int64()))
            & (pc.field("ts") >= T0_MS)
            & (pc.field("ts") < end_ms)
        )
        tables, ranks = [], []
        for rank, key in enumerate(keys()):
            table = pq.read_table(f"{base}/{key}", filesystem=filesystem, filters=flt)
            tables.append(table)
            ranks.append(np.full(table.num_rows, rank, np.int64))
        merged = pa.concat_tables(tables)
        sid, ts = merged.column("sid").to_numpy(), merged.column("ts").to_numpy()
        return int(store.dedupe_sorted(sid, ts, np.concatenate(ranks)).size)

    def popcorn(wanted: list[int]) -> int:
        return int(store.read(wanted, T0_MS, end_ms).ts.size)

    widths = (1, 100, SERIES)
    small: dict[int, tuple[float, float]] = {}
    for k in widths:
        wanted = prints[:k].tolist()
        assert popcorn(wanted) == baseline(wanted) == k * n_objects
        small[k] = (
            best(3, functools.partial(popcorn, wanted), lambda: None),
            best(3, functools.partial(baseline, wanted), lambda: None),
        )

    started = time.perf_counter()
    store.compact_day(day, grace_seconds=0)
    compact_s = time.perf_counter() - started
    objects_after = len(keys())
    merged: dict[int, float] = {}
    for k in widths:
        wanted = prints[:k].tolist()
        assert popcorn(wanted) == k * n_objects
        merged[k] = best(3, functools.partial(popcorn, wanted), lambda: None)

    send(n_objects, 120)  # two minutes more of the sender
    started = time.perf_counter()
    store.compact_day(day, grace_seconds=0)
    steady_s = time.perf_counter() - started
    # the most a read meets with the job running: 60 s of grace plus 120 s between runs
    send(n_objects + 120, 180)
    end_ms = T0_MS + 1000 * (n_objects + 300)
    waiting: dict[int, float] = {}
    for k in widths:
        wanted = prints[:k].tolist()
        assert popcorn(wanted) == k * (n_objects + 300)
        waiting[k] = best(3, functools.partial(popcorn, wanted), lambda: None)
    watch.stop()

    hour = "an hour" if n_objects == 3600 else f"{n_objects // 60} minutes"
    lines = [
        "## Signals reads before compaction (a steady remote-write sender)",
        "",
        f"{hour.capitalize()} of one remote-write request a second: {n_objects:,} sample objects "
        f"of {SERIES:,} series x 1 sample ({n_objects * SERIES:,} samples, written in "
        f"{write_s:.0f} s). Best of 3 reads of the whole window.",
        "",
        "| series read | Popcorn, over the small objects | baseline: `pq.read_table` per object "
        "| Popcorn vs baseline | Popcorn, once compacted |",
        "|---:|---:|---:|---:|---:|",
    ]
    for k in widths:
        ours, theirs = small[k]
        lines.append(
            f"| {k:,} | {ours * 1000:,.0f} ms | {theirs * 1000:,.0f} ms | "
            f"{theirs / ours:.1f}x faster | {merged[k] * 1000:,.0f} ms |"
        )
    lines += [
        "",
        f"- compacting {hour} ({n_objects:,} objects into {objects_after}): {compact_s:.1f} s; "
        f"the two-minute job then merges the next 120 objects in {steady_s * 1000:,.0f} ms "
        f"(an object past {store.SMALL_ROWS:,} rows, such as a merged busy hour, is not "
        "rewritten)",
        "- with that job running, a read meets at most 180 small objects besides the merged "
        "ones (60 s of grace, 120 s between runs): "
        + ", ".join(f"{k:,} series {waiting[k] * 1000:,.0f} ms" for k in widths),
        "- the baseline is what `store.read` did before this run's revision: the same filter "
        "and merge, one object after the other",
        f"- machine: {machine()}; {watch.note()}; revision {git_revision()}",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.quick:
        print(f"\nwritten to {write_result('signals-smallobjects', markdown)}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
