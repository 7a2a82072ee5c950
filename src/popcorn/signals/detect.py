"""Change-point detection for Popcorn signals, fast enough for thousands of signals at once.

The alert analysis (``rank.py``) asks one question of every candidate signal: did it change
in the window, where, how much and which way. This module answers it for a whole 2-D block
``(n_signals, n_samples)`` on a regular time grid, using only numpy:

1. **Clean**: NaN gaps inside a series are bridged by linear interpolation; leading and
   trailing gaps are edge-filled (the caller sees them as "appeared"/"disappeared").
   Isolated spikes (at most two samples) are replaced by a running median of five: spikes are
   not changes.
2. **Noise**: each row gets a robust noise scale from the median absolute deviation of its
   first differences (insensitive to level shifts; raised to their winsorised RMS when the
   tails are heavy), and an AR(1) correction from the ratio of lag-2 to lag-1 difference
   scales, so that autocorrelated metrics do not look like a sequence of shifts.
3. **Screen** (all rows, vectorised): the largest CUSUM split gain of the whole series, for the
   mean and for the scale of the differences (variance changes). Rows far below the penalty
   stop here, which is what makes 10,000 signals cheap.
4. **Segment** (the rows that pass): greedy binary segmentation vectorised across rows, run at
   half the penalty so that short excursions (a bump that goes up and comes back) are not
   missed, then every change point is re-located between its neighbours and the weakest are
   pruned until each one pays the full penalty. Variance changes are found first on the
   log absolute differences, and the mean search then weights each sample by its segment's
   precision. A staircase of same-direction shifts is replaced by one "flat, then ramp"
   change (a trend) when that fits better, so a leak is one change, not five.

Any ruptures method can replace step 4 per request (``method="pelt"|"binseg"|"bottomup"|
"window"|"kernel"``, with ``cost=`` or ``kernel=``); the screening still decides which rows
are worth the slower search.

Tuning
------
The default penalty is ``beta = 3 * log(n)`` in units of the row's long-run noise variance:
a split is kept only if it reduces the residual sum of squares by more than
``beta * sigma**2 * (1 + phi) / (1 - phi)`` (``phi`` being the estimated lag-1
autocorrelation). This is a BIC-style penalty (two parameters per change, ``log n`` each)
with 50 % head-room for real metrics that are never quite Gaussian, and it needs no tuning:
on pure noise it flags well under 1 % of series. To tune:

- ``sensitivity`` (default 1.0) divides the penalty: 2.0 finds smaller changes and more false
  ones, 0.5 only the obvious ones.
- ``penalty`` sets ``beta`` directly (still in noise-variance units, so it carries over
  between signals of different scales); the smallest mean shift that a long segment can
  reveal is about ``sqrt(beta / n_short)`` noise units, ``n_short`` being the shorter side.
- ``min_size`` (default 5 samples) is the shortest segment; a run shorter than that is
  treated as noise, which is also the resolution of the change time.
- ``min_effect`` (default 1.0) drops level changes smaller than that many noise units,
  however significant: a long quiet window makes tiny shifts significant but not useful.
- ``despike=False`` keeps one- and two-sample excursions as data; ``variance=False`` skips
  the search for changes in noise level; ``seasonal=False`` skips the check that a smooth
  cycle (two harmonics of the strongest periodogram frequency) explains a row with several
  changes better than the changes do.
- An exactly flat segment (zero variance: an idle counter, a saturated gauge) is weighted as
  if it had a quarter of the row's noise, so a jump from it to a noisy level is found.
For the ruptures costs other than ``l2``/``normal``/``ar`` the penalty is rescaled by a rough
factor (see ``COST_PENALTY_SCALE``); pass ``penalty`` when using them seriously.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from popcorn.signals.segment import (
    _binseg,
    _collapse_trends,
    _prefix,
    _refine,
    _segments_of,
    _Trend,
    _whole_gain,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

METHODS = ("fast", "pelt", "binseg", "bottomup", "window", "kernel")
COSTS = ("l2", "l1", "normal", "rbf", "ar", "rank", "cosine")
KERNELS = ("linear", "rbf", "cosine")
# How the ruptures costs compare with the residual sum of squares of a standardised series.
COST_PENALTY_SCALE = {
    "l2": 1.0,
    "normal": 1.0,
    "ar": 1.0,
    "l1": 0.5,
    "rank": 0.2,
    "rbf": 0.3,
    "cosine": 0.3,
}
KERNEL_PENALTY_SCALE = {"linear": 1.0, "rbf": 0.3, "cosine": 0.3}

_MAD = 1.4826
# Smallest noise scale (in units of the row's noise) a segment is weighted by: see
# _variance_search.
_FLAT_FLOOR = 0.25
_CHUNK_ROWS = 512


class DetectionError(ValueError):
    """Invalid detection input or option; the message names the offending field."""


@dataclass(frozen=True)
class DetectOptions:
    """How to look for changes; every default works without tuning (see module docstring)."""

    method: str = "fast"
    cost: str = "l2"
    kernel: str = "linear"
    penalty: float | None = None
    sensitivity: float = 1.0
    min_size: int = 5
    min_effect: float = 1.0
    max_changes: int = 8
    despike: bool = True
    variance: bool = True
    window_width: int = 40
    screen_fraction: float = 0.5
    seasonal: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise DetectionError(f"method: {self.method!r} is not one of {', '.join(METHODS)}")
        if self.cost not in COSTS:
            raise DetectionError(f"cost: {self.cost!r} is not one of {', '.join(COSTS)}")
        if self.kernel not in KERNELS:
            raise DetectionError(f"kernel: {self.kernel!r} is not one of {', '.join(KERNELS)}")
        if self.penalty is not None and not (math.isfinite(self.penalty) and self.penalty > 0):
            raise DetectionError(f"penalty: must be a positive number, got {self.penalty!r}")
        if not (math.isfinite(self.sensitivity) and self.sensitivity > 0):
            raise DetectionError(f"sensitivity: must be positive, got {self.sensitivity!r}")
        if not 2 <= self.min_size <= 1000:
            raise DetectionError(f"min_size: must be between 2 and 1000, got {self.min_size!r}")
        if not (math.isfinite(self.min_effect) and self.min_effect >= 0):
            raise DetectionError(f"min_effect: must be >= 0, got {self.min_effect!r}")
        if not 1 <= self.max_changes <= 100:
            raise DetectionError(f"max_changes: must be between 1 and 100, got {self.max_changes}")
        if self.window_width < 2 * self.min_size:
            raise DetectionError("window_width: must be at least twice min_size")
        if not 0 < self.screen_fraction <= 1:
            raise DetectionError("screen_fraction: must be in (0, 1]")

    @classmethod
    def from_kwargs(cls, **options: Any) -> DetectOptions:
        """Build options from keyword arguments, rejecting unknown names clearly."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise DetectionError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**options)

    def beta(self, n: int) -> float:
        """Penalty per change point in long-run noise-variance units."""
        base = self.penalty if self.penalty is not None else 3.0 * math.log(max(n, 3))
        return base / self.sensitivity


