"""Seeded generators of realistic signals with known answers, for tests, benchmarks and the demo.

Two things are generated:

- ``generate_series`` / ``generate_labelled``: single series with level shifts, trend
  changes and variance changes, disturbed by what is *not* a change (spikes, daily
  seasonality, autocorrelated and heavy-tailed noise, NaN gaps), each labelled by several
  simulated annotators who agree on the changes but not to the sample, and who sometimes
  miss a subtle one. ``evaluate.py`` scores detectors on them.
- ``generate_incident``: a block of N signals around an alert, where a few planted culprits
  change shortly before the alert, each followed by correlated signals, while the rest is
  noise, seasonality and decoys (old changes, spikes at the alert, gaps, constant, dead and
  short signals). The alerting signal itself is returned separately as the trigger.

Everything is a function of the seed, so a test can state exactly what must be found.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CHANGE_KINDS = ("level", "trend", "variance")
_SERVICES = (
    "edge",
    "playback",
    "license",
    "manifest",
    "cache",
    "origin",
    "auth",
    "search",
    "ratings",
    "billing",
    "profile",
    "gateway",
)
_METRICS = (
    "latency_p99",
    "error_rate",
    "rps",
    "cpu",
    "mem_used",
    "gc_pause",
    "queue_depth",
    "hit_ratio",
    "retries",
    "tcp_resets",
)


@dataclass
class LabelledSeries:
    """One generated series and what the annotators marked as its change points."""

    values: FloatArray
    truth: list[int]
    kinds: list[str]
    annotations: list[list[int]]
    history: FloatArray  # the same window one seasonal period earlier, without the changes
    seasonal: bool = False
    name: str = ""


@dataclass
class Incident:
    """A generated alert: the block to analyse and which signals were planted."""

    timestamps: IntArray
    values: FloatArray  # (n_signals, n_samples)
    history: FloatArray  # same shape: the window one day earlier
    names: list[str]
    alert_time: int
    trigger: FloatArray
    trigger_name: str
    culprits: list[int]
    followers: dict[int, list[int]]
    decoys: list[int]
    proximity: FloatArray
    expected_verdicts: dict[int, str] = field(default_factory=dict)


def _noise(rng: np.random.Generator, n: int, sigma: float) -> FloatArray:
    """White, autocorrelated or heavy-tailed noise with marginal scale close to ``sigma``."""
    style = rng.choice(["white", "ar", "heavy"], p=[0.5, 0.3, 0.2])
    if style == "heavy":
        return np.asarray(rng.standard_t(5, n) * sigma * math.sqrt(3 / 5))
    e = rng.normal(0.0, sigma, n)
    if style == "white":
        return e
    phi = float(rng.uniform(0.2, 0.5))
    out = np.empty(n)
    acc = 0.0
    scale = math.sqrt(1 - phi * phi)
    for i in range(n):
        acc = phi * acc + scale * e[i]
        out[i] = acc
    return out


def _positions(rng: np.random.Generator, n: int, count: int, spacing: int) -> list[int]:
    """``count`` change positions at least ``spacing`` apart and from both ends."""
    for _ in range(100):
        pos = sorted(int(p) for p in rng.integers(spacing, n - spacing, count))
        if all(b - a >= spacing for a, b in itertools.pairwise(pos)):
            return pos
    return []


FLAT_KINDS = ("idle", "stopped", "saturated")


def generate_series(
    seed: int,
    n: int = 720,
    *,
    period: int | None = None,
    annotators: int = 5,
    max_changes: int = 4,
    flat: str | None = None,
) -> LabelledSeries:
    """One labelled series of ``n`` samples; ``period`` is the seasonal period in samples.

    ``flat`` adds an exactly flat stretch, as real monitoring data has them: ``idle`` (a rate
    of exactly 0 before it starts), ``stopped`` (it drops to exactly 0 for a while, then comes
    back) or ``saturated`` (a gauge pinned at its maximum for a while). Both ends of the
    stretch are changes.
    """
    if n < 24:
        raise ValueError(f"n: must be at least 24 samples, got {n}")
    if flat is not None and flat not in FLAT_KINDS:
        raise ValueError(f"flat: must be one of {', '.join(FLAT_KINDS)}, got {flat!r}")
    rng = np.random.default_rng(seed)
    period = period or n
    level = float(rng.uniform(0, 100))
    sigma = float(rng.uniform(0.5, 5.0))
    t = np.arange(n, dtype=np.float64)
    count = int(rng.choice(np.arange(max_changes + 1), p=_change_count_weights(max_changes)))
    spacing = 40 if n >= 200 else max(8, n // 5)
    if n < 200:
        count = min(count, max(0, n // spacing - 2))
    truth = _positions(rng, n, count, spacing=spacing)
    kinds = [str(rng.choice(CHANGE_KINDS, p=[0.6, 0.2, 0.2])) for _ in truth]
    mean = np.full(n, level)
    scale = np.ones(n)
    for pos, kind in zip(truth, kinds, strict=True):
        sign = 1.0 if rng.random() < 0.5 else -1.0
        if kind == "level":
            mean[pos:] += sign * rng.uniform(2.5, 8.0) * sigma
        elif kind == "trend":
            rise = sign * rng.uniform(6.0, 14.0) * sigma  # over 120 samples, then on
            mean[pos:] += rise * (t[pos:] - pos) / min(120.0, max(n / 3.0, 20.0))
        else:
            factor = rng.uniform(2.5, 4.0)
            scale[pos:] *= factor if rng.random() < 0.6 else 1.0 / factor
    seasonal_flag = bool(rng.random() < 0.4)
    season = np.zeros(n)
    if seasonal_flag:
        amp = rng.uniform(2.0, 8.0) * sigma
        phase = rng.uniform(0, 2 * math.pi)
        season = amp * np.sin(2 * math.pi * t / period + phase)
        season += 0.3 * amp * np.sin(4 * math.pi * t / period + 2 * phase)
    values = mean + season + _noise(rng, n, sigma) * scale
    history = level + season + _noise(rng, n, sigma)
    _add_spikes(rng, values, sigma, forbidden=truth)
    if rng.random() < 0.3:
        if n >= 200:
            start = int(rng.integers(10, n - 40))
            values[start : start + int(rng.integers(3, 25))] = np.nan
        else:  # a short series loses a sample or two, not a segment
            start = int(rng.integers(3, n - 5))
            values[start : start + int(rng.integers(1, 3))] = np.nan
    if flat is not None:
        values, truth, kinds = _flatten(rng, values, truth, kinds, flat, sigma, spacing)
    annotations = _annotate(rng, truth, kinds, annotators)
    name = f"s{seed}" if flat is None else f"s{seed}-{flat}"
    return LabelledSeries(values, truth, kinds, annotations, history, seasonal_flag, name)


def _flatten(
    rng: np.random.Generator,
    values: FloatArray,
    truth: list[int],
    kinds: list[str],
    flat: str,
    sigma: float,
    spacing: int,
) -> tuple[FloatArray, list[int], list[str]]:
    """Make one stretch exactly flat; its ends replace the planted changes they come near."""
    n = values.size
    values = values.copy()
    if flat == "idle":  # nothing before the service starts, then its usual noisy level
        end = int(rng.integers(max(spacing, n // 6), max(spacing + 1, n // 3)))
        start = 0
        values[:end] = 0.0
        values[end:] += max(0.0, 8.0 * sigma - float(np.nanmin(values[end:])))  # off zero
    else:
        width = int(rng.integers(spacing, max(spacing + 1, n // 4)))
        start = int(rng.integers(spacing, max(spacing + 1, n - spacing - width)))
        end = start + width
        if flat == "stopped":
            values[start:end] = 0.0
            values += max(0.0, 8.0 * sigma - float(np.nanmin(np.r_[values[:start], values[end:]])))
            values[start:end] = 0.0
        else:  # saturated: pinned a few noise units above the usual level
            values[start:end] = float(np.nanmax(values)) + float(rng.uniform(3.0, 8.0)) * sigma
    ends = [p for p in (start, end) if 0 < p < n]
    keep = [
        (p, k)
        for p, k in zip(truth, kinds, strict=True)
        if not (start - spacing < p < end + spacing)
    ]
    merged = sorted([*keep, *((p, "level") for p in ends)])
    return values, [p for p, _ in merged], [k for _, k in merged]


def _change_count_weights(max_changes: int) -> FloatArray:
    w = np.array([1.0, 3.0, 3.0, 2.0, 1.0][: max_changes + 1] + [1.0] * max(0, max_changes - 4))
    return np.asarray(w / w.sum())


def _add_spikes(
    rng: np.random.Generator, values: FloatArray, sigma: float, forbidden: list[int]
) -> None:
    """Short excursions (one or two samples) that no annotator calls a change."""
    n = values.size
    for _ in range(int(rng.poisson(2.0))):
        pos = int(rng.integers(3, n - 3))
        if any(abs(pos - f) < 4 for f in forbidden):
            continue
        width = int(rng.integers(1, 3))
        values[pos : pos + width] += (1 if rng.random() < 0.7 else -1) * rng.uniform(6, 15) * sigma


def _annotate(
    rng: np.random.Generator, truth: list[int], kinds: list[str], annotators: int
) -> list[list[int]]:
    """Each annotator marks most changes, a few samples off; trends and variance are fuzzier."""
    out: list[list[int]] = []
    for _ in range(annotators):
        marks: list[int] = []
        for pos, kind in zip(truth, kinds, strict=True):
            miss = 0.03 if kind == "level" else 0.12
            if rng.random() < miss:
                continue
            jitter = {"level": 1, "trend": 4, "variance": 3}[kind]
            marks.append(pos + int(rng.integers(-jitter, jitter + 1)))
        out.append(sorted(set(marks)))
    return out


def generate_labelled(count: int, seed: int = 0, n: int = 720) -> list[LabelledSeries]:
    """A reproducible data set of ``count`` labelled series."""
    return [generate_series(seed * 100_003 + i, n) for i in range(count)]


def generate_operations(count: int, seed: int = 0) -> list[LabelledSeries]:
    """A reproducible mix of the series users bring from monitoring, for the accuracy goal.

    Lengths: a quarter short (30 to 80 samples), half of 720, a quarter long (2,000 to
    5,000). A third carry an exactly flat stretch (idle, stopped or saturated); the rest
    have level, trend and variance changes, seasonality, spikes, gaps and AR or heavy-tailed
    noise as ``generate_series`` makes them.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        size = rng.random()
        n = int(rng.integers(30, 81)) if size < 0.25 else 720 if size < 0.75 else 0
        if n == 0:
            n = int(rng.integers(2000, 5001))
        flat = str(rng.choice(FLAT_KINDS)) if rng.random() < 1 / 3 else None
        period = n if n <= 720 else 1440
        out.append(generate_series(seed * 100_003 + i, n, period=period, flat=flat))
    return out


