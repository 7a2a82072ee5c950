"""Greedy binary segmentation, vectorised across rows: step 4 of change-point detection.

Pure numpy on prefix sums: `_binseg` splits every row at its best gain until the penalty
stops it, `_refine` re-locates and prunes change points, `_collapse_trends` turns a
staircase of same-direction shifts into one ramp. detect.py drives these; see its docstring
for the method and its tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _prefix(y: FloatArray, w: FloatArray | None) -> tuple[FloatArray, FloatArray]:
    """Prefix sums of the weights and weighted values, with a leading zero column."""
    k, m = y.shape
    sw = np.zeros((k, m + 1))
    swy = np.zeros((k, m + 1))
    if w is None:
        sw[:, 1:] = np.arange(1, m + 1)
        np.cumsum(y, axis=1, out=swy[:, 1:])
    else:
        np.cumsum(w, axis=1, out=sw[:, 1:])
        np.cumsum(w * y, axis=1, out=swy[:, 1:])
    return sw, swy


def _whole_gain(y: FloatArray, min_size: int) -> FloatArray:
    """Largest single-split gain over the whole series for every row (the screening pass)."""
    k, m = y.shape
    if m < 2 * min_size:
        return np.zeros(k)
    s = np.cumsum(y, axis=1)
    total = s[:, -1:]
    t = np.arange(min_size, m - min_size + 1, dtype=np.float64)
    left = s[:, min_size - 1 : m - min_size]
    diff = left - total * (t / m)
    gain = diff * diff * (m / (t * (m - t)))
    return np.asarray(gain.max(axis=1))


def _binseg(
    y: FloatArray, w: FloatArray | None, pen: FloatArray, min_size: int, max_changes: int
) -> list[list[int]]:
    """Greedy binary segmentation vectorised across rows; one split per row per round."""
    k, m = y.shape
    found: list[list[int]] = [[] for _ in range(k)]
    if m < 2 * min_size or k == 0:
        return found
    sw, swy = _prefix(y, w)
    bounds = np.zeros((k, m + 1), dtype=bool)
    bounds[:, 0] = True
    bounds[:, m] = True
    idx = np.arange(m + 1)
    active = np.arange(k)
    for _ in range(max_changes):
        if active.size == 0:
            break
        b = bounds[active]
        left = np.maximum.accumulate(np.where(b, idx, 0), axis=1)
        right = np.minimum.accumulate(np.where(b, idx, m)[:, ::-1], axis=1)[:, ::-1]
        ok = ((idx - left) >= min_size) & ((right - idx) >= min_size) & ~b
        a_w = np.take_along_axis(sw[active], left, axis=1)
        a_y = np.take_along_axis(swy[active], left, axis=1)
        b_w = np.take_along_axis(sw[active], right, axis=1)
        b_y = np.take_along_axis(swy[active], right, axis=1)
        t_w, t_y = sw[active], swy[active]
        with np.errstate(divide="ignore", invalid="ignore"):
            lw, ly = t_w - a_w, t_y - a_y
            rw, ry = b_w - t_w, b_y - t_y
            gain = ly * ly / lw + ry * ry / rw - (ly + ry) ** 2 / (lw + rw)
        gain = np.where(ok, np.nan_to_num(gain, nan=-1.0), -1.0)
        best = gain.argmax(axis=1)
        best_gain = gain[np.arange(active.size), best]
        accept = best_gain > pen[active]
        for row, t in zip(active[accept], best[accept], strict=True):
            found[row].append(int(t))
            bounds[row, t] = True
        active = active[accept]
    for row in found:
        row.sort()
    return found


def _segment_gain(sw: FloatArray, swy: FloatArray, a: int, t: int, b: int) -> float:
    lw, ly = sw[t] - sw[a], swy[t] - swy[a]
    rw, ry = sw[b] - sw[t], swy[b] - swy[t]
    if lw <= 0 or rw <= 0:
        return 0.0
    return float(ly * ly / lw + ry * ry / rw - (ly + ry) ** 2 / (lw + rw))


def _best_split(sw: FloatArray, swy: FloatArray, a: int, b: int, min_size: int) -> int | None:
    if b - a < 2 * min_size:
        return None
    t = np.arange(a + min_size, b - min_size + 1)
    lw, ly = sw[t] - sw[a], swy[t] - swy[a]
    rw, ry = sw[b] - sw[t], swy[b] - swy[t]
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.nan_to_num(ly * ly / lw + ry * ry / rw, nan=-1.0)
    return int(t[int(gain.argmax())])


def _shift(sw: FloatArray, swy: FloatArray, a: int, t: int, b: int) -> float:
    lw, rw = sw[t] - sw[a], sw[b] - sw[t]
    if lw <= 0 or rw <= 0:
        return 0.0
    return float(abs((swy[b] - swy[t]) / rw - (swy[t] - swy[a]) / lw))


def _refine(
    sw: FloatArray,
    swy: FloatArray,
    cps: list[int],
    pen: float,
    min_size: int,
    m: int,
    min_shift: float = 0.0,
) -> list[int]:
    """Re-locate each change between its neighbours; drop those that do not pay ``pen``.

    A change must also move the mean by ``min_shift`` (noise units): a long, quiet segment
    makes a tiny shift significant without making it worth an operator's attention.
    """
    cps = sorted(cps)
    for _ in range(3):
        changed = False
        for i in range(len(cps)):
            a = cps[i - 1] if i > 0 else 0
            b = cps[i + 1] if i + 1 < len(cps) else m
            t = _best_split(sw, swy, a, b, min_size)
            if t is not None and t != cps[i]:
                cps[i] = t
                changed = True
        while cps:
            bounds = [0, *cps, m]
            worth = []
            for i in range(len(cps)):
                a, t, b = bounds[i], bounds[i + 1], bounds[i + 2]
                ratio = _segment_gain(sw, swy, a, t, b) / pen
                if min_shift > 0:
                    ratio = min(ratio, _shift(sw, swy, a, t, b) / min_shift)
                worth.append(ratio)
            weakest = int(np.argmin(worth))
            if worth[weakest] >= 1.0:
                break
            del cps[weakest]
            changed = True
        if not changed:
            break
    return cps


@dataclass(frozen=True)
class _Trend:
    index: int  # where the slope starts (the kink)
    end: int  # end of the span the ramp was fitted on
    slope: float  # noise units per sample


def _hinge(y: FloatArray, min_size: int) -> tuple[float, int, float]:
    """Best continuous "flat, then straight ramp" fit of a span: (rss, kink, slope)."""
    n = y.size
    t = np.arange(n, dtype=np.float64)
    sy, syy = float(y.sum()), float((y * y).sum())
    suf_y = np.cumsum(y[::-1])[::-1]
    suf_ty = np.cumsum((t * y)[::-1])[::-1]
    kk = np.arange(0, n - min_size + 1)
    j = (n - 1 - kk).astype(np.float64)
    h1 = j * (j + 1) / 2
    h2 = j * (j + 1) * (2 * j + 1) / 6
    hy = suf_ty[kk] - kk * suf_y[kk]
    var_h = h2 - h1 * h1 / n
    cov = hy - h1 * sy / n
    with np.errstate(divide="ignore", invalid="ignore"):
        rss = syy - sy * sy / n - np.where(var_h > 0, cov * cov / var_h, 0.0)
        slope = np.where(var_h > 0, cov / var_h, 0.0)
    best = int(np.argmin(rss))
    return float(rss[best]), best, float(slope[best])


def _steps_rss(y: FloatArray, cps: list[int]) -> float:
    total = 0.0
    for a, b in _segments_of(cps, y.size):
        seg = y[a:b]
        total += float(((seg - seg.mean()) ** 2).sum())
    return total


def _collapse_trends(
    y: FloatArray, cps: list[int], pen: float, min_size: int
) -> tuple[list[int], list[_Trend]]:
    """Replace staircases (runs of same-direction shifts) by one ramp where that fits better.

    Mean-shift segmentation carves a ramp (a leak, a slow build-up) into several steps; a
    continuous "flat, then ramp" model with one kink is cheaper when the data agree, and the
    kink is where the change really began.
    """
    if len(cps) < 2:
        return cps, []
    bounds = [0, *cps, y.size]
    signs = [
        np.sign(y[bounds[i + 1] : bounds[i + 2]].mean() - y[bounds[i] : bounds[i + 1]].mean())
        for i in range(len(cps))
    ]
    kept: list[int] = []
    trends: list[_Trend] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and signs[j + 1] == signs[i]:
            j += 1
        run = cps[i : j + 1]
        if len(run) >= 2:
            a, b = bounds[i], bounds[j + 2]
            seg = y[a:b]
            rss_h, kink, slope = _hinge(seg, min_size)
            rss_s = _steps_rss(seg, [c - a for c in run])
            pen_h = pen if kink >= min_size else pen / 2
            if rss_h + pen_h <= rss_s + pen * len(run):
                if kink >= min_size:  # otherwise a straight line across the span: no new change
                    trends.append(_Trend(a + kink, b, slope))
                i = j + 1
                continue
        kept.extend(run)
        i = j + 1
    return kept, trends


def _segments_of(cps: list[int], m: int) -> list[tuple[int, int]]:
    bounds = [0, *cps, m]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
