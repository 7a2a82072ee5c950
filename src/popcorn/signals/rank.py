"""Alert analysis: narrow thousands of candidate signals down to a short, explained list.

Given an alert time (and, ideally, the alerting signal as the trigger), ``analyze_block``
looks at every candidate signal in the window and decides whether it appeared, disappeared,
changed (when, how much against its own noise, which way) or stayed the same, and how it
moves with the trigger around its change (Pearson and Spearman). Each signal then gets a
relevance score, and ``merge_results`` ranks the findings and groups the signals that
changed together into clusters, each led by the signal that moved first.

Everything per signal depends only on that signal, the trigger and the options, so a block
can be cut into row chunks (rq jobs on several machines) whose results, merged, are the
same as one big analysis: pass the trigger as an array to every chunk and ``index_offset``
so that indices stay global. Results are plain data (``to_dict``/``from_dict``) and carry
no reference to numpy, the database or Flask.

The score, in [0, 1], is ``timing * weighted mean(effect, correlation, proximity)``:

- timing is 1 for a change from ``lead_seconds`` before the onset (the trigger's first
  sizeable change, or the alert time without a trigger) to ``grace_seconds`` after the
  alert, and decays exponentially outside (faster after: a cause precedes its effect);
- effect is ``1 - exp(-effect_size / 4)``, 1 for a signal that appeared or disappeared;
- correlation is the larger of |Pearson| and |Spearman| with the trigger;
- proximity is the caller's weight in [0, 1] (closeness in the inventory).
Correlation and proximity count only when a trigger or proximities were given.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from popcorn.signals.detect import (
    BoolArray,
    ChangePoint,
    FloatArray,
    Prepared,
    RowDetection,
    _fill_gaps,
    detect_block,
    detect_prepared,
    prepare,
    regular_grid,
)
from popcorn.signals.findings import (
    _SHAPE_POINTS,
    INTERESTING,
    VERDICTS,
    AnalysisError,
    AnalysisOptions,
    AnalysisResult,
    Cluster,
    SignalFinding,
    _num,
    _when,
)

# --------------------------------------------------------------------------- analysis

__all__ = [
    "AnalysisError",
    "AnalysisOptions",
    "AnalysisResult",
    "analyze_block",
    "merge_results",
]


@dataclass
class _Context:
    grid: npt.NDArray[np.int64]
    step: int
    alert_time: int
    onset_time: int
    options: AnalysisOptions
    lead: float
    grace: float
    trigger: FloatArray | None
    has_proximity: bool
    seasonal: bool


def _as_block(values: npt.ArrayLike) -> FloatArray:
    block = np.asarray(values, dtype=np.float64)
    if block.ndim == 1:
        block = block[None, :]
    if block.ndim != 2:
        raise AnalysisError(f"values: expected (n_signals, n_samples), got shape {block.shape}")
    return block


def _baseline(history: npt.ArrayLike, shape: tuple[int, int]) -> FloatArray:
    """The expected values from earlier periods: the median over periods, gaps bridged."""
    hist = np.asarray(history, dtype=np.float64)
    if hist.ndim == 2:
        hist = hist[None]
    if hist.ndim != 3 or hist.shape[1:] != shape:
        raise AnalysisError(
            f"history: expected shape {shape} or (n_periods, *{shape}), got {np.shape(history)}"
        )
    if hist.shape[0] == 1:
        base = hist[0]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: no history
            base = np.nanmedian(hist, axis=0)
    if np.isinf(base).any():
        base = np.where(np.isinf(base), np.nan, base)
    # Gaps are bridged; rows without any history become zeros: compared with nothing.
    return _fill_gaps(base)[0]


def _remove_daily(prep: Prepared, grid: npt.NDArray[np.int64]) -> None:
    """Subtract each row's least-squares daily cycle (two harmonics) from the filled values.

    Without history this is the best guess of the daily pattern; a short change barely
    projects onto such smooth curves, so it survives the subtraction.
    """
    phase = 2 * math.pi * (grid % 86_400) / 86_400
    basis = np.column_stack(
        [np.ones_like(phase), np.cos(phase), np.sin(phase), np.cos(2 * phase), np.sin(2 * phase)]
    )
    coef = prep.values @ np.linalg.pinv(basis).T
    prep.values -= coef @ basis.T


def _onset(trigger: FloatArray | None, grid: npt.NDArray[np.int64], alert: int, lead: float) -> int:
    """When the trigger started to move: its first sizeable change in the lead-up to the alert."""
    if trigger is None or grid.size < 2:
        return alert
    step = int(grid[1] - grid[0])
    changes = [
        cp
        for cp in detect_block(trigger)[0].changes
        if alert - 2 * lead <= grid[cp.index] <= alert + 2 * step
    ]
    if not changes:
        return alert
    largest = max(cp.effect for cp in changes)
    return min(int(grid[cp.index]) for cp in changes if cp.effect >= 0.3 * largest)


def _timing(change_time: int, ctx: _Context) -> float:
    """1 from ``lead`` before the onset to ``grace`` after the alert, decaying outside.

    The decay is faster after the alert than before the onset: a cause precedes its effect.
    """
    start = min(ctx.onset_time, ctx.alert_time) - ctx.lead
    end = max(ctx.onset_time, ctx.alert_time) + ctx.grace
    if change_time < start:
        return math.exp((change_time - start) / max(ctx.lead, 1.0))
    if change_time > end:
        return math.exp(-(change_time - end) / max(ctx.grace, 1.0))
    return 1.0


def _correlations(
    x: FloatArray, trigger: FloatArray, centres: npt.NDArray[np.int64], w: int
) -> tuple[FloatArray, FloatArray]:
    """Pearson and Spearman of each row with the trigger over ``centre ± w`` samples."""
    k, m = x.shape
    if k == 0:
        return np.zeros(0), np.zeros(0)
    width = min(2 * w + 1, m)
    lo = np.clip(centres - w, 0, m - width)
    idx = lo[:, None] + np.arange(width)[None, :]
    a = np.take_along_axis(x, idx, axis=1)
    b = trigger[idx]

    def pearson(u: FloatArray, v: FloatArray) -> FloatArray:
        u = u - u.mean(axis=1, keepdims=True)
        v = v - v.mean(axis=1, keepdims=True)
        den = np.sqrt((u * u).sum(axis=1) * (v * v).sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 1e-12, (u * v).sum(axis=1) / den, np.nan)

    def ranks(u: FloatArray) -> FloatArray:
        # Average ranks, so that ties (flat stretches) do not invent an order.
        order = np.argsort(u, axis=1, kind="stable")
        srt = np.take_along_axis(u, order, axis=1)
        pos = np.arange(width, dtype=np.float64)[None, :].repeat(k, axis=0)
        new = np.ones_like(srt, dtype=bool)
        new[:, 1:] = srt[:, 1:] != srt[:, :-1]
        group = np.cumsum(new, axis=1) - 1
        out = np.empty_like(pos)
        for r in range(k):
            g = group[r]
            sums = np.bincount(g, weights=pos[r])
            counts = np.bincount(g)
            out[r, order[r]] = (sums / counts)[g]
        return out

    return pearson(a, b), pearson(ranks(a), ranks(b))


def _shapes(x: FloatArray, start: int) -> FloatArray:
    """Each row from ``start`` to the end, averaged down to a few points and standardised."""
    tail = x[:, start:]
    n = tail.shape[1]
    points = min(_SHAPE_POINTS, n)
    edges = np.linspace(0, n, points + 1).astype(int)
    sums = np.add.reduceat(tail, edges[:-1], axis=1)
    pooled = sums / np.diff(edges)[None, :]
    pooled -= pooled.mean(axis=1, keepdims=True)
    sd = pooled.std(axis=1, keepdims=True)
    return np.asarray(np.where(sd > 0, pooled / np.where(sd > 0, sd, 1.0), 0.0))


def _choose(
    changes: list[ChangePoint], grid: npt.NDArray[np.int64], ctx: _Context
) -> ChangePoint | None:
    """The change that best explains the alert: close to the onset and large."""
    best: ChangePoint | None = None
    best_value = -1.0
    for cp in changes:
        value = _timing(int(grid[cp.index]), ctx) * (1.0 - math.exp(-cp.effect / 4.0))
        if value > best_value:
            best, best_value = cp, value
    return best


def _score(
    finding: SignalFinding, effect_factor: float, ctx: _Context
) -> tuple[float, float, float | None]:
    """(score, timing, correlation) of an interesting finding."""
    opts = ctx.options
    assert finding.change_time is not None
    timing = _timing(finding.change_time, ctx)
    total = opts.effect_weight * effect_factor
    weight = opts.effect_weight
    corr: float | None = None
    if ctx.trigger is not None:
        values = [abs(v) for v in (finding.pearson, finding.spearman) if v is not None]
        corr = max(values) if values else 0.0
        total += opts.correlation_weight * corr
        weight += opts.correlation_weight
    if ctx.has_proximity and finding.proximity is not None:
        total += opts.proximity_weight * finding.proximity
        weight += opts.proximity_weight
    return timing * total / weight if weight > 0 else 0.0, timing, corr


def _explain(
    finding: SignalFinding, cp: ChangePoint | None, corr: float | None, seasonal: bool
) -> str:
    parts: list[str] = []
    assert finding.offset_seconds is not None
    when = _when(finding.offset_seconds)
    if finding.verdict in ("appeared", "disappeared"):
        parts.append(f"{finding.verdict} {when}")
        if finding.after is not None and finding.verdict == "appeared":
            parts.append(f"now around {_num(finding.after)}")
    elif cp is not None and cp.kind == "variance":
        word = "noisier" if cp.delta > 1 else "quieter"
        parts.append(
            f"became {_num(cp.delta)}x {word} {when} (noise {_num(cp.before)} → {_num(cp.after)})"
        )
    elif cp is not None and finding.before is not None and finding.after is not None:
        change = finding.after - finding.before
        what = "started trending" if cp.kind == "trend" else "shifted"
        parts.append(
            f"{what} {cp.direction} {when}: {_num(finding.before)} → {_num(finding.after)} "
            f"({'+' if change >= 0 else ''}{_num(change)}, {cp.effect:.1f} sd"
            f"{', daily pattern removed' if seasonal else ''})"
        )
    if corr is not None:
        parts.append(
            f"moves with the trigger (Pearson {finding.pearson or 0:+.2f}, "
            f"Spearman {finding.spearman or 0:+.2f})"
            if corr >= 0.5
            else f"does not follow the trigger (|r| {corr:.2f})"
        )
    if finding.proximity is not None:
        parts.append(f"proximity {finding.proximity:.2f}")
    extra = len(finding.change_points) - 1
    if extra > 0:
        parts.append(f"{extra} other change{'s' if extra > 1 else ''} in the window")
    return "; ".join(parts) + f"; score {finding.score:.2f}"


def _presence(
    prep: Prepared, row: int, opts: AnalysisOptions, m: int
) -> tuple[str | None, int | None, str]:
    """(verdict, index, reason) from where the signal has data at all."""
    n_valid = int(prep.n_valid[row])
    if n_valid < opts.min_samples:
        return "not_analysable", None, f"only {n_valid} samples with data (need {opts.min_samples})"
    first, last = int(prep.first_valid[row]), int(prep.last_valid[row])
    span = last - first + 1
    if (span - n_valid) / span > opts.max_gap_fraction:
        share = 100 * (span - n_valid) / span
        return "not_analysable", None, f"{share:.0f}% of its samples are missing"
    edge = max(2 * opts.detect.min_size, int(opts.appear_fraction * m))
    if first >= edge:
        return "appeared", first, ""
    if m - 1 - last >= edge:
        return "disappeared", last + 1, ""
    return None, None, ""


def analyze_block(
    timestamps: npt.ArrayLike,
    values: npt.ArrayLike,
    alert_time: int,
    trigger: npt.ArrayLike | int | None = None,
    names: Sequence[str] | None = None,
    options: AnalysisOptions | Mapping[str, Any] | None = None,
    proximity: npt.ArrayLike | None = None,
    history: npt.ArrayLike | None = None,
    *,
    index_offset: int = 0,
    trigger_name: str | None = None,
) -> AnalysisResult:
    """Analyse a block of signals ``(n_signals, n_samples)`` around ``alert_time``.

    ``timestamps`` (seconds) are shared by all rows and may be irregular (the block is put on
    a regular grid first). ``trigger`` is the alerting signal: its values on the same
    timestamps, or the row index of it in ``values``. ``history`` holds the same window one
    day or week earlier (or several, stacked on a first axis) and removes seasonality.
    ``proximity`` gives each signal a weight in [0, 1] for its closeness to the alerting entity.
    """
    started = time.perf_counter()
    opts = options if isinstance(options, AnalysisOptions) else AnalysisOptions.from_dict(options)
    ts = np.asarray(timestamps)
    if ts.ndim != 1 or ts.size == 0:
        raise AnalysisError("timestamps: expected a non-empty 1-D array of seconds")
    if not np.issubdtype(ts.dtype, np.number) or not np.isfinite(ts.astype(np.float64)).all():
        raise AnalysisError("timestamps: must be finite numbers of seconds")
    block = _as_block(values)
    n, raw_m = block.shape
    if raw_m != ts.size:
        raise AnalysisError(f"values: has {raw_m} samples per signal, timestamps has {ts.size}")
    if names is not None and len(names) != n:
        raise AnalysisError(f"names: expected {n} names, got {len(names)}")
    if not isinstance(alert_time, int | np.integer):
        raise AnalysisError(f"alert_time: expected integer seconds, got {alert_time!r}")
    alert = int(alert_time)

    trigger_row: int | None = None
    trig: FloatArray | None = None
    if isinstance(trigger, int | np.integer) and not isinstance(trigger, bool):
        if not 0 <= int(trigger) < n:
            raise AnalysisError(f"trigger: row {trigger} is not in the block of {n} signals")
        trigger_row = int(trigger)
    elif trigger is not None:
        trig = np.asarray(trigger, dtype=np.float64)
        if trig.shape != (raw_m,):
            raise AnalysisError(f"trigger: expected {raw_m} values, got shape {trig.shape}")
    prox: FloatArray | None = None
    if proximity is not None:
        prox = np.asarray(proximity, dtype=np.float64)
        if prox.shape != (n,) or not np.all((prox >= 0) & (prox <= 1)):
            raise AnalysisError(f"proximity: expected {n} weights between 0 and 1")
    if opts.seasonality == "history" and history is None:
        raise AnalysisError("history: required when seasonality is 'history'")
    hist_block: FloatArray | None = None
    if history is not None and opts.seasonality in ("auto", "history"):
        hist = np.asarray(history, dtype=np.float64)
        if hist.shape[-1] != raw_m or hist.size % (n * raw_m):
            raise AnalysisError(f"history: expected ({n}, {raw_m}) or (n_periods, {n}, {raw_m})")
        hist_block = hist.reshape(-1, raw_m)

    ts64 = ts.astype(np.int64)
    grid, block = regular_grid(ts64, block)
    m = grid.size
    step = int(grid[1] - grid[0]) if m > 1 else 1
    trig_values: FloatArray | None = None
    if trig is not None:
        trig_values = regular_grid(ts64, trig)[1]
    elif trigger_row is not None:
        trig_values = block[trigger_row].copy()
    if trig_values is not None:
        trig_values = _fill_gaps(trig_values[None, :])[0][0]
    analysed = block
    if hist_block is not None:
        periods = hist_block.shape[0] // n
        hist_grid = regular_grid(ts64, hist_block)[1]
        analysed = block - _baseline(hist_grid.reshape(periods, n, m), (n, m))
        adjustment = "history"
    elif opts.seasonality == "detrend" or (
        opts.seasonality == "auto" and m > 1 and grid[-1] - grid[0] >= 12 * 3600
    ):
        adjustment = "detrend"
    else:
        adjustment = "none"
    seasonal = adjustment != "none"

    lead = opts.lead_seconds if opts.lead_seconds is not None else max(900.0, 10.0 * step)
    grace = opts.grace_seconds if opts.grace_seconds is not None else max(120.0, 2.0 * step)
    onset = _onset(trig_values, grid, alert, lead) if m >= opts.min_samples else alert
    ctx = _Context(
        grid, step, alert, onset, opts, lead, grace, trig_values, prox is not None, seasonal
    )

    prep = prepare(analysed, copy=analysed is block)
    if adjustment == "detrend":
        _remove_daily(prep, grid)
    presence = [_presence(prep, r, opts, m) for r in range(n)]
    skip = np.array([p[0] == "not_analysable" for p in presence], dtype=bool)
    prep.constant = prep.constant | skip
    # Seasonality is this analysis's own business (history or the daily fit above); the
    # per-row cycle check of single-series detection would cost seconds on 10,000 rows.
    detections = detect_prepared(prep, replace(opts.detect, seasonal=False))
    findings = _findings(block, prep, detections, presence, ctx, names, prox, index_offset)
    if trigger_row is not None:
        own = findings[trigger_row]
        own.explanation = "the alerting signal itself; " + own.explanation
    part = AnalysisResult(
        alert_time=alert,
        onset_time=onset,
        start=int(grid[0]),
        end=int(grid[-1]) + step,
        step=step,
        n_signals=n,
        findings=findings,
        trigger_name=trigger_name,
        options=opts.to_dict(),
    )
    result = merge_results([part])
    result.elapsed_seconds = time.perf_counter() - started
    return result


def _levels(
    raw: FloatArray, cp: ChangePoint, changes: list[ChangePoint], opts: AnalysisOptions
) -> tuple[float, float]:
    """What an operator sees on the graph: the level just before and just after the change.

    Means of the raw (not seasonally adjusted) signal over at most ``correlation_window``
    samples on each side, stopping at the neighbouring changes; for a trend, the level at
    the end of the ramp.
    """
    w = opts.correlation_window
    others = sorted(c.index for c in changes if c.index != cp.index)
    prev = max([c for c in others if c < cp.index], default=0)
    nxt = min([c for c in others if c > cp.index], default=raw.size)
    before = float(raw[max(prev, cp.index - w) : cp.index].mean())
    if cp.kind == "trend":
        after = float(raw[max(cp.index, nxt - 5) : nxt].mean())
    else:
        after = float(raw[cp.index : min(nxt, cp.index + w)].mean())
    return before, after


def _findings(
    raw: FloatArray,
    prep: Prepared,
    detections: list[RowDetection],
    presence: list[tuple[str | None, int | None, str]],
    ctx: _Context,
    names: Sequence[str] | None,
    prox: FloatArray | None,
    index_offset: int,
) -> list[SignalFinding]:
    n, m = prep.values.shape
    grid = ctx.grid
    opts = ctx.options
    findings: list[SignalFinding] = []
    chosen: dict[int, tuple[ChangePoint | None, int]] = {}
    for r in range(n):
        verdict, at, reason = presence[r]
        det = detections[r]
        f = SignalFinding(
            index=index_offset + r,
            name=names[r] if names is not None else f"signal-{index_offset + r}",
            verdict="unchanged",
            noise=round(det.sigma, 6) if det.sigma > 0 else None,
            proximity=float(prox[r]) if prox is not None else None,
            change_points=[int(grid[c.index]) for c in det.changes],
        )
        findings.append(f)
        if verdict == "not_analysable":
            f.verdict = verdict
            f.explanation = f"not analysable: {reason}"
            f.change_points = []
            continue
        if verdict is not None and at is not None:
            f.verdict = verdict
            f.kind = "presence"
            chosen[r] = (None, at)
            continue
        if det.constant:
            f.explanation = f"unchanged: constant at {_num(float(prep.values[r, 0]))}"
            continue
        cp = _choose(det.changes, grid, ctx)
        if cp is None:
            f.explanation = (
                "unchanged: nothing stands out from its noise"
                if det.screen_stat < 1
                else "unchanged: only spikes or changes too small to matter"
            )
            continue
        f.verdict = "changed"
        chosen[r] = (cp, cp.index)
    rows = np.array(sorted(chosen), dtype=np.int64)
    if rows.size == 0:
        return findings
    centres = np.array([chosen[int(r)][1] for r in rows], dtype=np.int64)
    raw_rows = _fill_gaps(raw[rows])[0]
    series = prep.values[rows].copy()
    for j, r in enumerate(rows):
        # A signal that appears or disappears moves with the trigger through its presence.
        if findings[int(r)].verdict == "appeared":
            series[j] = np.arange(m) >= centres[j]
        elif findings[int(r)].verdict == "disappeared":
            series[j] = np.arange(m) < centres[j]
    pear: FloatArray | None = None
    spear: FloatArray | None = None
    if ctx.trigger is not None:
        pear, spear = _correlations(series, ctx.trigger, centres, opts.correlation_window)
    shape_start = int(np.searchsorted(grid, min(ctx.onset_time, ctx.alert_time) - ctx.lead))
    shape_start = min(max(shape_start, 0), max(m - 2 * opts.detect.min_size, 0))
    shapes = _shapes(series, shape_start)
    for j, r in enumerate(rows):
        f = findings[int(r)]
        cp, at = chosen[int(r)]
        f.change_time = int(grid[at])
        f.offset_seconds = f.change_time - ctx.alert_time
        if pear is not None and spear is not None:
            f.pearson = None if math.isnan(pear[j]) else round(float(pear[j]), 4)
            f.spearman = None if math.isnan(spear[j]) else round(float(spear[j]), 4)
        if cp is None:
            valid: BoolArray = prep.valid[int(r)]
            level = float(raw_rows[j][valid].mean())
            f.after = level if f.verdict == "appeared" else None
            f.before = level if f.verdict == "disappeared" else None
            effect_factor = 1.0
        else:
            f.kind = cp.kind
            f.effect_size = round(cp.effect, 3)
            f.direction = cp.direction
            if cp.kind == "variance":
                f.before, f.after, f.magnitude = cp.before, cp.after, cp.delta
            else:
                f.before, f.after = _levels(raw_rows[j], cp, detections[int(r)].changes, opts)
                f.magnitude = f.after - f.before
            effect_factor = 1.0 - math.exp(-cp.effect / 4.0)
        score, _, corr = _score(f, effect_factor, ctx)
        f.score = round(score, 4)
        f.shape = [round(float(v), 3) for v in shapes[j]]
        f.explanation = _explain(f, cp, corr, ctx.seasonal)
    return findings


# --------------------------------------------------------------------------- merge


def _cluster(findings: list[SignalFinding], tolerance: float, similarity: float) -> list[Cluster]:
    """Leader clustering: each finding joins the best-scored group it changed together with."""
    picked = [f for f in findings if f.verdict in INTERESTING and f.change_time is not None]
    picked.sort(key=lambda f: (-f.score, f.index))
    seeds: list[SignalFinding] = []
    seed_shapes: list[FloatArray] = []
    groups: list[list[SignalFinding]] = []
    for f in picked:
        shape = np.asarray(f.shape or [], dtype=np.float64)
        home = None
        for g, seed in enumerate(seeds):
            assert seed.change_time is not None and f.change_time is not None
            if abs(seed.change_time - f.change_time) > tolerance:
                continue
            other = seed_shapes[g]
            if shape.size and shape.size == other.size:
                r = float(np.dot(shape, other) / shape.size)
                if abs(r) < similarity:
                    continue
            home = g
            break
        if home is None:
            seeds.append(f)
            seed_shapes.append(shape)
            groups.append([f])
        else:
            groups[home].append(f)
    clusters: list[Cluster] = []
    for members in groups:
        lead = min(members, key=lambda f: (f.change_time or 0, -f.score, f.index))
        clusters.append(
            Cluster(
                id=0,
                members=[f.index for f in sorted(members, key=lambda f: (-f.score, f.index))],
                representative=lead.index,
                change_time=lead.change_time,
                score=max(f.score for f in members),
                explanation="",
            )
        )
    clusters.sort(key=lambda c: (-c.score, c.representative))
    by_index = {f.index: f for f in picked}
    for i, c in enumerate(clusters):
        c.id = i
        lead = by_index[c.representative]
        for idx in c.members:
            by_index[idx].cluster = i
        others = [by_index[idx].name for idx in c.members if idx != c.representative]
        when = _when(lead.offset_seconds or 0)
        head = f"{lead.name} {lead.verdict}"
        if lead.direction:
            head += f" ({lead.kind} {lead.direction}"
            head += f", {lead.effect_size:.1f} sd)" if lead.effect_size is not None else ")"
        if not others:
            c.explanation = f"{head} {when}, alone"
        else:
            shown = ", ".join(others[:3]) + (
                f" and {len(others) - 3} more" if len(others) > 3 else ""
            )
            c.explanation = (
                f"{len(c.members)} signals changed together; first {head} {when}, then {shown}"
            )
    return clusters


def merge_results(parts: Sequence[AnalysisResult | Mapping[str, Any]]) -> AnalysisResult:
    """Combine chunk results for the same alert, then rank and cluster all findings."""
    if not parts:
        raise AnalysisError("parts: nothing to merge")
    results = [p if isinstance(p, AnalysisResult) else AnalysisResult.from_dict(p) for p in parts]
    first = results[0]
    for other in results[1:]:
        for name in ("alert_time", "onset_time", "start", "end", "step"):
            if getattr(other, name) != getattr(first, name):
                raise AnalysisError(f"{name}: the parts were not analysed for the same alert")
    findings = [f for r in results for f in r.findings]
    seen: set[int] = set()
    for f in findings:
        if f.index in seen:
            raise AnalysisError(f"findings: signal index {f.index} appears in two parts")
        seen.add(f.index)
        f.cluster = None
    findings.sort(key=lambda f: (-f.score, f.index))
    options = AnalysisOptions.from_dict(first.options) if first.options else AnalysisOptions()
    tolerance = (
        options.cluster_seconds
        if options.cluster_seconds is not None
        else max(300.0, 5.0 * first.step)
    )
    clusters = _cluster(findings, tolerance, options.cluster_similarity)
    counts = {v: 0 for v in VERDICTS}
    for f in findings:
        counts[f.verdict] = counts.get(f.verdict, 0) + 1
    return AnalysisResult(
        alert_time=first.alert_time,
        onset_time=first.onset_time,
        start=first.start,
        end=first.end,
        step=first.step,
        n_signals=sum(r.n_signals for r in results),
        findings=findings,
        clusters=clusters,
        counts=counts,
        trigger_name=first.trigger_name,
        options=first.options,
        elapsed_seconds=sum(r.elapsed_seconds for r in results),
    )
