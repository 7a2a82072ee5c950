"""Forecasts learn the daily and weekly rhythm; scaling plans stay ahead of demand."""

from __future__ import annotations

import numpy as np
import pytest

from popcorn.traffic.forecast import (
    backtest,
    fft_forecast,
    forecast_demand,
    forecast_png,
    mape,
    plan_scaling,
    seasonal_naive,
    seasonal_regression,
)
from popcorn.traffic.optimize import PlanInputError

STEP = 300  # five-minute samples
DAY = 288


def demand(days: int, *, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """Streaming-like demand: evening peak, busier weekend afternoons, slow growth, noise."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * DAY) * STEP / 3600
    hour, day = hours % 24, hours / 24
    evening = np.exp(-(((hour - 20.5 + 12) % 24 - 12) ** 2) / (2 * 2.5**2))
    afternoon = np.exp(-(((hour - 14 + 12) % 24 - 12) ** 2) / (2 * 3.0**2))
    weekend = 0.5 * (1 - np.cos(2 * np.pi * np.clip((day % 7 - 4.75) / 2.5, 0, 1)))
    night = 0.25 + 0.1 * np.cos(2 * np.pi * (hour - 3) / 24)
    level = 1000 * (1 + 0.003 * day)
    shape = night + 0.8 * evening + (0.25 + 0.5 * weekend) * afternoon + 0.1 * weekend
    return level * shape * (1 + rng.normal(0, noise, hours.size))


@pytest.mark.parametrize("seed", [0, 1])
def test_combined_forecast_beats_seasonal_naive_on_seasonal_demand(seed: int) -> None:
    series = demand(23 + seed * 3, seed=seed)
    history, actual = series[:-DAY], series[-DAY:]

    forecast = forecast_demand(history, STEP, DAY)
    naive = seasonal_naive(history, STEP, DAY)

    assert mape(actual, forecast.values) < mape(actual, naive)
    assert sum(forecast.weights.values()) == pytest.approx(1.0)
    assert forecast.values.shape == (DAY,)


@pytest.mark.parametrize("predictor", [seasonal_regression, fft_forecast])
def test_each_model_recovers_a_clean_weekly_pattern(predictor: object) -> None:
    series = demand(22, noise=0.0)
    history, actual = series[:-DAY], series[-DAY:]

    assert mape(actual, predictor(history, STEP, DAY)) < 2.0  # type: ignore[operator]


def test_seasonal_naive_repeats_last_week_or_yesterday() -> None:
    week = np.arange(7 * DAY + DAY, dtype=float)
    np.testing.assert_array_equal(seasonal_naive(week, STEP, 3), week[-7 * DAY : -7 * DAY + 3])
    short = np.arange(3 * DAY, dtype=float)
    np.testing.assert_array_equal(seasonal_naive(short, STEP, 3), short[-DAY : -DAY + 3])


def test_backtest_scores_every_member_and_the_combination() -> None:
    result = backtest(demand(22), STEP, DAY, folds=3)

    assert result.folds == 3
    assert set(result.mape) == {"regression", "fft", "seasonal_naive", "combined"}
    assert all(0 < v < 20 for v in result.mape.values())
    assert result.mape["combined"] < result.mape["seasonal_naive"]


def test_a_few_missing_samples_are_bridged() -> None:
    series = demand(22)
    series[1000:1010] = np.nan
    forecast = forecast_demand(series, STEP, 12)

    assert np.isfinite(forecast.values).all()


@pytest.mark.parametrize(
    ("history", "step", "horizon", "field"),
    [
        (np.ones((2, 2 * DAY)), STEP, 1, "history"),
        (np.ones(DAY), STEP, 1, "history"),
        (np.ones(3 * DAY), 7, 1, "step_seconds"),
        (np.ones(3 * DAY), 0, 1, "step_seconds"),
        (-np.ones(3 * DAY), STEP, 1, "history"),
        (np.full(3 * DAY, np.nan), STEP, 1, "history"),
        (["a"] * 3 * DAY, STEP, 1, "history"),
        (np.ones(3 * DAY), STEP, 0, "horizon"),
    ],
)
def test_bad_history_names_the_field(history: object, step: int, horizon: int, field: str) -> None:
    with pytest.raises(PlanInputError) as err:
        forecast_demand(history, step, horizon)  # type: ignore[arg-type]
    assert err.value.field == field


def test_scaling_plan_stays_ahead_of_demand_with_few_actions() -> None:
    series = demand(22)
    forecast = forecast_demand(series, STEP, DAY).values
    plan = plan_scaling(
        forecast,
        STEP,
        throughput_per_instance=50.0,
        headroom=0.2,
        readiness_seconds=1800,
        current_instances=None,
    )

    assert (plan.instances >= plan.needed).all()
    assert (plan.instances - plan.needed <= plan.band_instances).all()
    assert len(plan.actions) < plan.naive_actions / 3
    for action in plan.actions:
        assert plan.instances[action.interval] == action.to_instances
        if action.to_instances > action.from_instances:
            assert action.ready_seconds - action.issue_seconds == 1800
            assert action.ready_seconds == action.interval * STEP
    assert plan.at_risk_intervals == ()
    assert 0 < plan.overprovision < 0.2


def test_needed_instances_follow_throughput_and_headroom() -> None:
    plan = plan_scaling([0.0, 80.0, 81.0, 400.0], 300, throughput_per_instance=100.0,
                        headroom=0.2, min_instances=1, band=0.0, min_band_instances=0,
                        readiness_seconds=0)  # fmt: skip

    assert plan.needed.tolist() == [1, 1, 2, 5]
    assert plan.instances.tolist() == [1, 1, 2, 5]


def test_scale_up_that_cannot_be_ready_in_time_is_late_and_flags_risk() -> None:
    plan = plan_scaling([100.0] * 4 + [900.0] * 8, 300, throughput_per_instance=100.0,
                        headroom=0.0, readiness_seconds=1800, current_instances=1,
                        band=0.0, min_band_instances=0)  # fmt: skip

    late = [a for a in plan.actions if a.late]
    assert late and late[0].issue_seconds == 0.0
    # 9 instances are needed from interval 4 (1200 s) but ready only at 1800 s.
    assert plan.at_risk_intervals == (4, 5)


def test_short_dip_before_a_rise_is_held() -> None:
    series = [500.0] * 6 + [100.0] * 2 + [500.0] * 6
    plan = plan_scaling(series, 300, throughput_per_instance=100.0, headroom=0.0,
                        readiness_seconds=1200, band=0.0, min_band_instances=0)  # fmt: skip

    assert plan.instances.tolist() == [5] * 14
    assert plan.actions == []


def test_max_instances_caps_and_reports() -> None:
    plan = plan_scaling([100.0, 1000.0], 300, throughput_per_instance=100.0, headroom=0.0,
                        max_instances=5)  # fmt: skip

    assert plan.instances.max() == 5
    assert plan.capped_intervals == (1,)


def test_forecast_chart_is_a_png() -> None:
    series = demand(15)
    png = forecast_png(series[:-DAY], seasonal_naive(series[:-DAY], STEP, DAY), STEP,
                       actuals=series[-DAY:])  # fmt: skip

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
