"""Demand forecasting per region, and predictive scaling ahead of the demand.

Instances take minutes to become ready, so capacity has to be asked for before the demand
arrives. Two predictors learn the daily and weekly rhythm of a regularly sampled history:

- a seasonal regression: least squares on a linear trend plus Fourier terms at the daily and
  weekly periods;
- a spectral predictor: the dominant frequencies of the detrended history (FFT over a window
  of whole weeks, or whole days, so the seasonal frequencies fall on exact bins), extended
  into the future.

The seasonal-naive forecast (same time last week, or yesterday) is the baseline every forecast
is judged against, and the third member of the ensemble: it keeps the forecast honest when the
history is too short (under two weeks) for the models to learn the weekly cycle. Each member
is backtested on the most recent horizons of the history (rolling origin, MAPE) and the
forecast is their combination weighted by inverse squared backtest error.
Both predictors work on the logarithm of demand by default, because demand swings in
proportion to its level: a busier week has proportionally taller evening peaks.

``plan_scaling`` turns a forecast into instance counts per interval and the few scaling
actions that provide them, each issued ``readiness`` ahead of the demand it serves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from popcorn.traffic.evacuate import figure_png
from popcorn.traffic.optimize import FloatArray, PlanInputError

DAY_SECONDS = 86_400
WEEK_SECONDS = 7 * DAY_SECONDS

IntArray = NDArray[np.int64]
Predictor = Callable[[FloatArray, float, int], FloatArray]


# --- inputs -----------------------------------------------------------------------------


def _check_history(history: ArrayLike, step_seconds: float) -> FloatArray:
    if not (isinstance(step_seconds, int | float) and step_seconds > 0):
        raise PlanInputError("step_seconds", "must be a number > 0")
    if DAY_SECONDS % step_seconds:
        raise PlanInputError("step_seconds", "must divide a day (e.g. 60, 300, 3600)")
    try:
        values = np.array(history, dtype=np.float64)
    except (TypeError, ValueError):
        raise PlanInputError("history", "is not a numeric series") from None
    if values.ndim != 1:
        raise PlanInputError("history", f"must be one series, got shape {values.shape}")
    day = int(DAY_SECONDS // step_seconds)
    if values.size < 2 * day:
        raise PlanInputError(
            "history", f"needs at least two days ({2 * day} samples), got {values.size}"
        )
    missing = ~np.isfinite(values)
    if missing.mean() > 0.2:
        raise PlanInputError("history", "more than 20% of the samples are missing")
    if (values[~missing] < 0).any():
        raise PlanInputError("history", "demand must be >= 0")
    if missing.any():
        # Short gaps (a scrape that failed) are bridged linearly; they carry no information.
        idx = np.arange(values.size)
        values[missing] = np.interp(idx[missing], idx[~missing], values[~missing])
    return values


def _check_horizon(horizon: int) -> int:
    if not isinstance(horizon, int | np.integer) or isinstance(horizon, bool) or horizon < 1:
        raise PlanInputError("horizon", "must be an integer >= 1")
    return int(horizon)


def _periods(step_seconds: float, n: int, cycles: int = 2) -> tuple[int, int | None]:
    """Samples per day, and per week once the history holds ``cycles`` weeks.

    Models need two weeks to tell the weekly shape from growth; repeating last week needs
    one week and a day.
    """
    day = int(DAY_SECONDS // step_seconds)
    week = 7 * day
    return day, (week if n >= cycles * week + (day if cycles == 1 else 0) else None)


# --- predictors -------------------------------------------------------------------------


def seasonal_naive(history: ArrayLike, step_seconds: float, horizon: int) -> FloatArray:
    """The same time one week earlier (one day earlier with less than 8 days of history).

    Beyond one season it repeats the last season.
    """
    values = _check_history(history, step_seconds)
    horizon = _check_horizon(horizon)
    day, week = _periods(step_seconds, values.size, cycles=1)
    season = values[-(week or day) :]
    return np.resize(season, horizon).astype(np.float64)


def _to_model_space(values: FloatArray, multiplicative: bool) -> tuple[FloatArray, float]:
    """Logs for multiplicative seasonality (demand swings in proportion to its level)."""
    if not multiplicative:
        return values, 0.0
    offset = 0.01 * float(values.mean()) or 1.0
    return np.log(values + offset), offset


def _from_model_space(values: FloatArray, offset: float, multiplicative: bool) -> FloatArray:
    out = np.exp(values) - offset if multiplicative else values
    return np.maximum(out, 0.0)


def seasonal_regression(
    history: ArrayLike,
    step_seconds: float,
    horizon: int,
    *,
    daily_harmonics: int = 10,
    multiplicative: bool = True,
) -> FloatArray:
    """Least squares on a linear trend plus Fourier terms, extended ``horizon`` steps.

    With two weeks of history the Fourier terms are the weekly harmonics up to
    ``7 * daily_harmonics``: they include the daily ones and also let each weekday have its
    own daily shape (weekend afternoons). With less, only daily harmonics.
    """
    values = _check_history(history, step_seconds)
    horizon = _check_horizon(horizon)
    n = values.size
    day, week = _periods(step_seconds, n)
    period, harmonics = (week, 7 * daily_harmonics) if week else (day, daily_harmonics)
    # At least eight samples per coefficient, so hourly data does not fit its own noise.
    harmonics = max(1, min(harmonics, period // 2 - 1, (n // 8 - 2) // 2))
    k = np.arange(1, harmonics + 1)

    def design(t: FloatArray) -> FloatArray:
        angle = 2 * np.pi * np.outer(t, k) / period
        return np.column_stack([np.ones_like(t), t / n, np.sin(angle), np.cos(angle)])

    target, offset = _to_model_space(values, multiplicative)
    x = design(np.arange(n, dtype=np.float64))
    # Normal equations: the Fourier columns are nearly orthogonal, so X'X is well conditioned,
    # and one matrix product is far cheaper than an SVD on a busy machine.
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += 1e-10 * np.trace(gram) / gram.shape[0]
    import scipy.linalg

    coef = scipy.linalg.solve(gram, x.T @ target, assume_a="pos")
    future = design(np.arange(n, n + horizon, dtype=np.float64)) @ coef
    return _from_model_space(future, offset, multiplicative)


def fft_forecast(
    history: ArrayLike,
    step_seconds: float,
    horizon: int,
    *,
    components: int = 100,
    multiplicative: bool = True,
) -> FloatArray:
    """Extend the ``components`` strongest frequencies of the detrended history.

    The window is the longest run of whole weeks (or days) at the end of the history, so the
    daily and weekly frequencies and their harmonics fall exactly on FFT bins and do not leak.
    The trend comes from the means of those whole periods: a straight line fitted through the
    raw samples would mistake the shape of the week (busy weekends at its end) for growth.
    """
    values = _check_history(history, step_seconds)
    horizon = _check_horizon(horizon)
    day, week = _periods(step_seconds, values.size)
    period = week or day
    repeats = values.size // period
    m = repeats * period
    window, offset = _to_model_space(values[-m:], multiplicative)
    means = window.reshape(repeats, period).mean(axis=1)
    centres = np.arange(repeats) * period + (period - 1) / 2
    slope = float(np.polyfit(centres, means, 1)[0]) if repeats > 1 else 0.0
    t = np.arange(m, dtype=np.float64)
    level = float(means.mean()) - slope * float(centres.mean())
    spectrum = np.fft.rfft(window - (slope * t + level))
    amplitude = np.abs(spectrum)
    amplitude[0] = 0.0
    keep = np.argsort(amplitude)[::-1][: max(1, min(components, m // 8))]
    keep = keep[amplitude[keep] > 0]
    future = np.arange(m, m + horizon, dtype=np.float64)
    out = slope * future + level
    for k in keep:
        scale = 1.0 if (m % 2 == 0 and k == m // 2) else 2.0
        phase = 2 * np.pi * k * future / m + np.angle(spectrum[k])
        out += scale / m * np.abs(spectrum[k]) * np.cos(phase)
    return _from_model_space(out, offset, multiplicative)


PREDICTORS: dict[str, Predictor] = {
    "regression": seasonal_regression,
    "fft": fft_forecast,
    "seasonal_naive": seasonal_naive,
}


def mape(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Mean absolute percentage error over samples with non-zero actual demand, in percent."""
    a = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    if a.shape != p.shape:
        raise PlanInputError("predicted", f"has shape {p.shape}, expected {a.shape}")
    nonzero = np.abs(a) > 1e-12
    if not nonzero.any():
        return math.nan
    return float(np.mean(np.abs(a[nonzero] - p[nonzero]) / np.abs(a[nonzero])) * 100.0)


