"""Range queries: the samples of the series a selector names, read and resampled.

Series metadata lives in the `signals_series` table (`catalog` finds and lists it) and
samples in the Parquet store, which `query`/`load_block` read and resample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput, NotFound
from popcorn.signals import store
from popcorn.signals.catalog import AGGREGATIONS, as_selector, find_series, series_name, to_ms
from popcorn.signals.models import Series
from popcorn.signals.promql import Selector, parse_duration, parse_time

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MAX_QUERY_SERIES = 1000
MAX_QUERY_POINTS = 11_000


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
    if end_dt < start_dt:
        raise InvalidInput(
            "end: must not be before start", details={"start": str(start_dt), "end": str(end_dt)}
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
    """Samples of every matching series in `[start, end]`, raw or resampled to `step`.

    `end` is inclusive, as in Prometheus's range queries: a sample at `end` is returned, and
    the grid has a point at `end` when `end - start` is a multiple of `step`. Resampled
    series share one grid `start, start + step, ... <= end`; each point aggregates the
    samples from it to the next (up to `end`); cells without samples are NaN (gaps stay
    visible). No matching series, or no sample in the window, is a NotFound.
    """
    if agg not in AGGREGATIONS:
        raise InvalidInput(f"agg: {agg!r} is not one of {', '.join(AGGREGATIONS)}")
    sel = as_selector(selector)
    start_dt, end_dt = _window(start, end)
    step_s = parse_duration(step, "step") if step not in (None, "") else None
    start_ms, end_ms = to_ms(start_dt), to_ms(end_dt)
    n = 0
    if step_s is not None:
        n = (end_ms - start_ms) // round(step_s * 1000) + 1
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
    samples = store.read([s.fingerprint for s in series], start_ms, end_ms + 1)
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
