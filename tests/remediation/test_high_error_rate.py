"""The service pack: a high error rate alert gets ranked signal evidence from signals."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from remediation_kit import detail, drain, events, start, steps

from popcorn.db import session_scope
from popcorn.signals import rank, store
from popcorn.signals import service as signals
from popcorn.signals.generate import generate_incident

pytestmark = pytest.mark.usefixtures("test_packs")


@pytest.fixture
def incident() -> Iterator[Any]:
    """60 signals around an alert, three of them planted culprits, ingested through signals."""
    made = generate_incident(60, 400, seed=5)
    ts = made.timestamps.astype(float)
    series = []
    for i, name in enumerate(made.names):
        ok = np.isfinite(made.values[i])
        series.append(
            {
                "metric": name.split(".")[1].split("#")[0],
                "labels": {"service": name.split(".")[0], "signal": str(i)},
                "timestamps": ts[ok].tolist(),
                "values": made.values[i][ok].tolist(),
            }
        )
    series.append(
        {"metric": "play_errors_rate", "timestamps": ts.tolist(), "values": made.trigger.tolist()}
    )
    with session_scope() as session:
        signals.ingest_json(session=session, payload={"series": series})
    yield made
    shutil.rmtree(store.root(), ignore_errors=True)


def test_ranked_signals_are_attached_to_the_execution_as_evidence(incident: Any) -> None:
    alert = datetime.fromtimestamp(incident.alert_time, UTC).isoformat()
    execution_id = start(
        "service.high_error_rate",
        {
            "alert_time": alert,
            "trigger": "play_errors_rate",
            "selector": '{service=~".+"}',
            "window_minutes": 370,
            "top": 5,
        },
    )
    drain()
    shown = detail(execution_id)
    assert shown["status"] == "succeeded", shown["error"]
    evidence = shown["evidence"]
    assert len(evidence) == 1 and evidence[0]["source"] == "signals"
    assert evidence[0]["step"] == "rank_signals"
    findings = evidence[0]["findings"]
    assert 1 <= len(findings) <= 5
    planted = set(incident.culprits) | {f for fs in incident.followers.values() for f in fs}
    with session_scope(readonly=True) as session:
        analysis = signals.get_analysis(session=session, analysis_id=evidence[0]["analysis_id"])
        assert evidence[0]["signal_count"] == analysis.signal_count > 50
        found = {
            int(signals.get_series(session=session, series_id=f["series_id"]).labels["signal"])
            for f in findings
        }
    assert found & planted  # the planted culprits rank at the top
    suspects = steps(execution_id)["name_suspects"]["outputs"]
    assert suspects["suspects"][0] == findings[0]["name"]
    assert "changed first" in suspects["summary"]
    completed = [p for t, _, p in events("signals.analysis.completed")]
    assert completed and completed[0]["analysis_id"] == evidence[0]["analysis_id"]


def test_writes_go_through_while_the_ranking_step_computes(
    incident: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ranking holds no write lock: an ingest from another thread commits mid-ranking."""
    ranking, written = threading.Event(), threading.Event()
    seen: list[bool] = []
    real = rank.analyze_block

    def paused(*args: Any, **kwargs: Any) -> Any:
        ranking.set()
        seen.append(written.wait(20))  # shorter than SQLite's busy timeout: a held lock fails
        return real(*args, **kwargs)

    monkeypatch.setattr(rank, "analyze_block", paused)
    alert = datetime.fromtimestamp(incident.alert_time, UTC).isoformat()
    execution_id = start(
        "service.high_error_rate",
        {"alert_time": alert, "trigger": "play_errors_rate", "selector": '{service=~".+"}'},
    )
    runner = threading.Thread(target=drain)
    runner.start()
    try:
        assert ranking.wait(60), "the ranking step never started"
        with session_scope() as session:
            signals.ingest_json(
                session=session,
                payload={"series": [{"metric": "beside_ranking", "samples": [[100, 1.0]]}]},
            )
        written.set()
    finally:
        written.set()
        runner.join()
    assert seen == [True]
    assert detail(execution_id)["status"] == "succeeded"


def test_an_alert_without_data_fails_clearly_without_retrying() -> None:
    execution_id = start(
        "service.high_error_rate",
        {"alert_time": "2031-01-01T00:00:00Z", "selector": '{service="nothing"}'},
    )
    drain()
    shown = detail(execution_id)
    assert shown["status"] == "failed"
    rank = steps(execution_id)["rank_signals"]
    assert rank["attempts"] == 1 and rank["error"].startswith("NotFound: no candidate signal")


def test_inputs_are_checked_before_anything_runs() -> None:
    from popcorn.errors import InvalidInput

    with pytest.raises(InvalidInput, match=r"inputs\.alert_time"):
        start("service.high_error_rate", {"selector": "{}"})
    with pytest.raises(InvalidInput, match=r"inputs\.window_minutes"):
        start(
            "service.high_error_rate", {"alert_time": "2031-01-01T00:00:00Z", "window_minutes": 1}
        )
