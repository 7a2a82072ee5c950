"""The signals API: ingest, series, queries, settings, and an alert analysis that finds the
planted culprits of a generated incident."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.outbox import OutboxEvent
from popcorn.signals import store
from popcorn.signals.generate import Incident, generate_incident

T0 = 1_772_445_600  # 2026-03-02T10:00:00Z
INGEST = "/api/v1/signals/ingest"


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def test_ingest_then_query_with_gaps(api: Any) -> None:
    body = {
        "series": [
            {
                "metric": "cache_hit_ratio",
                "labels": {"site": "ams1", "device": "oc-1"},
                "timestamps": [T0, T0 + 60, T0 + 240],
                "values": [0.9, 0.8, 0.7],
            },
            {
                "metric": "cache_hit_ratio",
                "labels": {"site": "lhr2", "device": "oc-9"},
                "samples": [[T0, 0.5]],
            },
        ]
    }
    res = api.post(INGEST, json=body, role="operator")
    assert res.status_code == 201, res.json
    assert res.json["samples"] == 4 and res.json["new_series"] == 2

    res = api.get('/api/v1/signals/series?match=cache_hit_ratio{site="ams1"}', role="viewer")
    assert res.status_code == 200
    assert [s["device"] for s in res.json["items"]] == ["oc-1"] and res.json["count"] == 1
    series_id = res.json["items"][0]["id"]
    res = api.get(f"/api/v1/signals/series/{series_id}", role="viewer")
    assert res.json["sample_count"] == 3 and res.json["labels"] == {
        "site": "ams1",
        "device": "oc-1",
    }
    assert api.get("/api/v1/signals/series?site=lhr2", role="viewer").json["count"] == 1

    res = api.get(
        "/api/v1/signals/query",
        query_string={
            "query": 'cache_hit_ratio{device=~"oc-.*"}',
            "start": T0,
            "end": T0 + 300,
            "step": "60s",
        },
        role="viewer",
    )
    assert res.status_code == 200, res.json
    ams, lhr = res.json["series"]
    assert ams["timestamps"] == [T0 + 60 * i for i in range(6)]  # `end` inclusive
    assert ams["values"] == [0.9, 0.8, None, None, 0.7, None]
    assert lhr["values"] == [0.5, None, None, None, None, None]
    scraped = api.get("/metrics", role=None).data.decode()
    assert "popcorn_signals_series 2.0" in scraped and "popcorn_signals_samples 4.0" in scraped


def test_prometheus_text_over_http(api: Any) -> None:
    text = f'node_load1{{instance="a:9100"}} 0.5\nnode_load1{{instance="b:9100"}} 1.5 {T0}000\n'
    res = api.post(
        INGEST,
        data=text,
        headers={"Content-Type": "text/plain; version=0.0.4"},
        query_string={"time": T0 + 30},
        role="operator",
    )
    assert res.status_code == 201, res.json
    res = api.get(
        "/api/v1/signals/query",
        query_string={"query": "node_load1", "start": T0, "end": T0 + 60},
        role="viewer",
    )
    assert [(s["timestamps"], s["values"]) for s in res.json["series"]] == [
        ([T0 + 30], [0.5]),
        ([T0], [1.5]),
    ]


def test_bad_input_is_a_clear_4xx_and_stores_nothing(api: Any) -> None:
    bad = {
        "series": [
            {"metric": "ok", "samples": [[T0, 1]]},
            {"metric": "m", "timestamps": [T0, T0 + 1], "values": [1, "NaN"]},
        ]
    }
    res = api.post(INGEST, json=bad, role="operator")
    assert res.status_code == 422
    assert res.json["error"]["message"] == "series[1]: values[1] = 'NaN' is not a number"
    res = api.post(
        INGEST,
        data='{"series": [{"metric": "m", "samples": [[1772445600, NaN]]}]}',
        headers={"Content-Type": "application/json"},
        role="operator",
    )
    assert res.status_code == 422 and "not a finite number" in res.json["error"]["message"]
    assert api.get("/api/v1/signals/series", role="viewer").json["count"] == 0
    res = api.post(INGEST, data="x 1", headers={"Content-Type": "text/csv"}, role="operator")
    assert res.status_code == 422 and "Content-Type" in res.json["error"]["message"]
    assert api.post(INGEST, json={"series": []}, role="viewer").status_code == 403
    assert api.post(INGEST, json={"series": []}, role="operator").status_code == 422

    api.post(INGEST, json={"series": [{"metric": "m", "samples": [[T0, 1]]}]}, role="operator")

    def q(**args: Any) -> Any:
        return api.get("/api/v1/signals/query", query_string=args, role="viewer")

    res = q(query='m{a="b"', start=T0, end=T0 + 60)
    assert res.status_code == 422 and "missing '}'" in res.json["error"]["message"]
    assert q(query="nothing_like_this", start=T0, end=T0 + 60).status_code == 404
    res = q(query="m", start=T0 + 600, end=T0 + 900)
    assert res.status_code == 404 and "no samples" in res.json["error"]["message"]
    assert q(query="m", start=T0, end=T0 + 60, step="1s", agg="median").status_code == 422
    assert q(query="m", start=T0, end=T0 + 86400 * 30, step="1s").status_code == 422


def test_retention_settings_need_admin(api: Any) -> None:
    assert api.get("/api/v1/signals/settings", role="viewer").json == {"retention_days": 30}
    res = api.put("/api/v1/signals/settings", json={"retention_days": 7}, role="operator")
    assert res.status_code == 403
    res = api.put("/api/v1/signals/settings", json={"retention_days": 7}, role="admin")
    assert res.status_code == 200 and res.json == {"retention_days": 7}
    assert api.put("/api/v1/signals/settings", json={"retention_days": 0}).status_code == 422
    stats = api.get("/api/v1/signals/stats", role="viewer").json
    assert stats["retention_days"] == 7 and stats["series"] == 0
    audit = api.get("/api/v1/audit?object_type=signals_settings", role="admin").json
    assert audit["items"][0]["diff"] == {"retention_days": [30, 7]}


# --------------------------------------------------------------------------- analysis


def metric_of(name: str) -> str:
    return name.split(".")[1].split("#")[0]


def incident_payload(incident: Incident) -> list[dict[str, Any]]:
    """The incident as stored signals, plus the previous day for seasonality."""
    out = []
    ts = incident.timestamps.astype(float)
    for i, name in enumerate(incident.names):
        labels = {
            "service": name.split(".")[0],
            "signal": str(i),
            "site": "ams1" if i % 3 else "lhr2",
        }
        for values, shift in ((incident.values[i], 0), (incident.history[i], 86_400)):
            ok = np.isfinite(values)
            out.append(
                {
                    "metric": metric_of(name),
                    "labels": labels,
                    "timestamps": (ts[ok] - shift).tolist(),
                    "values": values[ok].tolist(),
                }
            )
    out.append(
        {
            "metric": "play_errors_rate",
            "labels": {"site": "ams1"},
            "timestamps": ts.tolist(),
            "values": incident.trigger.tolist(),
        }
    )
    return out


def planted(incident: Incident) -> set[int]:
    return set(incident.culprits) | {f for fs in incident.followers.values() for f in fs}


@pytest.fixture(scope="module")
def incident() -> Incident:
    return generate_incident(200, 480, seed=5)


def test_analysis_finds_the_planted_culprits(api: Any, incident: Incident) -> None:
    res = api.post(INGEST, json={"series": incident_payload(incident)}, role="operator")
    assert res.status_code == 201, res.json
    res = api.post(
        "/api/v1/signals/analyses",
        role="operator",
        json={
            "alert_time": incident.alert_time,
            "trigger": 'play_errors_rate{site="ams1"}',
            "selector": '{service=~".+"}',
            "window_minutes": 450,
            "after_minutes": 30,
        },
    )
    assert res.status_code == 201, res.json
    analysis = res.json
    assert analysis["status"] == "finished" and analysis["signal_count"] == 200
    result = analysis["result"]
    assert result["counts"]["changed"] >= len(planted(incident))

    def signal(series_id: int) -> int:
        got = api.get(f"/api/v1/signals/series/{series_id}", role="viewer").json
        return int(got["labels"]["signal"])

    wanted = planted(incident)
    top = [signal(f["series_id"]) for f in result["findings"][: len(wanted)]]
    assert set(top) == wanted
    culprit_findings = [
        f for f in result["findings"] if signal(f["series_id"]) in incident.culprits
    ]
    assert all(-15 * 60 <= f["offset_seconds"] < 0 for f in culprit_findings)
    leading = [c for c in result["clusters"] if c["score"] > 0.5]
    assert {signal(s) for c in leading for s in c["member_series"]} == wanted

    shown = api.get(f"/api/v1/signals/analyses/{analysis['id']}", role="viewer").json
    assert shown["result"] == result
    listed = api.get("/api/v1/signals/analyses?status=finished", role="viewer").json
    assert [a["id"] for a in listed["items"]] == [analysis["id"]]

    culprit = culprit_findings[0]["series_id"]
    png = api.get(f"/api/v1/signals/analyses/{analysis['id']}/plot/{culprit}.png", role="viewer")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data.startswith(b"\x89PNG\r\n\x1a\n")
    trigger_id = api.get("/api/v1/signals/series?metric=play_errors_rate", role="viewer").json
    other = api.get(f"/api/v1/signals/analyses/{analysis['id']}/plot/999999.png", role="viewer")
    assert other.status_code == 404 and trigger_id["count"] == 1

    with session_scope(readonly=True) as session:
        (event,) = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "signals.analysis.completed")
        ).all()
        assert event.payload["analysis_id"] == analysis["id"]
        assert [t["series_id"] for t in event.payload["top"]] == [
            f["series_id"] for f in result["findings"][:5]
        ]


def test_analysis_by_scope_and_its_errors(api: Any, incident: Incident) -> None:
    api.post(INGEST, json={"series": incident_payload(incident)}, role="operator")

    def analyze(**body: Any) -> Any:
        body = {"alert_time": incident.alert_time, "window_minutes": 450, **body}
        return api.post("/api/v1/signals/analyses", json=body, role="operator")

    res = analyze(scope={"site": "lhr2"}, trigger="play_errors_rate")
    assert res.status_code == 201, res.json
    lhr2 = {i for i in range(200) if i % 3 == 0}
    assert res.json["signal_count"] == len(lhr2)

    res = analyze(selector="no_such_metric")
    assert res.status_code == 404
    res = analyze(selector='{service=~".+"}', trigger='{service=~".+"}')
    assert res.status_code == 422 and "more than one series" in res.json["error"]["message"]
    res = api.post(
        "/api/v1/signals/analyses",
        role="operator",
        json={"alert_time": incident.alert_time + 30 * 86_400, "selector": '{service=~".+"}'},
    )
    assert (
        res.status_code == 404 and "no candidate signal has samples" in res.json["error"]["message"]
    )
    res = analyze(selector='{service=~".+"}', options={"bogus": 1})
    assert res.status_code == 422 and "bogus" in res.json["error"]["message"]
    assert analyze(selector='{service=~".+"}', window_minutes=1).status_code == 422
    assert api.get("/api/v1/signals/analyses/424242", role="viewer").status_code == 404
