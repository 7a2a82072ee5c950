"""Demand forecast per region: hour-of-week profile x recent level, backtested.

`generate_history` makes hourly requests per region (daily and weekly seasonality, a slow
trend, noise and a few incidents). `SeasonalProfile` forecasts each region as its recent
level times its hour-of-week profile (a median over past weeks, robust to incidents);
`backtest` scores it by rolling origin (each day of the test window forecast from the data
before it) beside seasonal-naive (the same hour one week earlier).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

WEEK = 24 * 7


def generate_history(
    regions: list[str], *, weeks: int = 8, seed: int = 11
) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    hours = np.arange(weeks * WEEK)
    history: dict[str, list[float]] = {}
    for i, region in enumerate(regions):
        base = 1000.0 * (1 + i)
        daily = 1 + 0.5 * np.sin(2 * np.pi * (hours % 24 - 14 + 2 * i) / 24)
        weekly = 1 + 0.15 * ((hours // 24) % 7 >= 5)
        trend = 1 + 0.002 * hours / 24
        noise = rng.normal(1, 0.06, len(hours))
        series = base * daily * weekly * trend * noise
        for start in rng.choice(len(hours) - 6, 3, replace=False):
            series[start : start + 4] *= rng.uniform(1.8, 2.5)
        history[region] = series.round(2).tolist()
    return history


class SeasonalProfile:
    """Per region: forecast(h) = level x profile[hour of week], level from the last week.

    `ends_at` is the hour the history ends (the flow reads it up to the hour it runs), so
    a forecast for wall-clock hours (`ahead`) knows how far past the history they are.
    """

    def __init__(self, weeks: int = 4, ends_at: datetime | None = None) -> None:
        self.weeks = weeks
        self.ends_at = ends_at
        self.profile: dict[str, NDArray[np.float64]] = {}
        self.level: dict[str, float] = {}
        self.growth: dict[str, float] = {}
        self.origin: dict[str, int] = {}

    def fit(self, history: dict[str, list[float]]) -> SeasonalProfile:
        for region, values in history.items():
            series = np.asarray(values, dtype=float)
            n = (len(series) // WEEK) * WEEK
            usable = series[len(series) - n :][-self.weeks * WEEK :]
            weeks = usable.reshape(-1, WEEK)
            means = weeks.mean(axis=1, keepdims=True)
            self.profile[region] = np.median(weeks / means, axis=0)
            self.level[region] = float(np.median(weeks[-1] / self.profile[region]))
            if len(weeks) >= 2:
                prior = float(np.median(weeks[-2] / self.profile[region]))
                self.growth[region] = float(np.clip(self.level[region] / prior, 0.9, 1.1))
            else:
                self.growth[region] = 1.0
            self.origin[region] = len(series)
        return self

    def forecast(self, region: str, hours_ahead: int) -> float:
        # The profile's weeks end at the origin, so the next hour is the profile's first.
        hour = (hours_ahead - 1) % WEEK
        weekly_growth = self.growth[region] ** ((hours_ahead + WEEK / 2) / WEEK)
        return float(self.level[region] * weekly_growth * self.profile[region][hour])

    def ahead(self, region: str, start: datetime, hours: int) -> list[float] | None:
        """Hourly forecasts for the `hours` hours from `start` (None: region unknown)."""
        if region not in self.profile:
            return None
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
        ends_at = getattr(self, "ends_at", None) or start
        skip = max(0, int((start - ends_at).total_seconds() // 3600))
        return [round(self.forecast(region, skip + h + 1), 2) for h in range(hours)]

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        answers: list[Any] = []
        for row in rows:
            region = str(row["region"])
            if region not in self.profile:
                answers.append(None)
                continue
            answers.append(round(self.forecast(region, max(1, int(row["hours_ahead"]))), 2))
        return answers


def _mape(actual: NDArray[np.float64], predicted: NDArray[np.float64]) -> float:
    return float(np.mean(np.abs(actual - predicted) / np.maximum(np.abs(actual), 1e-9)))


def backtest(
    history: dict[str, list[float]], *, days: int = 14, horizon: int = 24
) -> dict[str, float]:
    """Rolling-origin MAPE over the last `days` days: the model and seasonal-naive."""
    model_errors: list[float] = []
    naive_errors: list[float] = []
    for region, values in history.items():
        series = np.asarray(values, dtype=float)
        for day in range(days, 0, -1):
            origin = len(series) - day * 24
            if origin < 2 * WEEK:
                continue
            fitted = SeasonalProfile().fit({region: series[:origin].tolist()})
            actual = series[origin : origin + horizon]
            predicted = np.array([fitted.forecast(region, h + 1) for h in range(len(actual))])
            naive = series[origin - WEEK : origin - WEEK + len(actual)]
            model_errors.append(_mape(actual, predicted))
            naive_errors.append(_mape(actual, naive))
    return {
        "model_mape": float(np.mean(model_errors)) if model_errors else float("nan"),
        "naive_mape": float(np.mean(naive_errors)) if naive_errors else float("nan"),
        "origins": float(len(model_errors)),
    }
