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
