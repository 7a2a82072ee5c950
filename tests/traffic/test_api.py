"""Traffic API: roles, envelopes, uploads, plans, plots, executions and the Python client."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from popcorn_testing import Api

from popcorn.client import Client, PopcornAPIError

BASE = "/api/v1/traffic"


def build(api: Api) -> None:
    for body in (
        {"name": "east", "capacity": 100.0},
        {"name": "west", "instances": 4, "throughput_per_instance": 25.0, "max_instances": 10},
    ):
        assert api.post(f"{BASE}/regions", json=body, role="operator").status_code == 201
    for name, demand in (("a", 60.0), ("b", 50.0)):
        response = api.post(f"{BASE}/groups", json={"name": name, "demand": demand})
        assert response.status_code == 201
    costs = {"a": {"east": 10, "west": 40}, "b": {"east": 40, "west": 10}}
    assert api.put(f"{BASE}/costs", json=costs).status_code == 200


def test_reads_need_viewer_changes_operator_and_settings_admin(api: Api) -> None:
    assert api.get(f"{BASE}/regions", role=None).status_code == 401
    assert api.get(f"{BASE}/regions", role="viewer").json["items"] == []
    denied = api.post(f"{BASE}/regions", json={"name": "x", "capacity": 1}, role="viewer")
    assert denied.status_code == 403
    patch = {"aws_endpoint_url": "http://127.0.0.1:5000"}
    assert api.patch(f"{BASE}/settings", json=patch, role="operator").status_code == 403
    changed = api.patch(f"{BASE}/settings", json=patch, role="admin")
    assert (
        changed.status_code == 200 and changed.json["aws_endpoint_url"] == patch["aws_endpoint_url"]
    )
    assert api.get(f"{BASE}/settings", role="viewer").json["aws_region"] == "us-east-1"


def test_bad_region_input_is_a_422_envelope(api: Api) -> None:
    build(api)
    duplicate = api.post(f"{BASE}/regions", json={"name": "east", "capacity": 1})
    assert duplicate.status_code == 409
    bad = api.post(f"{BASE}/regions", json={"name": "x", "capacity": 1, "headroom": 1.5})
    assert bad.status_code == 422 and "headroom" in bad.json["error"]["details"]["fields"]
    typo = api.post(f"{BASE}/regions", json={"name": "y", "capacty": 1})
    assert typo.status_code == 422
    unknown = api.get(f"{BASE}/regions?colour=red")
    assert unknown.status_code == 422 and "unknown filter" in unknown.json["error"]["message"]
    assert api.get(f"{BASE}/regions?kind=cloud").json["count"] == 2


def test_costs_upload_as_csv_or_file_and_a_wrong_shape_changes_nothing(api: Api) -> None:
    build(api)
    csv_body = "group,east,west\na,1,2\nb,3,4\n"
    response = api.put(f"{BASE}/costs", data=csv_body, content_type="text/csv")
    assert response.status_code == 200 and response.json["pairs"] == 4
    upload = api.put(
        f"{BASE}/costs?replace=false",
        data={"file": (io.BytesIO(b"group,region,cost\na,east,7\n"), "costs.csv")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 200
    wrong = {"groups": ["a", "b"], "regions": ["east", "west"], "matrix": [[1, 2], [3]]}
    bad = api.put(f"{BASE}/costs", json=wrong)
    assert bad.status_code == 422
    assert bad.json["error"]["message"].startswith("cost: matrix row 1 (group 'b') has 1 costs")
    assert api.get(f"{BASE}/costs").json["matrix"] == [[7.0, 2.0], [3.0, 4.0]]


def test_plans_evacuations_returns_and_plots(api: Api) -> None:
    build(api)
    plan = api.post(f"{BASE}/plans", json={"reason": "test"})
    assert plan.status_code == 201 and plan.json["feasible"] is True
    evac = api.post(f"{BASE}/evacuations", json={"evacuate": ["east"], "steps": 3})
    assert evac.status_code == 201 and evac.json["summary"]["scale_up"] == {"west": [4, 5]}
    back = api.post(f"{BASE}/plans/{evac.json['id']}/return", json={})
    assert back.status_code == 201 and back.json["parent_id"] == evac.json["id"]
    plot = api.get(f"{BASE}/plans/{evac.json['id']}/plot.png", role="viewer")
    assert plot.status_code == 200 and plot.mimetype == "image/png"
    assert api.get(f"{BASE}/plans/{plan.json['id']}/plot.png").data.startswith(b"\x89PNG")
    listed = api.get(f"{BASE}/plans?kind=evacuation", role="viewer").json
    assert [p["id"] for p in listed["items"]] == [evac.json["id"]]
    assert "result" not in listed["items"][0]


def test_impossible_plans_are_reports_and_bad_ones_422(api: Api) -> None:
    build(api)
    short = api.post(f"{BASE}/plans", json={"demand": {"a": 500.0}})
    assert short.status_code == 201 and short.json["feasible"] is False
    assert short.json["summary"]["total_shortfall"] == pytest.approx(350.0)
    everything = api.post(f"{BASE}/evacuations", json={"evacuate": ["east", "west"]})
    assert everything.status_code == 422
    assert everything.json["error"]["details"] == {"field": "evacuate"}
    negative = api.post(f"{BASE}/plans", json={"demand": {"a": -5}})
    assert negative.status_code == 422 and "must be >= 0" in negative.json["error"]["message"]
    unknown = api.post(f"{BASE}/evacuations", json={"evacuate": ["mars"]})
    assert (
        unknown.status_code == 422 and "unknown region 'mars'" in unknown.json["error"]["message"]
    )
    assert api.get(f"{BASE}/plans").json["count"] == 1
    refused = api.post(f"{BASE}/plans/{short.json['id']}/execute", json={})
    assert refused.status_code == 409
    missing = api.post(f"{BASE}/shifts", json={"site": "nowhere"})
    assert missing.status_code == 404


def test_an_execution_is_queued_listed_and_canceled(api: Api) -> None:
    build(api)
    for name in ("east", "west"):
        binding = {
            "asg_name": f"asg-{name}",
            "route53_zone_id": "Z1",
            "route53_record_name": "api.example.com",
        }
        assert api.patch(f"{BASE}/regions/{name}", json=binding).status_code == 200
    evac = api.post(f"{BASE}/evacuations", json={"evacuate": ["east"], "steps": 2}).json
    queued = api.post(f"{BASE}/plans/{evac['id']}/execute", json={"dwell_seconds": 0})
    assert queued.status_code == 202 and queued.json["status"] == "pending"
    execution_id = queued.json["id"]
    shown = api.get(f"{BASE}/executions/{execution_id}", role="viewer").json
    assert shown["options"]["bindings"]["west"]["asg_name"] == "asg-west"
    assert shown["total_steps"] == 3
    canceled = api.post(f"{BASE}/executions/{execution_id}/cancel")
    assert canceled.status_code == 200 and canceled.json["status"] == "canceled"
    assert api.get(f"{BASE}/executions?status=canceled").json["count"] == 1
    history = api.get(f"{BASE}/regions/west/history").json["items"]
    assert [h["action"] for h in history] == ["create", "update"]


def test_forecasts_and_placements(api: Api) -> None:
    history = [100 + 50 * ((i % 24) / 24) for i in range(24 * 15)]
    made = api.post(
        f"{BASE}/forecasts", json={"history": history, "step_seconds": 3600, "horizon": 12}
    )
    assert made.status_code == 201 and len(made.json["values"]) == 12
    assert set(made.json["backtest"]["mape"]) >= {"regression", "fft", "seasonal_naive"}
    plot = api.get(f"{BASE}/forecasts/{made.json['id']}/plot.png")
    assert plot.mimetype == "image/png"
    both = api.post(f"{BASE}/forecasts", json={"history": history, "selector": "x"})
    assert both.status_code == 422

    files = {
        "popularity": (io.BytesIO(b"site,title,requests\ns1,t1,10\ns1,t2,5\n"), "pop.csv"),
        "sizes": (
            io.BytesIO(b'[{"title": "t1", "size": 2}, {"title": "t2", "size": 1}]'),
            "s.json",
        ),
        "storage": (io.BytesIO(b"site,storage\ns1,2\n"), "storage.csv"),
    }
    placed = api.post(f"{BASE}/placements", data=files, content_type="multipart/form-data")
    assert placed.status_code == 201, placed.json
    assert placed.json["result"]["sites"][0]["titles"] == ["t1"]
    bad = api.post(
        f"{BASE}/placements",
        json={"popularity": [{"site": "s1", "title": "t1", "requests": 1}], "sizes": []},
    )
    assert bad.status_code == 422 and bad.json["error"]["message"].startswith("sizes")


def test_the_python_client_plans_over_the_api(app: Any, tokens: dict[str, str]) -> None:
    transport = httpx.WSGITransport(app=app)
    with Client("http://popcorn", tokens["operator"], transport=transport) as client:
        client.traffic.create_region("east", capacity=100.0)
        client.traffic.create_region("west", capacity=100.0)
        client.traffic.create_group("a", demand=50.0)
        client.traffic.set_costs({"a": {"east": 1, "west": 2}})
        plan = client.traffic.plan()
        evac = client.traffic.evacuate(["east"], steps=2)
        assert [r["name"] for r in client.traffic.regions()] == ["east", "west"]
        assert plan["feasible"] and evac["feasible"]
        assert client.traffic.plan_png(evac["id"]).startswith(b"\x89PNG")
        with pytest.raises(PopcornAPIError) as err:
            client.traffic.evacuate(["east", "west"])
        assert err.value.status == 422
