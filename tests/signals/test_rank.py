"""Alert analysis: the culprit comes first, chunks merge exactly, and nothing crashes."""

import json

import numpy as np
import pytest

from popcorn.signals.generate import Incident, generate_incident
from popcorn.signals.rank import (
    AnalysisError,
    AnalysisOptions,
    AnalysisResult,
    analyze_block,
    merge_results,
)


@pytest.fixture(scope="module")
def incident() -> Incident:
    return generate_incident(2000, seed=11)


@pytest.fixture(scope="module")
def result(incident: Incident) -> AnalysisResult:
    return analyze_block(
        incident.timestamps,
        incident.values,
        incident.alert_time,
        trigger=incident.trigger,
        names=incident.names,
        history=incident.history,
        trigger_name=incident.trigger_name,
    )


def planted(incident: Incident) -> set[int]:
    return set(incident.culprits) | {f for fs in incident.followers.values() for f in fs}


def test_planted_culprits_and_followers_rank_first(
    incident: Incident, result: AnalysisResult
) -> None:
    wanted = planted(incident)
    top = [f.index for f in result.findings[: len(wanted)]]
    assert set(top) == wanted
    scores = {f.index: f.score for f in result.findings}
    best_other = max(s for i, s in scores.items() if i not in wanted)
    assert min(scores[i] for i in incident.culprits) > best_other


def test_culprits_get_the_right_verdict_and_story(
    incident: Incident, result: AnalysisResult
) -> None:
    by_index = {f.index: f for f in result.findings}
    for c in incident.culprits:
        f = by_index[c]
        assert f.verdict == incident.expected_verdicts[c]
        assert f.offset_seconds is not None and -15 * 60 <= f.offset_seconds < 0
        assert f.pearson is not None and abs(f.pearson) > 0.5
        assert f.spearman is not None
        assert "before the alert" in f.explanation
    changed = [by_index[c] for c in incident.culprits if by_index[c].verdict == "changed"]
    assert changed and all(f.effect_size and f.effect_size > 3 for f in changed)
    assert all(f.direction in ("up", "down") for f in changed)


def test_signals_that_changed_together_are_clustered(
    incident: Incident, result: AnalysisResult
) -> None:
    wanted = planted(incident)
    leading = [c for c in result.clusters if c.score > 0.5]
    assert 1 <= len(leading) <= 2 * len(incident.culprits)
    assert {m for c in leading for m in c.members} == wanted
    by_index = {f.index: f for f in result.findings}
    for c in result.clusters:
        lead = by_index[c.representative]
        assert c.representative in c.members
        assert all((by_index[m].change_time or 0) >= (lead.change_time or 0) for m in c.members)
        assert all(by_index[m].cluster == c.id for m in c.members)
        assert c.explanation
    # thousands of signals collapse into a short list of groups worth reading
    assert sum(c.score > 0.1 for c in result.clusters) <= 10


def test_every_signal_gets_a_verdict(incident: Incident, result: AnalysisResult) -> None:
    by_index = {f.index: f for f in result.findings}
    assert len(by_index) == 2000
    for i, verdict in incident.expected_verdicts.items():
        if verdict in ("unchanged", "not_analysable"):
            assert by_index[i].verdict == verdict, by_index[i].explanation
    dead = [f for f in result.findings if f.verdict == "not_analysable"]
    assert dead and all(f.explanation.startswith("not analysable") for f in dead)
    assert sum(result.counts.values()) == 2000
    # old genuine changes are found but do not matter for this alert
    decoys = [by_index[d] for d in incident.decoys]
    assert sum(f.verdict == "changed" for f in decoys) >= 0.9 * len(decoys)
    assert max(f.score for f in decoys) < 0.1


def test_chunks_merge_to_the_same_answer(incident: Incident, result: AnalysisResult) -> None:
    parts = []
    for lo, hi in ((0, 700), (700, 1500), (1500, 2000)):
        part = analyze_block(
            incident.timestamps,
            incident.values[lo:hi],
            incident.alert_time,
            trigger=incident.trigger,
            names=incident.names[lo:hi],
            history=incident.history[lo:hi],
            index_offset=lo,
            trigger_name=incident.trigger_name,
        )
        parts.append(json.loads(json.dumps(part.to_dict())))  # as an rq worker returns it
    merged = merge_results(parts)
    assert [f.index for f in merged.findings] == [f.index for f in result.findings]
    assert [f.score for f in merged.findings] == [f.score for f in result.findings]
    assert [(c.members, c.representative) for c in merged.clusters] == [
        (c.members, c.representative) for c in result.clusters
    ]
    assert merged.n_signals == 2000
    with pytest.raises(AnalysisError, match="index"):
        merge_results([parts[0], parts[0]])