@dataclass(frozen=True)
class ChangePoint:
    """One change: where the new segment starts and how it differs from the previous one."""

    index: int
    kind: str  # "level" or "variance"
    effect: float  # |shift| in noise units (level) or equivalent for a variance change
    delta: float  # raw shift of the mean (level) or ratio of noise scales (variance)
    before: float  # mean (level) or noise scale (variance) of the segment before
    after: float

    @property
    def direction(self) -> str:
        if self.kind == "variance":
            return "up" if self.delta > 1.0 else "down"
        return "up" if self.delta > 0 else "down"


@dataclass
class RowDetection:
    """Detection outcome for one row of a block."""

    changes: list[ChangePoint] = field(default_factory=list)
    sigma: float = 0.0
    constant: bool = False
    screen_stat: float = 0.0  # largest screening gain over the penalty (1.0 = at the penalty)


@dataclass
class Prepared:
    """A block after gap filling, spike removal and noise estimation."""

    values: FloatArray  # filled (and despiked) values, same shape as the input
    valid: BoolArray  # where the input had data
    first_valid: IntArray
    last_valid: IntArray
    n_valid: IntArray
    sigma: FloatArray  # marginal noise scale per row
    long_run: FloatArray  # long-run variance factor (1 + phi) / (1 - phi) per row
    constant: BoolArray