def _names(rng: np.random.Generator, count: int) -> list[str]:
    names = []
    for i in range(count):
        service = _SERVICES[int(rng.integers(len(_SERVICES)))]
        metric = _METRICS[int(rng.integers(len(_METRICS)))]
        names.append(f"{service}-{i // 40:03d}.{metric}#{i}")
    return names


def generate_incident(
    n_signals: int = 2000,
    n_samples: int = 1440,
    *,
    step: int = 60,
    seed: int = 0,
    n_culprits: int = 3,
    followers_per_culprit: int = 4,
    after_alert: int = 30,
) -> Incident:
    """A block of signals around an alert with planted culprits and their followers.

    The window covers ``n_samples`` samples of ``step`` seconds and ends ``after_alert``
    samples after the alert. Culprits shift their level 3 to 12 samples before the alert
    (one of them appears from nothing instead); each follower repeats its culprit's move
    1 to 4 samples later, scaled and possibly mirrored; the trigger reacts to every culprit.
    Half of the other signals follow a daily cycle (``history`` holds the previous day).
    """
    planted = n_culprits * (1 + followers_per_culprit)
    if n_signals < planted + 10:
        raise ValueError(f"n_signals: need at least {planted + 10} for this many culprits")
    if n_samples < 200:
        raise ValueError(f"n_samples: must be at least 200, got {n_samples}")
    rng = np.random.default_rng(seed)
    start = 1_767_225_600 + int(rng.integers(0, 365)) * 86_400  # some day of 2026, UTC
    timestamps = start + step * np.arange(n_samples, dtype=np.int64)
    alert_idx = n_samples - after_alert
    alert_time = int(timestamps[alert_idx])
    day = 86_400 / step
    t = np.arange(n_samples, dtype=np.float64)

    levels = rng.uniform(5, 500, n_signals)
    sigmas = levels * rng.uniform(0.01, 0.06, n_signals)
    seasonal = rng.random(n_signals) < 0.5
    amp = np.where(seasonal, rng.uniform(3, 12, n_signals) * sigmas, 0.0)
    phase = rng.uniform(0, 2 * math.pi, n_signals)
    season = amp[:, None] * np.sin(2 * math.pi * (t[None, :] + start / step) / day + phase[:, None])
    noise = rng.normal(0.0, 1.0, (n_signals, n_samples)) * sigmas[:, None]
    values = levels[:, None] + season + noise
    history = levels[:, None] + season + rng.normal(0, 1, (n_signals, n_samples)) * sigmas[:, None]

    order = rng.permutation(n_signals)
    culprits = [int(i) for i in order[:n_culprits]]
    follower_rows = order[n_culprits:planted].reshape(n_culprits, followers_per_culprit)
    followers = {c: [int(f) for f in fs] for c, fs in zip(culprits, follower_rows, strict=True)}
    expected: dict[int, str] = {}
    trigger = 2.0 + rng.normal(0, 0.05, n_samples)
    for k, c in enumerate(culprits):
        onset = alert_idx - int(rng.integers(3, 13))
        # Each culprit moves in its own way after the change (a step with a wandering
        # overshoot), and its followers repeat that movement a little later.
        wander = np.cumsum(rng.normal(0, 0.06, n_samples)) * (t >= onset)
        fingerprint = (t >= onset) * (1.0 + wander - wander[onset])
        if k == n_culprits - 1 and n_culprits > 1:
            values[c, :onset] = np.nan  # a new signal: e.g. an error counter that never fired
            history[c] = np.nan
            expected[c] = "appeared"
        else:
            sign = 1.0 if rng.random() < 0.5 else -1.0
            values[c] += sign * rng.uniform(5, 10) * sigmas[c] * fingerprint
            expected[c] = "changed"
        trigger += rng.uniform(1.0, 3.0) * (t >= onset + int(rng.integers(1, 3)))
        for f in followers[c]:
            lag = int(rng.integers(1, 5))
            sign = 1.0 if rng.random() < 0.7 else -1.0
            shifted = np.r_[np.zeros(lag), fingerprint[:-lag]]
            values[f] += sign * rng.uniform(5, 12) * sigmas[f] * shifted
            expected[f] = "changed"

    rest = [int(i) for i in order[planted:]]
    n_decoys = max(1, len(rest) // 20)
    decoys = rest[:n_decoys]
    for d in decoys:  # genuine but old changes: hours before the alert
        pos = int(rng.integers(60, max(61, alert_idx - 240)))
        values[d, pos:] += (1 if rng.random() < 0.5 else -1) * rng.uniform(5, 10) * sigmas[d]
        expected[d] = "changed"
    cursor = n_decoys
    special = max(1, len(rest) // 100)
    for i in rest[cursor : cursor + special]:  # spikes right at the alert are not changes
        values[i, alert_idx - 2 : alert_idx] += rng.uniform(8, 15) * sigmas[i]
    cursor += special
    for i in rest[cursor : cursor + special]:
        values[i] = levels[i]
        history[i] = levels[i]
        expected[i] = "unchanged"
    cursor += special
    for i in rest[cursor : cursor + special]:
        values[i, : n_samples - 8] = np.nan
        expected[i] = "not_analysable"
    cursor += special
    for i in rest[cursor : cursor + special]:  # gaps in the middle of the day
        gap = int(rng.integers(60, max(61, n_samples - 300)))
        values[i, gap : gap + int(rng.integers(5, 60))] = np.nan
    trigger_values = trigger + rng.normal(0, 0.05, n_samples)
    proximity = rng.uniform(0.0, 1.0, n_signals)
    return Incident(
        timestamps=timestamps,
        values=values,
        history=history,
        names=_names(rng, n_signals),
        alert_time=alert_time,
        trigger=trigger_values,
        trigger_name="edge.play_errors.rate",
        culprits=culprits,
        followers=followers,
        decoys=decoys,
        proximity=proximity,
        expected_verdicts=expected,
    )
