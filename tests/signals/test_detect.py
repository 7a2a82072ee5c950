"""Change-point detection on single series and blocks: what an operator relies on."""

import numpy as np
import pytest

from popcorn.signals.detect import (
    DetectionError,
    DetectOptions,
    align_series,
    change_points,
    detect_block,
    prepare,
    regular_grid,
)
from popcorn.signals.evaluate import evaluate
from popcorn.signals.generate import generate_labelled


def near(found: list[int], expected: list[int], margin: int = 5) -> bool:
    return len(found) == len(expected) and all(
        abs(f - e) <= margin for f, e in zip(found, expected, strict=True)
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def test_finds_level_shifts_within_margin(rng: np.random.Generator) -> None:
    x = rng.normal(0, 1, 600)
    x[200:] += 4
    x[420:] -= 6
    assert near(change_points(x), [200, 420])


def test_scale_does_not_matter(rng: np.random.Generator) -> None:
    x = rng.normal(0, 1, 400)
    x[150:] += 5
    assert change_points(x) == change_points(x * 1e6 + 3e9)


def test_spikes_and_gaps_are_not_changes(rng: np.random.Generator) -> None:
    x = rng.normal(10, 1, 500)
    x[100] += 25
    x[300:302] -= 20
    x[200:230] = np.nan
    assert change_points(x) == []
    x[350:] += 5
    assert near(change_points(x), [350])


def test_variance_change_is_found(rng: np.random.Generator) -> None:
    x = rng.normal(0, 1, 800)
    x[400:] *= 4
    found = change_points(x)
    assert len(found) == 1 and abs(found[0] - 400) <= 10
    assert change_points(x, variance=False) == []


def test_a_ramp_is_one_change_at_its_start(rng: np.random.Generator) -> None:
    t = np.arange(700, dtype=float)
    x = rng.normal(0, 1, 700) + np.where(t >= 300, (t - 300) * 0.08, 0.0)
    found = change_points(x)
    assert len(found) == 1 and abs(found[0] - 300) <= 20


def test_quiet_series_have_no_changes(rng: np.random.Generator) -> None:
    white = rng.normal(0, 1, (300, 720))
    ar = np.zeros((300, 720))
    e = rng.normal(0, 1, (300, 720))
    for i in range(1, 720):
        ar[:, i] = 0.6 * ar[:, i - 1] + e[:, i]
    heavy = rng.standard_t(4, (300, 720))
    for block in (white, ar, heavy):
        flagged = sum(bool(r.changes) for r in detect_block(block))
        assert flagged <= 9  # at most 3 % of series


def test_degenerate_series_never_crash() -> None:
    assert change_points([]) == []
    assert change_points([1.0, 2.0, 3.0]) == []
    assert change_points(np.full(100, 5.0)) == []
    assert change_points(np.full(50, np.nan)) == []
    step = np.r_[np.zeros(60), np.ones(60)]  # noiseless step: still one change
    assert change_points(step) == [60]
    quantised = np.r_[np.zeros(100), np.ones(100)] + (np.arange(200) % 37 == 0)
    assert near(change_points(quantised), [100])


def test_rows_are_independent(rng: np.random.Generator) -> None:
    block = rng.normal(0, 1, (40, 300))
    block[5, 100:] += 6
    block[17, 250:] -= 5
    block[30, :] = 7.0
    block[33, :40] = np.nan
    whole = detect_block(block)
    for i in (5, 17, 30, 33):
        alone = detect_block(block[i : i + 1])[0]
        assert [c.index for c in whole[i].changes] == [c.index for c in alone.changes]
    assert [c.index for c in whole[5].changes] == [100]
    assert whole[5].changes[0].direction == "up" and whole[5].changes[0].effect > 4
    assert whole[17].changes[0].direction == "down"
    assert whole[30].constant


@pytest.mark.parametrize(
    "options",
    [
        {"method": "pelt"},
        {"method": "binseg"},
        {"method": "bottomup"},
        {"method": "window"},
        {"method": "kernel"},
        {"method": "kernel", "kernel": "rbf"},
        {"method": "pelt", "cost": "l1"},
        {"method": "pelt", "cost": "normal"},
    ],
)
def test_ruptures_methods_can_refine(rng: np.random.Generator, options: dict[str, str]) -> None:
    x = rng.normal(0, 1, 400)
    x[250:] += 6
    assert near(change_points(x, **options), [250])


def test_sensitivity_and_penalty_move_the_threshold(rng: np.random.Generator) -> None:
    x = rng.normal(0, 1, 400)
    x[200:] += 0.6  # small: below the default threshold of a 1 sd effect
    assert change_points(x) == []
    assert near(change_points(x, min_effect=0.5, sensitivity=2.0), [200], margin=20)
    assert change_points(np.r_[x[:200], x[200:] + 5], penalty=1e6) == []


def test_bad_options_name_the_field() -> None:
    with pytest.raises(DetectionError, match="method"):
        change_points([1.0] * 50, method="magic")
    with pytest.raises(DetectionError, match="min_size"):
        change_points([1.0] * 50, min_size=1)
    with pytest.raises(DetectionError, match="unknown option"):
        change_points([1.0] * 50, pen=3)
    with pytest.raises(DetectionError, match="values"):
        change_points(np.zeros((3, 3)))
    with pytest.raises(DetectionError, match="sensitivity"):
        DetectOptions(sensitivity=0)


def test_irregular_samples_are_put_on_a_grid() -> None:
    ts = np.array([0, 60, 120, 200, 240, 300])
    vals = np.array([[0.0, 1.0, 2.0, 4.0, 4.0, 5.0]])
    grid, out = regular_grid(ts, vals)
    assert grid.tolist() == [0, 60, 120, 180, 240, 300]
    assert out[0].tolist() == pytest.approx([0, 1, 2, 3.5, 4, 5])
    _, same = regular_grid(np.arange(5) * 10, np.arange(5.0))
    assert same.tolist() == [0, 1, 2, 3, 4]


def test_align_series_bins_each_signal() -> None:
    grid, block = align_series(
        [([0, 5, 61, 200], [1.0, 3.0, 5.0, 9.0]), ([130], [7.0])], start=0, end=240, step=60
    )
    assert grid.tolist() == [0, 60, 120, 180]
    assert block[0].tolist()[:2] == [2.0, 5.0]
    assert np.isnan(block[0, 2]) and block[0, 3] == 9.0
    assert block[1, 2] == 7.0


def test_prepare_bridges_gaps_and_reports_edges() -> None:
    x = np.array([[np.nan, np.nan, 1.0, 2.0, np.nan, 4.0, np.nan]])
    prep = prepare(x)
    assert prep.values[0].tolist() == [1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 4.0]
    assert (prep.first_valid[0], prep.last_valid[0], prep.n_valid[0]) == (2, 5, 3)
    assert np.isnan(x[0, 0])  # the caller's array is untouched


def test_at_least_as_accurate_as_exact_l2_segmentation() -> None:
    import ruptures as rpt

    data = generate_labelled(30, seed=3, n=400)
    opts = DetectOptions()

    def kernel(values: np.ndarray) -> list[int]:
        prep = prepare(values)
        pen = opts.beta(values.size) * prep.sigma[0] ** 2 * prep.long_run[0]
        algo = rpt.KernelCPD(kernel="linear", min_size=opts.min_size).fit(prep.values[0])
        return [e for e in algo.predict(pen=pen) if e < values.size]

    ours = evaluate(change_points, data)
    theirs = evaluate(kernel, data)
    assert ours.f1 >= theirs.f1
    assert ours.cover >= theirs.cover - 0.02


@pytest.mark.parametrize("seed", range(5))
def test_a_jump_from_an_exactly_flat_segment_is_found(seed: int) -> None:
    """Idle counters and pinned gauges have zero variance: 20 zeros, then N(100, 30)."""
    rng = np.random.default_rng(seed)
    values = np.r_[np.zeros(20), rng.normal(100, 30, 40)]
    assert change_points(values) == [20]
    stopped = np.r_[rng.normal(250, 20, 60), np.zeros(30), rng.normal(250, 20, 60)]
    assert change_points(stopped) == [60, 90]


def test_a_flat_then_noisy_row_reports_its_variance_change() -> None:
    rng = np.random.default_rng(1)
    row = detect_block(np.r_[np.full(40, 7.0), 7.0 + rng.normal(0, 3, 60)])[0]
    assert [(cp.index, cp.direction) for cp in row.changes] == [(40, "up")]


@pytest.mark.slow
def test_a_smooth_daily_cycle_is_not_a_series_of_changes(rng: np.random.Generator) -> None:
    t = np.arange(2880)
    cycle = 40 * np.sin(2 * np.pi * t / 1440) + 10 * np.sin(4 * np.pi * t / 1440 + 1)
    values = 200 + cycle + rng.normal(0, 3, t.size)
    values[2000:] += 30  # one real shift on top of two days of cycle
    assert [c for c in change_points(values) if abs(c - 2000) > 5] == []
    assert any(abs(c - 2000) <= 5 for c in change_points(values))
    assert change_points(values, seasonal=False) != change_points(values)