# --------------------------------------------------------------------------- grids


def regular_grid(
    timestamps: npt.ArrayLike, values: npt.ArrayLike, step: int | None = None
) -> tuple[IntArray, FloatArray]:
    """Put a block sampled at shared, possibly irregular times onto a regular grid.

    Duplicate and unsorted timestamps are tolerated; each grid point is linearly interpolated
    between its two neighbouring samples (NaN if either neighbour is NaN).
    """
    ts = np.asarray(timestamps, dtype=np.int64)
    block = np.asarray(values, dtype=np.float64)
    if ts.ndim != 1:
        raise DetectionError("timestamps: must be one-dimensional")
    squeeze = block.ndim == 1
    if squeeze:
        block = block[None, :]
    if block.ndim != 2 or block.shape[1] != ts.size:
        raise DetectionError(
            f"values: expected shape (n_signals, {ts.size}), got {np.shape(values)}"
        )
    if ts.size == 0:
        return ts, block[0] if squeeze else block
    gaps = np.diff(ts)
    if gaps.size and np.all(gaps == gaps[0]) and gaps[0] > 0 and step in (None, int(gaps[0])):
        return ts, block[0] if squeeze else block  # already a regular grid: no copy
    order = np.argsort(ts, kind="stable")
    ts = ts[order]
    block = block[:, order]
    keep = np.r_[True, np.diff(ts) > 0]
    ts, block = ts[keep], block[:, keep]
    if ts.size < 2:
        return ts, block[0] if squeeze else block
    diffs = np.diff(ts)
    if step is None:
        step = int(np.median(diffs))
    if step <= 0:
        raise DetectionError(f"step: must be a positive number of seconds, got {step}")
    if np.all(diffs == step):
        return ts, block[0] if squeeze else block
    grid = np.arange(ts[0], ts[-1] + 1, step, dtype=np.int64)
    right = np.clip(np.searchsorted(ts, grid, side="left"), 1, ts.size - 1)
    left = right - 1
    exact = ts[right] == grid
    left = np.where(exact, right, left)
    span = (ts[right] - ts[left]).astype(np.float64)
    weight = np.where(span > 0, (grid - ts[left]) / np.where(span > 0, span, 1.0), 0.0)
    out = block[:, left] * (1.0 - weight) + block[:, right] * weight
    return grid, out[0] if squeeze else out