def test_result_is_plain_json(result: AnalysisResult) -> None:
    data = json.loads(json.dumps(result.to_dict(include_unchanged=False)))
    assert all(f["verdict"] != "unchanged" for f in data["findings"])
    again = AnalysisResult.from_dict(data)
    assert again.clusters[0].members == result.clusters[0].members
    assert again.top(3)[0].index == result.findings[0].index


def seasonal_block(rng: np.random.Generator, n: int = 200, m: int = 1440) -> tuple:
    t = np.arange(m)
    ts = 1_767_225_600 + 60 * t
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amp = rng.uniform(5, 20, (n, 1))
    season = 100 + amp * np.sin(2 * np.pi * t / 1440 + phase)
    values = season + rng.normal(0, 1, (n, m))
    history = season + rng.normal(0, 1, (n, m))
    return ts, values, history


def test_seasonality_with_history_is_not_a_change() -> None:
    rng = np.random.default_rng(2)
    ts, values, history = seasonal_block(rng)
    alert = int(ts[-30])
    with_history = analyze_block(ts, values, alert, history=history)
    assert with_history.counts["changed"] <= 4
    ignored = analyze_block(ts, values, alert, options={"seasonality": "none"})
    assert ignored.counts["changed"] > 100
    values[7, -40:] += 10
    found = analyze_block(ts, values, alert, history=history)
    assert found.findings[0].index == 7 and found.findings[0].verdict == "changed"
    assert "daily pattern removed" in found.findings[0].explanation


def test_detrend_without_history_keeps_false_changes_rare() -> None:
    rng = np.random.default_rng(3)
    ts, values, _ = seasonal_block(rng)
    values[11, -40:] -= 12
    res = analyze_block(ts, values, int(ts[-30]))
    assert res.counts["changed"] <= 20
    assert res.findings[0].index == 11 and res.findings[0].direction == "down"


def test_gaps_constant_short_and_new_signals() -> None:
    rng = np.random.default_rng(4)
    m = 300
    ts = 1_700_000_000 + 10 * np.arange(m)
    values = rng.normal(50, 2, (6, m))
    values[0, :] = 3.0  # constant
    values[1, : m - 10] = np.nan  # only 10 samples
    values[2, 40:80] = np.nan  # a gap, otherwise quiet
    values[3, :250] = np.nan  # born 50 samples before the end
    values[4, 260:] = np.nan  # died
    values[5, ::2] = np.nan  # half the samples missing everywhere: still analysable
    values[5, 1::4] = np.nan
    res = analyze_block(ts, values, int(ts[255]), names=[f"s{i}" for i in range(6)])
    verdicts = {f.index: f.verdict for f in res.findings}
    assert verdicts[0] == "unchanged"
    assert verdicts[1] == "not_analysable"
    assert verdicts[2] == "unchanged"
    assert verdicts[3] == "appeared"
    assert verdicts[4] == "disappeared"
    assert verdicts[5] == "not_analysable"
    by = {f.index: f for f in res.findings}
    assert by[3].change_time == int(ts[250]) and by[3].after == pytest.approx(50, abs=1)


def test_too_short_a_window_is_not_analysable_not_a_crash() -> None:
    res = analyze_block([0, 60, 120], np.ones((4, 3)), 120)
    assert res.counts["not_analysable"] == 4


def test_trigger_row_proximity_and_irregular_time() -> None:
    rng = np.random.default_rng(5)
    m = 400
    ts = np.sort(rng.choice(np.arange(0, 60 * m * 2, 30), m, replace=False)) + 1_700_000_000
    values = rng.normal(0, 1, (3, m))
    step_at = ts[300]
    for row in range(3):
        values[row, ts >= step_at] += 8
    res = analyze_block(ts, values, int(step_at), trigger=0, proximity=[1.0, 1.0, 0.0])
    by = {f.index: f for f in res.findings}
    assert "the alerting signal itself" in by[0].explanation
    assert by[1].score > by[2].score
    assert by[1].proximity == 1.0


def test_bad_input_names_the_field() -> None:
    ts = np.arange(100) * 60
    values = np.zeros((3, 100))
    cases = [
        ({"names": ["a"]}, "names"),
        ({"proximity": [0.5, 2.0, 0.1]}, "proximity"),
        ({"trigger": np.zeros(5)}, "trigger"),
        ({"trigger": 9}, "trigger"),
        ({"history": np.zeros((3, 7))}, "history"),
        ({"options": {"seasonality": "weekly"}}, "seasonality"),
        ({"options": {"detect": {"method": "nope"}}}, "method"),
        ({"options": {"colour": 1}}, "unknown"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValueError, match=field):
            analyze_block(ts, values, 3000, **kwargs)
    with pytest.raises(AnalysisError, match="values"):
        analyze_block(ts, np.zeros((3, 99)), 3000)
    with pytest.raises(AnalysisError, match="alert_time"):
        analyze_block(ts, values, "noon")  # type: ignore[arg-type]
    assert AnalysisOptions.from_dict(AnalysisOptions().to_dict()) == AnalysisOptions()