# --- backtest and combination -----------------------------------------------------------


@dataclass(frozen=True)
class Backtest:
    """Rolling-origin MAPE (percent) per predictor over ``folds`` horizons at the end."""

    horizon: int
    folds: int
    mape: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "folds": self.folds, "mape": self.mape}


def backtest(history: ArrayLike, step_seconds: float, horizon: int, *, folds: int = 3) -> Backtest:
    """Fit on the history up to each of the last ``folds`` horizons and score the next one.

    Scores each predictor, the seasonal-naive baseline and the weighted combination (its
    weights come from the earlier folds only, so its score is out of sample from fold two on).
    """
    values = _check_history(history, step_seconds)
    horizon = _check_horizon(horizon)
    if not isinstance(folds, int) or folds < 1:
        raise PlanInputError("folds", "must be an integer >= 1")
    day = int(DAY_SECONDS // step_seconds)
    usable = (values.size - 2 * day) // horizon
    folds = min(folds, usable)
    if folds < 1:
        raise PlanInputError("history", "is too short to hold out a horizon and keep two days")
    errors: dict[str, list[float]] = {name: [] for name in [*PREDICTORS, "combined"]}
    for i in range(folds, 0, -1):
        cut = values.size - i * horizon
        train, actual = values[:cut], values[cut : cut + horizon]
        preds = {name: f(train, step_seconds, horizon) for name, f in PREDICTORS.items()}
        seen = {name: errors[name] for name in PREDICTORS}
        weights = _weights({k: float(np.mean(v)) for k, v in seen.items() if v})
        preds["combined"] = sum(
            (weights.get(k, 1.0 / len(PREDICTORS)) * preds[k] for k in PREDICTORS),
            start=np.zeros(horizon),
        )
        for name, pred in preds.items():
            errors[name].append(mape(actual, pred))
    return Backtest(
        horizon=horizon,
        folds=folds,
        mape={k: float(np.nanmean(v)) if v else math.nan for k, v in errors.items()},
    )


def _weights(errors: dict[str, float]) -> dict[str, float]:
    """Inverse-error weights; a predictor with no usable score gets none."""
    inverse = {k: 1.0 / max(v, 1e-9) for k, v in errors.items() if math.isfinite(v) and v >= 0}
    total = sum(inverse.values())
    if not inverse or total <= 0:
        return {k: 1.0 / len(PREDICTORS) for k in PREDICTORS}
    return {k: v / total for k, v in inverse.items()}


@dataclass(frozen=True)
class Forecast:
    """Predicted demand for the ``horizon`` intervals after the history."""

    values: FloatArray
    step_seconds: float
    weights: dict[str, float]
    backtest: Backtest
    components: dict[str, FloatArray] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_seconds": self.step_seconds,
            "values": self.values.tolist(),
            "weights": self.weights,
            "backtest": self.backtest.to_dict(),
        }