def align_series(
    series: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]], start: int, end: int, step: int
) -> tuple[IntArray, FloatArray]:
    """Bin signals that each have their own timestamps onto one grid ``[start, end)``.

    Each cell holds the mean of the samples that fall in it, NaN where none do; this is how
    irregular scrapes of many signals become the block ``analyze_block`` expects.
    """
    if step <= 0:
        raise DetectionError(f"step: must be a positive number of seconds, got {step}")
    if end <= start:
        raise DetectionError("end: must be after start")
    n = math.ceil((end - start) / step)
    grid = start + step * np.arange(n, dtype=np.int64)
    out = np.full((len(series), n), np.nan)
    for row, (ts_like, vals_like) in enumerate(series):
        ts = np.asarray(ts_like, dtype=np.int64)
        vals = np.asarray(vals_like, dtype=np.float64)
        if ts.shape != vals.shape or ts.ndim != 1:
            raise DetectionError(f"series[{row}]: timestamps and values must be equal 1-D arrays")
        cell = (ts - start) // step
        ok = (cell >= 0) & (cell < n) & np.isfinite(vals)
        counts = np.bincount(cell[ok], minlength=n)
        sums = np.bincount(cell[ok], weights=vals[ok], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[row] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return grid, out


# --------------------------------------------------------------------------- preparation


def _fill_gaps(
    x: FloatArray, inplace: bool = False
) -> tuple[FloatArray, BoolArray, IntArray, IntArray]:
    """Interpolate inner gaps, edge-fill outer ones; rows without data become zeros."""
    k, m = x.shape
    valid = ~np.isnan(x)
    first = np.zeros(k, dtype=np.int64)
    last = np.full(k, m - 1, dtype=np.int64)
    holes = np.flatnonzero(~valid.all(axis=1))
    if holes.size == 0:
        return x, valid, first, last
    sub = x[holes]
    ok = valid[holes]
    idx = np.arange(m)
    prev = np.maximum.accumulate(np.where(ok, idx, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(ok, idx, m)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(holes.size)[:, None]
    p = np.clip(prev, 0, m - 1)
    q = np.clip(nxt, 0, m - 1)
    xp = sub[rows, p]
    xq = sub[rows, q]
    span = np.where((prev >= 0) & (nxt < m), nxt - prev, 1)
    w = np.where((prev >= 0) & (nxt < m), (idx - prev) / np.maximum(span, 1), 0.0)
    inner = xp * (1.0 - w) + xq * w
    filled = np.where(prev < 0, xq, np.where(nxt >= m, xp, inner))
    filled = np.where(ok, sub, filled)
    empty = ~ok.any(axis=1)
    filled[empty] = 0.0
    if not inplace:
        x = x.copy()
    x[holes] = filled
    first[holes] = np.where(empty, m, nxt[:, 0])
    last[holes] = np.where(empty, -1, prev[:, -1])
    return x, valid, first, last


def _median5(x: FloatArray) -> FloatArray:
    """Running median of five along rows (edges padded by reflection), with min/max only."""
    pad = np.pad(x, ((0, 0), (2, 2)), mode="reflect")
    m = x.shape[1]
    p0, p1, p2, p3, p4 = (pad[:, i : i + m] for i in range(5))
    p0, p1 = np.minimum(p0, p1), np.maximum(p0, p1)
    p3, p4 = np.minimum(p3, p4), np.maximum(p3, p4)
    p3 = np.maximum(p0, p3)
    p1 = np.minimum(p1, p4)
    p1, p2 = np.minimum(p1, p2), np.maximum(p1, p2)
    p2 = np.minimum(p2, p3)
    return np.maximum(p1, p2)


def _median_abs(d: npt.NDArray[np.floating[Any]], mask: BoolArray | None = None) -> FloatArray:
    """Median of ``|d|`` per row (lower middle element), ignoring entries where ``mask`` is false.

    Partitioning float32 copies keeps this the cheapest pass over a 10,000-row block.
    """
    a = np.abs(d).astype(np.float32)  # a copy: the caller's array is left alone
    if mask is None:
        kth = (a.shape[1] - 1) // 2
        return np.partition(a, kth, axis=1)[:, kth].astype(np.float64)
    a[~mask] = np.inf
    counts = mask.sum(axis=1)
    srt = np.sort(a, axis=1)
    pick = np.clip((counts - 1) // 2, 0, a.shape[1] - 1)
    out = srt[np.arange(a.shape[0]), pick].astype(np.float64)
    return np.where(counts > 0, out, 0.0)


def _diff_scale(x: FloatArray, valid: BoolArray, lag: int) -> FloatArray:
    """Robust scale of the lag-``lag`` differences of every row (only between real samples).

    The MAD, raised to the winsorised root mean square where that is larger: heavy tails
    show in the second moment, while a few level shifts or spikes (clipped at 4 MADs)
    barely move it. Works through row chunks so the temporaries stay in cache.
    """
    k, m = x.shape
    if m <= lag:
        return np.zeros(k)
    out = np.zeros(k)
    complete: BoolArray = np.asarray(valid.all(axis=1))
    for lo in range(0, k, _CHUNK_ROWS):
        hi = min(lo + _CHUNK_ROWS, k)
        d = (x[lo:hi, lag:] - x[lo:hi, :-lag]).astype(np.float32)
        np.abs(d, out=d)
        full = complete[lo:hi]
        if full.all():
            mad = _MAD * _median_abs(d)
        else:
            mad = np.zeros(hi - lo)
            rows = np.flatnonzero(full)
            if rows.size:
                mad[rows] = _MAD * _median_abs(d[rows])
            rows = np.flatnonzero(~full)
            ok = valid[lo + rows, lag:] & valid[lo + rows, :-lag]
            mad[rows] = _MAD * _median_abs(d[rows], ok)
            d[rows] = np.where(ok, d[rows], 0.0)
        cap = (4.0 * mad).astype(np.float32)[:, None]
        np.minimum(d, cap, out=d)
        wins = np.sqrt(np.einsum("ij,ij->i", d, d, dtype=np.float64) / max(m - lag, 1))
        out[lo:hi] = np.where(full, np.maximum(mad, wins), mad)
    # Quantised or nearly constant rows have a zero median: fall back on the mean
    # absolute difference, which a single step keeps small but positive.
    zero = np.flatnonzero(out <= 0)
    if zero.size:
        d64 = np.abs(x[zero, lag:] - x[zero, :-lag])
        ok = valid[zero, lag:] & valid[zero, :-lag]
        total = np.where(ok, d64, 0.0).sum(axis=1)
        out[zero] = total / np.maximum(ok.sum(axis=1), 1) * math.sqrt(math.pi / 2)
    return out


def prepare(values: npt.ArrayLike, copy: bool = True) -> Prepared:
    """Fill gaps and estimate the noise of a whole block (rows are independent).

    ``copy=False`` lets a float64 block that the caller no longer needs be filled in place.
    """
    x = np.array(values, dtype=np.float64, copy=copy or None)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise DetectionError(f"values: expected a 1-D or 2-D array, got {x.ndim} dimensions")
    x[~np.isfinite(x)] = np.nan
    x, valid, first, last = _fill_gaps(x, inplace=True)
    n_valid = valid.sum(axis=1).astype(np.int64)
    s1 = _diff_scale(x, valid, 1)
    s2 = _diff_scale(x, valid, 2)
    # Lag-2 differences of AR(1) noise spread (1 + phi) times more (in variance) than lag-1.
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(s1 > 0, (s2 / np.where(s1 > 0, s1, 1.0)) ** 2 - 1.0, 0.0)
    phi = np.clip(phi, 0.0, 0.8)
    sigma = s1 / np.sqrt(2.0 * (1.0 - phi))
    level = np.abs(x).mean(axis=1) if x.shape[1] else np.zeros(x.shape[0])
    constant = sigma <= 1e-12 * np.maximum(level, 1.0)
    long_run = (1.0 + phi) / (1.0 - phi)
    return Prepared(x, valid, first, last, n_valid, sigma, long_run, constant)


def _despike(prep: Prepared, rows: IntArray) -> None:
    """Replace one- and two-sample excursions by the running median (spikes are not changes)."""
    x = prep.values[rows]
    if x.shape[1] >= 5:
        med = _median5(x)
        spikes = np.abs(x - med) > 5.0 * prep.sigma[rows, None]
        prep.values[rows] = np.where(spikes, med, x)


def _variance_search(
    y: FloatArray, valid: BoolArray, beta: float, opts: DetectOptions
) -> tuple[list[list[int]], FloatArray]:
    """Changes in noise level (on absolute differences) and per-sample precision weights."""
    k, m = y.shape
    zn = _abs_diff_scores(y, valid)
    pen = np.full(k, 1.5 * beta * opts.screen_fraction)
    raw = _binseg(zn, None, pen, opts.min_size, opts.max_changes)
    sw, swy = _prefix(zn, None)
    weights = np.ones((k, m))
    found: list[list[int]] = []
    for row, cps in enumerate(raw):
        kept = _refine(sw[row], swy[row], cps, 1.5 * beta, opts.min_size, m - 1)
        cps_x = [c + 1 for c in kept if opts.min_size <= c + 1 <= m - opts.min_size]
        found.append(cps_x)
        if cps_x:
            d = np.diff(y[row])
            for a, b in _segments_of(cps_x, m):
                seg = d[max(a, 1) - 1 : max(b - 1, a)]
                s = _MAD * float(np.median(np.abs(seg - np.median(seg)))) if seg.size else 0.0
                # An exactly flat segment (an idle counter, a saturated gauge) has no noise;
                # unfloored, its weight would drown every other segment and hide the change.
                s = max(s, _FLAT_FLOOR)
                weights[row, a:b] = 1.0 / (s * s / 2.0)
            weights[row] /= weights[row].mean()
    return found, weights


def _ruptures_penalty(opts: DetectOptions, beta: float) -> float:
    if opts.method == "kernel":
        return beta * KERNEL_PENALTY_SCALE[opts.kernel]
    return beta * COST_PENALTY_SCALE[opts.cost]


def _ruptures_algo(opts: DetectOptions, m: int) -> Any:
    import ruptures as rpt

    if opts.method == "kernel":
        return rpt.KernelCPD(kernel=opts.kernel, min_size=opts.min_size, jump=1)
    common: dict[str, Any] = {"model": opts.cost, "min_size": opts.min_size, "jump": 1}
    if opts.method == "pelt":
        return rpt.Pelt(**common)
    if opts.method == "binseg":
        return rpt.Binseg(**common)
    if opts.method == "bottomup":
        return rpt.BottomUp(**common)
    width = max(min(opts.window_width, m - (m % 2)), 2 * opts.min_size)
    return rpt.Window(width=width, **common)


def _ruptures_search(y: FloatArray, beta: float, opts: DetectOptions) -> list[int]:
    """Change points of one standardised row with the requested ruptures method."""
    m = y.size
    if m < 2 * opts.min_size:
        return []
    signal = y.reshape(-1, 1)
    with warnings.catch_warnings():
        # ruptures announces a change of behaviour of its "normal" cost on every use.
        warnings.simplefilter("ignore", UserWarning)
        ends = _ruptures_algo(opts, m).fit(signal).predict(pen=_ruptures_penalty(opts, beta))
    return [int(e) for e in ends if 0 < e < m]


def _describe(
    x: FloatArray,
    y: FloatArray,
    level_cps: list[int],
    var_cps: list[int],
    trends: Sequence[_Trend] = (),
) -> list[ChangePoint]:
    """Effect, shift and direction of every change, from the segments on either side."""
    m = x.size
    out: list[ChangePoint] = []
    scale = float(np.std(x) / np.std(y)) if np.std(y) > 0 else 1.0
    for tr in trends:
        rise = tr.slope * (tr.end - 1 - tr.index)
        before = float(x[max(tr.index - 5, 0) : tr.index + 1].mean())
        out.append(
            ChangePoint(tr.index, "trend", abs(rise), rise * scale, before, before + rise * scale)
        )
    level_set = sorted(set(level_cps))
    for i, c in enumerate(level_set):
        a = level_set[i - 1] if i > 0 else 0
        b = level_set[i + 1] if i + 1 < len(level_set) else m
        before = float(x[a:c].mean())
        after = float(x[c:b].mean())
        shift = float(y[c:b].mean() - y[a:c].mean())
        out.append(ChangePoint(c, "level", abs(shift), after - before, before, after))
    d = np.diff(x)
    var_set = sorted(set(var_cps))
    for i, c in enumerate(var_set):
        if any(abs(c - lc) < 3 for lc in level_set):
            continue
        a = var_set[i - 1] if i > 0 else 0
        b = var_set[i + 1] if i + 1 < len(var_set) else m
        left = d[a : c - 1]
        right = d[c : b - 1]
        if left.size < 2 or right.size < 2:
            continue
        s_before = _MAD * float(np.median(np.abs(left - np.median(left)))) / math.sqrt(2)
        s_after = _MAD * float(np.median(np.abs(right - np.median(right)))) / math.sqrt(2)
        if s_before <= 0 and s_after <= 0:
            continue
        # Flat on one side (no noise at all): the change is real; bound its size.
        s_before = max(s_before, 0.05 * s_after)
        s_after = max(s_after, 0.05 * s_before)
        ratio = s_after / s_before
        out.append(ChangePoint(c, "variance", 3.0 * abs(math.log(ratio)), ratio, s_before, s_after))
    out.sort(key=lambda cp: cp.index)
    return out


def _abs_diff_scores(y: FloatArray, valid: BoolArray | None = None) -> FloatArray:
    """Log absolute differences of a standardised row, scaled to unit noise.

    A change in noise level is a mean shift of this series. The logarithm keeps a level
    shift (one large difference) from looking like one, and the floor keeps differences that
    happen to be near zero from dominating; for Gaussian noise the result has sd close to 1.
    """
    z = np.log(np.maximum(np.abs(np.diff(y, axis=1)) * (1.0 / math.sqrt(2.0)), 0.05))
    z *= 1.0 / 0.98
    if valid is not None:
        # Bridged gaps have no noise at all; give them the row's typical score instead.
        real = valid[:, 1:] & valid[:, :-1]
        if not real.all():
            typical = np.where(real, z, 0.0).sum(axis=1) / np.maximum(real.sum(axis=1), 1)
            z = np.where(real, z, typical[:, None])
    return z


def detect_prepared(prep: Prepared, options: DetectOptions | None = None) -> list[RowDetection]:
    """Find the changes of every row of a prepared block (rows never influence each other).

    Rows that pass the screening are despiked and get a refined noise estimate in ``prep``.
    """
    opts = options or DetectOptions()
    k, m = prep.values.shape
    results = [RowDetection(constant=bool(prep.constant[i])) for i in range(k)]
    if k and m >= 2 * opts.min_size + 1:
        beta = opts.beta(m)
        for lo in range(0, k, _CHUNK_ROWS):
            rows = np.arange(lo, min(lo + _CHUNK_ROWS, k))
            rows = rows[~prep.constant[rows]]
            if rows.size:
                _detect_chunk(prep, rows, beta, opts, results)
    for i, res in enumerate(results):
        res.sigma = float(prep.sigma[i])
    return results


def _detect_chunk(
    prep: Prepared, rows: IntArray, beta: float, opts: DetectOptions, results: list[RowDetection]
) -> None:
    m = prep.values.shape[1]
    y = prep.values[rows] / prep.sigma[rows, None]
    pen = beta * prep.long_run[rows]
    stat = _whole_gain(y, opts.min_size) / pen
    if opts.variance:
        zn = _abs_diff_scores(y, prep.valid[rows])
        stat = np.maximum(stat, _whole_gain(zn, opts.min_size) / (1.5 * beta))
    for r, st in zip(rows, stat, strict=True):
        results[r].screen_stat = float(st)
    rows = rows[stat >= opts.screen_fraction]
    if rows.size == 0:
        return
    if opts.despike:
        _despike(prep, rows)
    x = prep.values[rows]
    sig = prep.sigma[rows]
    y = (x - x.mean(axis=1, keepdims=True)) / sig[:, None]
    pen = beta * prep.long_run[rows]
    if opts.method != "fast":
        for j, r in enumerate(rows):
            scaled = y[j] / math.sqrt(float(prep.long_run[r]))
            level = _ruptures_search(scaled, beta, opts)
            results[r].changes = _describe(x[j], y[j], level, [])
        return
    weights: FloatArray | None = None
    var_found: list[list[int]] = [[] for _ in rows]
    if opts.variance:
        var_found, w = _variance_search(y, prep.valid[rows], beta, opts)
        weights = w if any(var_found) else None
    raw = _binseg(y, weights, pen * opts.screen_fraction, opts.min_size, opts.max_changes)
    sw, swy = _prefix(y, weights)
    for j, r in enumerate(rows):
        level = _refine(sw[j], swy[j], raw[j], float(pen[j]), opts.min_size, m, opts.min_effect)
        level, trends = _collapse_trends(y[j], level, float(pen[j]), opts.min_size)
        if opts.seasonal and len(level) + len(trends) >= 2:
            level, trends = _seasonal_alternative(y[j], level, trends, float(pen[j]), opts)
        results[r].changes = _describe(x[j], y[j], level, var_found[j], trends)


def _design(m: int, level: Sequence[int], trends: Sequence[_Trend]) -> FloatArray:
    """Columns of the piecewise model: intercept, one step per level change, one ramp per trend."""
    t = np.arange(m, dtype=np.float64)
    cols = [np.ones(m)]
    cols += [(t >= c).astype(np.float64) for c in level]
    cols += [np.clip(t - tr.index, 0.0, float(tr.end - tr.index)) for tr in trends]
    return np.column_stack(cols)


def _rss(y: FloatArray, design: FloatArray) -> float:
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    return float(resid @ resid)


def _cycle(t: FloatArray, freq: float) -> FloatArray:
    """Two harmonics of ``freq`` cycles per window."""
    w = 2.0 * math.pi * freq / t.size
    return np.column_stack([np.sin(w * t), np.cos(w * t), np.sin(2 * w * t), np.cos(2 * w * t)])


def _best_cycle(y: FloatArray, t: FloatArray, k: int) -> FloatArray:
    """The cycle near ``k`` periods per window that fits best: real periods rarely divide it."""
    best: tuple[float, FloatArray] | None = None
    for freq in np.arange(max(k - 0.5, 0.5), k + 0.51, 0.1):
        cycle = _cycle(t, float(freq))
        rss = _rss(y, np.column_stack([np.ones(t.size), cycle]))
        if best is None or rss < best[0]:
            best = (rss, cycle)
    assert best is not None
    return best[1]


def _seasonal_alternative(
    y: FloatArray, level: list[int], trends: list[_Trend], pen: float, opts: DetectOptions
) -> tuple[list[int], list[_Trend]]:
    """Changes found after taking out a smooth cycle, when that explains the row better.

    Segmentation carves a daily cycle (or any smooth oscillation) into shifts. Candidate
    cycle frequencies are the strongest of the periodogram (periods of 10 samples up to the
    window) of the row and of what the changes leave unexplained; two harmonics of one cost
    as much as two changes. The cycle is fitted alone and together with the changes, the
    segmentation redone on the row without it, and whichever model (steps alone, or cycle
    plus steps) has the lowest penalised residual wins.
    """
    m = y.size
    top = min(m // 10, m // 2)
    if top < 1:
        return level, trends
    steps = _design(m, level, trends)
    coef, *_ = np.linalg.lstsq(steps, y, rcond=None)
    unexplained = y - steps @ coef
    t = np.arange(m, dtype=np.float64)
    cycles: list[FloatArray] = []
    for row in (y - y.mean(), unexplained):
        spectrum = np.abs(np.fft.rfft(row))[1 : top + 1]
        cycles += [_best_cycle(row, t, 1 + int(i)) for i in np.argsort(spectrum)[-2:]]
    best_cost = _rss(y, steps) + pen * (len(level) + len(trends))
    best = (level, trends)
    for cycle in cycles:
        for design in (np.ones((m, 1)), steps):
            # Fit the cycle with the changes, segment what is left, and once more: a
            # change fitted as part of the cycle (or the reverse) is put right.
            for _ in range(3):
                full = np.column_stack([design, cycle])
                coef, *_ = np.linalg.lstsq(full, y, rcond=None)
                rest = y - cycle @ coef[design.shape[1] :]
                raw = _binseg(rest[None, :], None, np.array([pen * opts.screen_fraction]),
                              opts.min_size, opts.max_changes)[0]  # fmt: skip
                sw, swy = _prefix(rest[None, :], None)
                alt = _refine(sw[0], swy[0], raw, pen, opts.min_size, m, opts.min_effect)
                alt, alt_trends = _collapse_trends(rest, alt, pen, opts.min_size)
                design = _design(m, alt, alt_trends)
                cost = _rss(y, np.column_stack([design, cycle]))
                cost += pen * (len(alt) + len(alt_trends) + 2)
                if cost < best_cost:
                    best_cost, best = cost, (alt, alt_trends)
    return best


def detect_block(values: npt.ArrayLike, **options: Any) -> list[RowDetection]:
    """Prepare and segment a block ``(n_signals, n_samples)`` on a regular grid."""
    opts = DetectOptions.from_kwargs(**options)
    return detect_prepared(prepare(values), opts)


def change_points(values: npt.ArrayLike, **options: Any) -> list[int]:
    """Indices where a new segment of one series starts (0 excluded); defaults need no tuning.

    NaN gaps are bridged, spikes ignored, and a series too short to hold two segments of
    ``min_size`` samples has no change points. Options are those of ``DetectOptions``.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise DetectionError(f"values: expected a 1-D series, got shape {arr.shape}")
    opts = DetectOptions.from_kwargs(**options)
    if arr.size == 0 or np.isnan(arr).all():
        return []
    row = detect_prepared(prepare(arr), opts)[0]
    return sorted({cp.index for cp in row.changes})
