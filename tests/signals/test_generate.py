"""Generated data must be reproducible and carry the answers tests and the demo rely on."""

import numpy as np
import pytest

from popcorn.signals.generate import generate_incident, generate_labelled, generate_series


def test_series_are_reproducible_and_labelled() -> None:
    a = generate_series(42)
    b = generate_series(42)
    assert np.array_equal(a.values, b.values, equal_nan=True)
    assert a.truth == b.truth and a.annotations == b.annotations
    assert len(a.annotations) == 5
    assert len(a.kinds) == len(a.truth)
    for marks in a.annotations:
        for m in marks:  # every annotation is close to a true change
            assert min(abs(m - t) for t in a.truth) <= 4
    assert a.history.shape == a.values.shape


def test_data_set_covers_every_kind_of_change_and_disturbance() -> None:
    data = generate_labelled(60, seed=1, n=300)
    kinds = {k for s in data for k in s.kinds}
    assert kinds == {"level", "trend", "variance"}
    assert any(not s.truth for s in data)
    assert any(s.seasonal for s in data)
    assert any(np.isnan(s.values).any() for s in data)


def test_incident_plants_culprits_before_the_alert() -> None:
    inc = generate_incident(300, 600, seed=3, n_culprits=2, followers_per_culprit=3)
    assert inc.values.shape == inc.history.shape == (300, 600)
    assert len(inc.names) == 300 == len(set(inc.names))
    alert_idx = int(np.searchsorted(inc.timestamps, inc.alert_time))
    for c in inc.culprits:
        row = inc.values[c]
        assert len(inc.followers[c]) == 3
        before = row[alert_idx - 60 : alert_idx - 13]
        after = row[alert_idx - 2 : alert_idx + 10]
        if inc.expected_verdicts[c] == "appeared":
            assert np.isnan(before).all() and not np.isnan(after).any()
        else:
            assert abs(np.mean(after) - np.mean(before)) > 3 * np.std(np.diff(before))
    assert inc.trigger[alert_idx + 5] > inc.trigger[alert_idx - 30] + 1
    assert ((inc.proximity >= 0) & (inc.proximity <= 1)).all()


def test_the_smallest_allowed_window_still_plants_an_incident() -> None:
    """200 samples is the documented minimum: every kind of signal must fit in it."""
    for seed in range(5):
        inc = generate_incident(300, 200, seed=seed)
        assert inc.values.shape == (300, 200) and inc.culprits


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="n_signals"):
        generate_incident(10)
    with pytest.raises(ValueError, match="n"):
        generate_series(1, n=20)


def test_operations_mix_has_short_long_flat_and_seasonal_series() -> None:
    from popcorn.signals.generate import generate_operations

    data = generate_operations(40, seed=2)
    sizes = [s.values.size for s in data]
    assert min(sizes) <= 80 and max(sizes) >= 2000 and 720 in sizes
    flat = [s for s in data if "-" in s.name]
    assert flat and any(s.seasonal for s in data)
    for s in flat:  # an exactly flat stretch, and both its ends are labelled changes
        run = np.flatnonzero(np.diff(s.values) == 0)
        assert run.size >= 7
        assert all(0 < t < s.values.size for t in s.truth)