def forecast_demand(
    history: ArrayLike, step_seconds: float, horizon: int, *, folds: int = 3
) -> Forecast:
    """Combined forecast: each predictor weighted by its inverse squared backtest MAPE."""
    values = _check_history(history, step_seconds)
    horizon = _check_horizon(horizon)
    scores = backtest(values, step_seconds, horizon, folds=folds)
    weights = _weights({k: scores.mape[k] for k in PREDICTORS})
    parts = {name: f(values, step_seconds, horizon) for name, f in PREDICTORS.items()}
    combined = sum((weights[k] * parts[k] for k in weights), start=np.zeros(horizon))
    return Forecast(combined, float(step_seconds), weights, scores, parts)


# --- predictive scaling -----------------------------------------------------------------


@dataclass(frozen=True)
class ScalingAction:
    """Ask for ``to_instances`` at ``issue_seconds`` so they serve from ``ready_seconds``."""

    interval: int
    issue_seconds: float
    ready_seconds: float
    from_instances: int
    to_instances: int
    late: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval": self.interval,
            "issue_seconds": self.issue_seconds,
            "ready_seconds": self.ready_seconds,
            "from_instances": self.from_instances,
            "to_instances": self.to_instances,
            "late": self.late,
        }


@dataclass(frozen=True)
class ScalingPlan:
    """Instances in service per interval, and the actions that get them there.

    ``needed`` is the bare requirement per interval; ``instances`` never falls below it
    (except where ``max_instances`` caps it: ``capped_intervals``). ``naive_actions`` counts
    the actions of following ``needed`` exactly, for comparison.
    """

    step_seconds: float
    needed: IntArray
    instances: IntArray
    actions: list[ScalingAction]
    naive_actions: int
    band_instances: int
    capped_intervals: tuple[int, ...]
    at_risk_intervals: tuple[int, ...]

    @property
    def instance_hours(self) -> float:
        return float(self.instances.sum() * self.step_seconds / 3600)

    @property
    def overprovision(self) -> float:
        """Planned instance-hours over the bare requirement, as a fraction (0.05 = 5% extra)."""
        need = float(self.needed.sum())
        return float(self.instances.sum()) / need - 1.0 if need > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_seconds": self.step_seconds,
            "needed": self.needed.tolist(),
            "instances": self.instances.tolist(),
            "actions": [a.to_dict() for a in self.actions],
            "naive_actions": self.naive_actions,
            "band_instances": self.band_instances,
            "capped_intervals": list(self.capped_intervals),
            "at_risk_intervals": list(self.at_risk_intervals),
            "instance_hours": self.instance_hours,
            "overprovision": self.overprovision,
        }


