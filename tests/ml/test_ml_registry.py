"""The registry: a real (small) recommendations run trains, evaluates against popularity,
is promoted automatically, and serves predictions through the API with its version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from popcorn_testing import Api

pytestmark = pytest.mark.slow


def test_run_trains_beats_popularity_and_is_promoted(trained: dict[str, Any]) -> None:
    from popcorn.ml import tracking
    from popcorn.ml.runner import metaflow_root

    assert trained["status"] == "succeeded", trained["error"]
    assert trained["progress"]["done"] == trained["progress"]["total"] == 4
    assert trained["promoted_version"] == 1  # its recall@20 beat popularity's
    found = tracking.servable(f"RecommendationsFlow/{trained['metaflow_run_id']}")
    assert found is not None
    assert found["evaluation"]["model"] > found["evaluation"]["baseline"]
    # Metaflow's datastore is under the home, never in the working directory.
    assert (metaflow_root() / ".metaflow" / "RecommendationsFlow").is_dir()
    assert not (Path.cwd() / ".metaflow").exists()


def test_predict_serves_the_promoted_version(api: Api, recorded: int) -> None:
    assert (
        api.post(
            "/api/v1/ml/models/recommendations/predict",
            json={"rows": [{"member": 1}]},
            role="operator",
        ).status_code
        == 404
    )
    promoted = api.post("/api/v1/ml/models/promote", json={"run": recorded}, role="operator")
    assert promoted.status_code == 200, promoted.json
    assert promoted.json["promoted_version"] == 1
    answer = api.post(
        "/api/v1/ml/models/recommendations/predict",
        json={"rows": [{"member": 1}, {"member": 999_999}]},
        role="operator",
    )
    assert answer.status_code == 200, answer.json
    assert answer.json["version"] == 1
    assert len(answer.json["predictions"]) == 2
    assert all(len(titles) == 10 for titles in answer.json["predictions"])
    assert answer.json["predictions"][0][0].startswith("title-")


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([{"member": "one"}], "rows[0].member"),
        ([{"member": 1}, {}], "rows[1].member"),
        ([{"member": 1, "region": "x"}], "rows[0].region"),
        ([{"member": True}], "rows[0].member"),
    ],
)
def test_predict_names_the_field_that_does_not_fit(
    api: Api, recorded: int, rows: list[dict[str, Any]], field: str
) -> None:
    api.post("/api/v1/ml/models/promote", json={"run": recorded}, role="operator")
    answer = api.post(
        "/api/v1/ml/models/recommendations/predict", json={"rows": rows}, role="operator"
    )
    assert answer.status_code == 422
    assert answer.json["error"]["details"]["field"] == field


def test_promotion_and_rollback_are_audited_events(api: Api, recorded: int) -> None:
    from sqlalchemy import select

    from popcorn.audit import records_for
    from popcorn.db import session_scope
    from popcorn.ml.models import MlModel
    from popcorn.outbox import OutboxEvent

    for _ in range(2):
        assert api.post("/api/v1/ml/models/promote", json={"run": recorded}).status_code == 200
    # The same run promoted twice is one version; a second run makes a second version.
    with session_scope() as session:
        from popcorn.ml.models import MlRun

        second = MlRun(
            **{
                c: getattr(session.get(MlRun, recorded), c)
                for c in ("flow", "status", "metaflow_flow", "metaflow_run_id", "created_at")
            }
        )
        session.add(second)
        session.flush()
        second_id = second.id
    assert (
        api.post("/api/v1/ml/models/promote", json={"run": second_id}).json["promoted_version"] == 2
    )
    shown = api.get("/api/v1/ml/models/recommendations").json
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert (
        api.post("/api/v1/ml/models/recommendations/rollback", json={}, role="viewer").status_code
        == 403
    )
    back = api.post("/api/v1/ml/models/recommendations/rollback", json={}, role="operator")
    assert back.json["promoted_version"] == 1
    answer = api.post(
        "/api/v1/ml/models/recommendations/predict", json={"rows": [{"member": 1}]}, role="operator"
    )
    assert answer.json["version"] == 1
    with session_scope(readonly=True) as session:
        model = session.scalar(select(MlModel))
        actions = [r.action for r in records_for(session, "ml_model", model.id)]
        events = list(
            session.scalars(select(OutboxEvent.type).where(OutboxEvent.type.like("ml.model.%")))
        )
    assert actions.count("promote") == 3 and "rollback" in actions
    assert events.count("ml.model.promoted") == 3 and events.count("ml.model.rolled_back") == 1


def test_stored_model_that_was_changed_is_not_loaded(api: Api, recorded: int) -> None:
    from popcorn.db import session_scope
    from popcorn.ml import registry
    from popcorn.storage import get_store

    api.post("/api/v1/ml/models/promote", json={"run": recorded})
    with session_scope(readonly=True) as session:
        version = registry.promoted_version(session=session, name="recommendations")
        key = version.object_key
    registry._loaded.clear()
    store = get_store()
    original = store.get(key)
    try:
        store.delete(key)
        store.put(key, b"not what popcorn stored")
        answer = api.post(
            "/api/v1/ml/models/recommendations/predict",
            json={"rows": [{"member": 1}]},
            role="operator",
        )
        assert answer.status_code == 409
        assert "digest" in answer.json["error"]["message"]
    finally:
        store.delete(key)
        store.put(key, original)


def test_card_is_served_sandboxed_and_shows_the_verdict(api: Api, recorded: int) -> None:
    detail = api.get(f"/api/v1/ml/runs/{recorded}").json
    steps = {s["name"]: s for s in detail["metaflow"]["steps"]}
    assert list(steps) == ["start", "train", "evaluate", "end"]
    assert steps["evaluate"]["cards"] == 1
    names = {a["name"] for a in detail["metaflow"]["artifacts"]}
    assert {"model", "evaluation", "input_schema"} <= names
    card = api.get(f"/api/v1/ml/runs/{recorded}/cards/evaluate")
    assert card.status_code == 200
    assert "sandbox" in card.headers["Content-Security-Policy"]
    text = card.get_data(as_text=True)
    assert "beats the baseline" in text and "popularity" in text
    assert api.get(f"/api/v1/ml/runs/{recorded}/cards/train").status_code == 404


def test_traffic_reads_predicted_title_demand(api: Api, recorded: int) -> None:
    from popcorn.db import session_scope
    from popcorn.ml import api as ml_api

    with session_scope(readonly=True) as session:
        assert ml_api.title_demand(session=session, region="us-east") == {}
    api.post("/api/v1/ml/models/promote", json={"run": recorded})
    with session_scope(readonly=True) as session:
        demand = ml_api.title_demand(session=session, region="us-east")
        assert ml_api.promoted(session=session, name="recommendations") is not None
    assert len(demand) > 50
    assert all(v >= 0 for v in demand.values())


def test_traffic_placement_plans_from_predicted_demand(api: Api, recorded: int) -> None:
    from popcorn.db import session_scope
    from popcorn.traffic import placements
    from popcorn.traffic import schemas as ts

    regions = {"iad-1": "us-east", "lhr-1": "eu-west"}
    with session_scope(readonly=True) as session:
        assert placements.ml_popularity(session=session, regions=regions) == []
    api.post("/api/v1/ml/models/promote", json={"run": recorded})
    with session_scope() as session:
        rows = placements.ml_popularity(session=session, regions=regions)
        assert {r.site for r in rows} == {"iad-1", "lhr-1"}
        titles = sorted({r.title for r in rows})
        spec = ts.PlacementCreate(
            popularity=rows,
            sizes=[ts.SizeRow(title=t, size=5.0) for t in titles],
            storage=[ts.StorageRow(site=site, storage=100.0) for site in regions],
        )
        plan = placements.create_placement(session=session, spec=spec)
        assert 0 < plan.local_share < 1
    # The API plans from the same predictions when asked, and says what it used.
    body = {
        "demand": "predicted",
        "site_regions": regions,
        "sizes": [{"title": t, "size": 5.0} for t in titles],
        "storage": [{"site": site, "storage": 100.0} for site in regions],
    }
    made = api.post("/api/v1/traffic/placements", json=body)
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["summary"]["demand"] == "predicted"
    assert made.get_json()["local_share"] == plan.local_share
    unknown = api.post(
        "/api/v1/traffic/placements", json={**body, "site_regions": {"iad-1": "mars"}}
    )
    assert (
        unknown.status_code == 422
        and "promote a recommendations" in unknown.get_json()["error"]["message"]
    )
    missing = api.post("/api/v1/traffic/placements", json={**body, "site_regions": {}})
    assert missing.status_code == 422 and "site_regions" in missing.get_json()["error"]["message"]


def test_traffic_cli_plans_placement_from_predicted_demand(
    api: Api, recorded: int, tmp_path: Path
) -> None:
    import json

    from click.testing import CliRunner

    from popcorn.cli import cli
    from popcorn.db import session_scope
    from popcorn.ml import api as ml_api
    from popcorn.traffic.cli import group

    cli.add_command(group)
    api.post("/api/v1/ml/models/promote", json={"run": recorded})
    sizes = tmp_path / "sizes.csv"
    with session_scope(readonly=True) as session:
        titles = sorted(ml_api.title_demand(session=session, region="us-east"))
    sizes.write_text("title,size\n" + "".join(f"{title},5\n" for title in titles))
    args = ["traffic", "placement", "--sizes", str(sizes), "--demand", "predicted",
            "--site-region", "iad-1=us-east", "--site-region", "lhr-1=eu-west"]  # fmt: skip
    storage = tmp_path / "storage.csv"
    storage.write_text("site,storage\niad-1,100\nlhr-1,100\n")
    done = CliRunner().invoke(cli, [*args, "--storage", str(storage), "--json"])
    assert done.exit_code == 0, done.output
    plan = json.loads(done.output)
    assert plan["summary"]["demand"] == "predicted" and 0 < plan["local_share"] < 1
    bad = CliRunner().invoke(cli, [*args[:-1], "iad-1"])
    assert bad.exit_code != 0 and "SITE=REGION" in bad.output and "Traceback" not in bad.output
    both = CliRunner().invoke(cli, [*args, "--popularity", str(sizes)])
    assert both.exit_code != 0 and "--popularity" in both.output


def test_metrics_show_runs_and_the_served_version(api: Api, recorded: int) -> None:
    api.post("/api/v1/ml/models/promote", json={"run": recorded})
    text = api.get("/metrics").get_data(as_text=True)
    assert 'popcorn_ml_runs{flow="recommendations",status="succeeded"} 1.0' in text
    assert 'popcorn_ml_model_promoted_version{model="recommendations"} 1.0' in text


def test_python_client_ml_section(app: Any, tokens: dict[str, str], recorded: int) -> None:
    import httpx

    from popcorn.client import Client, PopcornAPIError

    transport = httpx.WSGITransport(app=app)
    with Client("http://popcorn", tokens["operator"], transport=transport) as client:
        assert "recommendations" in {f["name"] for f in client.ml.flows()}
        assert [r["id"] for r in client.ml.runs(flow="recommendations")] == [recorded]
        with pytest.raises(PopcornAPIError) as none:
            client.ml.predict("recommendations", [{"member": 1}])
        assert none.value.status == 404
        promoted = client.ml.promote(recorded)
        assert promoted["promoted_version"] == 1
        assert client.ml.models()[0]["name"] == "recommendations"
        answer = client.ml.predict("recommendations", [{"member": 3}])
        assert answer["version"] == 1 and len(answer["predictions"][0]) == 10
        assert "beats the baseline" in client.ml.card(recorded, "evaluate")
        with pytest.raises(PopcornAPIError) as bad:
            client.ml.predict("recommendations", [{"member": "x"}])
        assert bad.value.status == 422 and bad.value.details["field"] == "rows[0].member"
        made = client.ml.schedule("nightly-recs", "recommendations", cron="0 3 * * *")
        assert made["name"] == "nightly-recs"
        assert [s["name"] for s in client.ml.schedules()] == ["nightly-recs"]
        client.ml.unschedule("nightly-recs")
        assert client.ml.schedules() == []
