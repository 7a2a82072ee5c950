"""The shipped models beat their baselines on the data they are made for, and their flows
run end to end on Metaflow and serve through the API."""

from __future__ import annotations

import copy

import pytest
from ml_kit import start
from popcorn_testing import Api


def test_forecast_beats_seasonal_naive_by_rolling_origin() -> None:
    from popcorn.ml import forecast

    history = forecast.generate_history(["us-east", "eu-west"], weeks=6)
    scores = forecast.backtest(history, days=7)
    assert scores["origins"] == 14
    assert scores["model_mape"] < 0.9 * scores["naive_mape"]
    model = forecast.SeasonalProfile().fit(history)
    assert (
        model.predict([{"region": "us-east", "hours_ahead": 1}, {"region": "x", "hours_ahead": 1}])[
            1
        ]
        is None
    )


def test_bandit_beats_most_clicked_artwork_in_replay() -> None:
    from popcorn.ml import bandit

    log = bandit.generate_impressions(events=60_000)
    train = {k: v[:30_000] for k, v in log.items()}
    test = {k: v[30_000:] for k, v in log.items()}
    model = bandit.ArtworkBandit(6, 50).fit(train)
    learner = copy.deepcopy(model)
    ours = bandit.replay(test, lambda c, t, h: learner.choose(c, t, h), learn=learner.update)
    best = ((model.title_clicks + 1) / (model.title_views + 2)).argmax(axis=1)
    baseline = bandit.replay(test, lambda c, t, h: int(best[t]))
    assert ours["ctr"] > baseline["ctr"] > float(test["clicked"].mean()) * 0.95
    assert 5_000 < ours["matched"] < 10_000  # about a quarter of the events: 4 artworks


@pytest.mark.slow
def test_forecast_and_artwork_flows_train_promote_and_serve(api: Api) -> None:
    from popcorn.ml import service

    forecast_run = start("demand-forecast", weeks="4", regions="us-east,eu-west")
    service.execute_run(forecast_run)
    artwork_run = start("artwork-personalization", events="60000", titles="30")
    service.execute_run(artwork_run)
    for run_id in (forecast_run, artwork_run):
        found = api.get(f"/api/v1/ml/runs/{run_id}").json
        assert found["status"] == "succeeded", found["error"]
        assert found["promoted_version"] == 1  # beat its baseline
    card = api.get(f"/api/v1/ml/runs/{forecast_run}/cards/evaluate").get_data(as_text=True)
    assert "data:image/png;base64," in card  # the next week's chart, drawn on the server
    answer = api.post(
        "/api/v1/ml/models/demand-forecast/predict",
        json={"rows": [{"region": "eu-west", "hours_ahead": 6}]},
    ).json
    assert answer["predictions"][0] > 0
    answer = api.post(
        "/api/v1/ml/models/artwork-personalization/predict",
        json={"rows": [{"cluster": 1, "title": 4, "hour": 22}]},
    ).json
    assert answer["predictions"][0] in range(4)
    bad = api.post(
        "/api/v1/ml/models/demand-forecast/predict",
        json={"rows": [{"region": "eu-west", "hours_ahead": 1.5}]},
    )
    assert bad.status_code == 422 and bad.json["error"]["details"]["field"] == "rows[0].hours_ahead"

    # Traffic's predictive scaling plans a region from the promoted forecast.
    region = {"name": "eu-west", "instances": 2, "throughput_per_instance": 400.0}
    assert api.post("/api/v1/traffic/regions", json=region).status_code == 201
    made = api.post("/api/v1/traffic/forecasts", json={"region": "eu-west", "demand": "predicted"})
    assert made.status_code == 201, made.json
    plan = api.get(f"/api/v1/traffic/forecasts/{made.json['id']}").json
    assert plan["source"] == "ml" and plan["step_seconds"] == 3600 and len(plan["values"]) == 48
    assert "demand-forecast v1" in plan["backtest"]["mape"]
    assert plan["scaling"]["actions"]  # ~2,000 req/s at 400 per instance: it scales up
    assert plan["values"][0] == answer_for(api, "eu-west", plan["start"])
    unknown = api.post("/api/v1/traffic/regions", json={"name": "mars", "instances": 1})
    assert unknown.status_code == 201
    refused = api.post("/api/v1/traffic/forecasts", json={"region": "mars", "demand": "predicted"})
    assert refused.status_code == 422 and "no predicted demand" in refused.json["error"]["message"]
    five_minutes = {"region": "eu-west", "demand": "predicted", "step_seconds": 300}
    assert api.post("/api/v1/traffic/forecasts", json=five_minutes).status_code == 422


def answer_for(api: Api, region: str, start: str) -> float:
    """The model's own answer for the first hour after `start`, through the predict API."""
    from datetime import UTC, datetime

    from popcorn.db import session_scope
    from popcorn.ml import api as ml_api

    when = datetime.fromisoformat(start)
    with session_scope(readonly=True) as session:
        found = ml_api.region_demand(
            session=session, region=region, hours=1, start=when.replace(tzinfo=when.tzinfo or UTC)
        )
    assert found is not None
    return found.values[0]