def plan_scaling(
    demand: ArrayLike,
    step_seconds: float,
    *,
    throughput_per_instance: float,
    headroom: float = 0.2,
    readiness_seconds: float = 600.0,
    min_instances: int = 1,
    max_instances: int | None = None,
    current_instances: int | None = None,
    band: float = 0.1,
    min_band_instances: int = 1,
) -> ScalingPlan:
    """Instances per interval for forecast ``demand``, with as few scaling actions as possible.

    The plan holds a level as long as the requirement inside it stays within a hysteresis
    band of ``band`` x peak requirement (at least ``min_band_instances``): a level is the
    largest requirement of its stretch, so capacity never falls short of the forecast and
    exceeds it by at most the band. Splitting the intervals greedily into the longest such
    stretches gives the fewest stretches, hence the fewest actions, for that band. Scale-ups are
    issued ``readiness_seconds`` before their stretch starts; scale-downs when it starts, except
    that a dip shorter than the readiness time before a rise is held rather than released (the
    rise would have to be asked for before the dip begins). A scale-up that should have started
    before now is issued at once and marked ``late``, and the intervals it cannot cover in time
    are listed in ``at_risk_intervals``.
    """
    forecast = _check_demand_series(demand)
    if not (isinstance(step_seconds, int | float) and step_seconds > 0):
        raise PlanInputError("step_seconds", "must be a number > 0")
    if not (isinstance(throughput_per_instance, int | float) and throughput_per_instance > 0):
        raise PlanInputError("throughput_per_instance", "must be a number > 0")
    if not (0 <= headroom < 1):
        raise PlanInputError("headroom", "must be in [0, 1)")
    if not (math.isfinite(readiness_seconds) and readiness_seconds >= 0):
        raise PlanInputError("readiness_seconds", "must be a finite number >= 0")
    if not isinstance(min_instances, int) or min_instances < 0:
        raise PlanInputError("min_instances", "must be an integer >= 0")
    if max_instances is not None and (
        not isinstance(max_instances, int) or max_instances < min_instances
    ):
        raise PlanInputError("max_instances", "must be an integer >= min_instances")
    if not (0 <= band < 1):
        raise PlanInputError("band", "must be in [0, 1)")
    if not isinstance(min_band_instances, int) or min_band_instances < 0:
        raise PlanInputError("min_band_instances", "must be an integer >= 0")
    step_seconds = float(step_seconds)

    per_instance = throughput_per_instance * (1.0 - headroom)
    raw = np.ceil(forecast / per_instance * (1 - 1e-12) - 1e-9).astype(np.int64)
    needed = np.maximum(raw, min_instances)
    capped = np.zeros(needed.size, dtype=bool)
    if max_instances is not None:
        capped = needed > max_instances
        needed = np.minimum(needed, max_instances)
    width = max(min_band_instances, math.ceil(band * int(needed.max())))

    levels = np.empty_like(needed)
    starts = [0]
    lo = hi = int(needed[0])
    for t in range(1, needed.size):
        value = int(needed[t])
        if max(hi, value) - min(lo, value) > width:
            levels[starts[-1] : t] = hi
            starts.append(t)
            lo = hi = value
        else:
            lo, hi = min(lo, value), max(hi, value)
    levels[starts[-1] :] = hi
    _skip_short_dips(levels, starts, math.ceil(readiness_seconds / step_seconds))

    actions: list[ScalingAction] = []
    previous = levels[0] if current_instances is None else current_instances
    for s in starts:
        level = int(levels[s])
        if level == previous:
            continue
        ready = s * step_seconds
        issue = ready - float(readiness_seconds) if level > previous else ready
        late = issue < 0
        if late:
            issue = 0.0
            ready = float(readiness_seconds) if level > previous else 0.0
        actions.append(ScalingAction(s, issue, ready, int(previous), level, late))
        previous = level
    at_risk = _at_risk(levels, actions, current_instances, step_seconds, needed)
    naive_changes = int(np.count_nonzero(np.diff(needed)))
    if current_instances is not None and current_instances != needed[0]:
        naive_changes += 1
    return ScalingPlan(
        step_seconds=float(step_seconds),
        needed=needed,
        instances=levels,
        actions=actions,
        naive_actions=naive_changes,
        band_instances=width,
        capped_intervals=tuple(np.flatnonzero(capped).tolist()),
        at_risk_intervals=at_risk,
    )


