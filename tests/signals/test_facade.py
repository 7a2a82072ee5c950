"""The signals facade other domains use: typed answers from a real database and store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import numpy as np
import pytest

from popcorn.db import session_scope
from popcorn.errors import NotFound
from popcorn.signals import api as signals_api
from popcorn.signals import service, store
from popcorn.signals.generate import generate_incident


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def _ingest_incident() -> int:
    incident = generate_incident(60, 400, seed=5)
    ts = incident.timestamps.astype(float)
    series = [
        {
            "metric": "m",
            "labels": {"site": "ams1", "signal": str(i)},
            "timestamps": ts[np.isfinite(incident.values[i])].tolist(),
            "values": incident.values[i][np.isfinite(incident.values[i])].tolist(),
        }
        for i in range(len(incident.names))
    ]
    series.append(
        {"metric": "errors", "timestamps": ts.tolist(), "values": incident.trigger.tolist()}
    )
    with session_scope() as session:
        service.ingest_json(session=session, payload={"series": series})
    return int(incident.alert_time)


def test_query_returns_the_samples_of_the_matching_series() -> None:
    with session_scope() as session:
        service.ingest_json(
            session=session,
            payload={
                "series": [
                    {"metric": "up", "labels": {"job": "a"}, "samples": [[100, 1], [160, 0]]}
                ]
            },
        )
    with session_scope(readonly=True) as session:
        result = signals_api.query(session=session, selector='up{job="a"}', start=0, end=1000)
        assert isinstance(result, signals_api.QueryResult)
        assert [s.metric for s in result.series] == ["up"]
        assert result.values[0].tolist() == [1.0, 0.0]
        with pytest.raises(NotFound):
            signals_api.query(session=session, selector='up{job="b"}', start=0, end=1000)


def test_analyze_alert_answers_a_typed_summary_with_ranked_findings() -> None:
    alert = _ingest_incident()
    summary = signals_api.analyze_alert(
        alert_time=alert, trigger="errors", selector='{site="ams1"}'
    )
    assert isinstance(summary, signals_api.AnalysisSummary)
    assert summary.status == "finished"
    assert 50 <= summary.signal_count <= 60
    findings = summary.result["findings"]
    assert findings and all("series_id" in f and "verdict" in f for f in findings)
    with session_scope(readonly=True) as session:
        stored = service.get_analysis(session=session, analysis_id=summary.id)
        assert stored.result == summary.result