def _skip_short_dips(levels: IntArray, starts: list[int], readiness_steps: int) -> None:
    """Hold a level instead of scaling down when a scale-up must be asked for before the dip.

    A scale-down followed, within the readiness time, by a scale-up would release instances
    the next level is already waiting for.
    """
    for i in range(len(starts) - 2, 0, -1):
        here, nxt = starts[i], starts[i + 1]
        previous = int(levels[starts[i - 1]])
        if levels[here] < previous and levels[nxt] > levels[here] and nxt - here < readiness_steps:
            levels[here:nxt] = min(previous, int(levels[nxt]))


def _check_demand_series(demand: ArrayLike) -> FloatArray:
    try:
        values = np.array(demand, dtype=np.float64)
    except (TypeError, ValueError):
        raise PlanInputError("demand", "is not a numeric series") from None
    if values.ndim != 1 or values.size == 0:
        raise PlanInputError("demand", "must be a non-empty series")
    if not np.isfinite(values).all() or (values < 0).any():
        raise PlanInputError("demand", "must be finite and >= 0")
    return values


def _at_risk(
    levels: IntArray,
    actions: list[ScalingAction],
    current: int | None,
    step_seconds: float,
    needed: IntArray,
) -> tuple[int, ...]:
    """Intervals whose demand arrives before the (late) scale-up serving it is ready."""
    in_service = np.full(levels.size, int(levels[0]) if current is None else current)
    for action in actions:
        effective = action.interval
        if action.late and action.to_instances > action.from_instances:
            effective = max(effective, math.ceil(action.ready_seconds / step_seconds))
        in_service[effective:] = action.to_instances
    return tuple(np.flatnonzero(in_service < needed).tolist())


# --- charts -----------------------------------------------------------------------------


def plot_forecast(
    history: ArrayLike,
    forecast: ArrayLike,
    step_seconds: float,
    *,
    actuals: ArrayLike | None = None,
    history_days: float = 7.0,
) -> Figure:
    """The recent history, the forecast after it and, when known, what actually happened."""
    past = np.asarray(history, dtype=np.float64)
    ahead = np.asarray(forecast, dtype=np.float64)
    hours = step_seconds / 3600.0
    keep = min(past.size, int(history_days * DAY_SECONDS / step_seconds))
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(np.arange(-keep, 0) * hours, past[-keep:], color="0.4", linewidth=1, label="history")
    t_ahead = np.arange(ahead.size) * hours
    if actuals is not None:
        real = np.asarray(actuals, dtype=np.float64)
        ax.plot(np.arange(real.size) * hours, real, color="tab:green", linewidth=1, label="actual")
    ax.plot(t_ahead, ahead, color="tab:orange", linewidth=1.5, label="forecast")
    ax.axvline(0, color="0.2", linestyle=":", linewidth=1)
    ax.set_xlabel("hours from forecast start")
    ax.set_ylabel("demand")
    ax.legend(fontsize="small")
    return fig


def forecast_png(
    history: ArrayLike,
    forecast: ArrayLike,
    step_seconds: float,
    *,
    actuals: ArrayLike | None = None,
) -> bytes:
    return figure_png(plot_forecast(history, forecast, step_seconds, actuals=actuals))
