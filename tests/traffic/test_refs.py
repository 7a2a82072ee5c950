"""Names and ids a client types reach the database only when they can be a row: ids of 2^63
and above, Unicode digits and over-deep JSON answer a 4xx in the error envelope, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from popcorn_testing import Api

BASE = "/api/v1/traffic"
HUGE = [str(2**63), str(2**64 + 5), "9" * 40]
UNICODE_DIGITS = ["\u0663", "\u0661\u0662", "\uff11", "\u00b2"]  # Arabic-Indic, fullwidth, ²


def envelope(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.data[:300])
    error: dict[str, Any] = response.json["error"]
    assert error["message"]
    return error


@pytest.fixture
def world(api: Api) -> dict[str, int]:
    """A region, a group, a plan and a forecast, so every lookup has a row with id 1..n."""
    assert api.post(f"{BASE}/regions", json={"name": "east", "capacity": 100.0}).status_code == 201
    assert api.post(f"{BASE}/regions", json={"name": "west", "capacity": 100.0}).status_code == 201
    assert api.post(f"{BASE}/groups", json={"name": "a", "demand": 10.0}).status_code == 201
    assert api.put(f"{BASE}/costs", json={"a": {"east": 1, "west": 2}}).status_code == 200
    plan = api.post(f"{BASE}/evacuations", json={"evacuate": ["east"], "steps": 2})
    history = [100.0 + (i % 24) for i in range(24 * 8)]
    forecast = api.post(
        f"{BASE}/forecasts", json={"history": history, "step_seconds": 3600, "horizon": 6}
    )
    return {"plan": plan.json["id"], "forecast": forecast.json["id"]}


@pytest.mark.parametrize("ref", HUGE + UNICODE_DIGITS)
def test_region_and_group_refs_that_cannot_be_rows_are_404(
    api: Api, world: dict[str, int], ref: str
) -> None:
    for path in (f"/regions/{ref}", f"/groups/{ref}", f"/regions/{ref}/history"):
        error = envelope(api.get(BASE + path, role="viewer"), 404)
        assert error["code"] == "not_found"
    envelope(api.patch(f"{BASE}/regions/{ref}", json={"capacity": 1.0}), 404)
    envelope(api.delete(f"{BASE}/groups/{ref}"), 404)


@pytest.mark.parametrize("ident", HUGE + UNICODE_DIGITS)
def test_plan_execution_forecast_and_placement_ids_that_cannot_be_rows_are_404(
    api: Api, world: dict[str, int], ident: str
) -> None:
    for path in (
        f"/plans/{ident}",
        f"/plans/{ident}/plot.png",
        f"/executions/{ident}",
        f"/forecasts/{ident}",
        f"/forecasts/{ident}/plot.png",
        f"/placements/{ident}",
    ):
        envelope(api.get(BASE + path, role="viewer"), 404)
    envelope(api.post(f"{BASE}/plans/{ident}/return", json={}), 404)
    envelope(api.post(f"{BASE}/plans/{ident}/execute", json={}), 404)
    envelope(api.post(f"{BASE}/executions/{ident}/cancel"), 404)


def test_a_unicode_digit_is_never_read_as_the_id_it_looks_like(
    api: Api, world: dict[str, int]
) -> None:
    assert world["plan"] == 1
    assert api.get(f"{BASE}/plans/1").status_code == 200
    envelope(api.get(f"{BASE}/plans/\u0661"), 404)  # Arabic-Indic one
    assert api.get(f"{BASE}/regions/1").json["name"] == "east"
    envelope(api.get(f"{BASE}/regions/\uff11"), 404)  # fullwidth one


def test_a_region_named_like_a_number_is_found_by_its_name_first(api: Api) -> None:
    assert api.post(f"{BASE}/regions", json={"name": "east", "capacity": 1.0}).status_code == 201
    made = api.post(f"{BASE}/regions", json={"name": "1", "capacity": 2.0})
    assert made.status_code == 201 and made.json["id"] == 2
    assert api.get(f"{BASE}/regions/1").json["id"] == 2
    assert api.get(f"{BASE}/regions/2").json["name"] == "1"


@pytest.mark.parametrize("big", [2**63, 2**64])
def test_ids_of_two_to_the_63_in_bodies_are_422(api: Api, world: dict[str, int], big: int) -> None:
    group = api.post(
        f"{BASE}/groups", json={"name": "b", "demand_source": "forecast", "forecast_id": big}
    )
    assert "forecast_id" in envelope(group, 422)["details"]["fields"]
    evacuation = api.post(f"{BASE}/evacuations", json={"evacuate": ["east"], "current_plan": big})
    assert "current_plan" in envelope(evacuation, 422)["details"]["fields"]
    patched = api.patch(f"{BASE}/groups/a", json={"forecast_id": big})
    envelope(patched, 422)


def test_costs_nested_too_deeply_are_a_422(api: Api, world: dict[str, int]) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    response = api.put(f"{BASE}/costs", data=deep, content_type="application/json")
    assert response.status_code in (400, 413, 422), response.status_code
    assert response.json["error"]["message"]
    assert api.get(f"{BASE}/costs").json["matrix"] == [[1.0, 2.0]]


def test_every_traffic_operation_declares_its_answer(app: Any) -> None:
    with app.app_context():
        spec = app.spec
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        if path.startswith(BASE)
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(operations) >= 30
    for path, method, op in operations:
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert ok, (method, path)
        content = op["responses"][ok[0]].get("content", {})
        schemas = [media.get("schema") for media in content.values()]
        assert any(schemas), (method, path, "declares no response schema")
    plot = spec["paths"][f"{BASE}/plans/{{plan_id}}/plot.png"]["get"]["responses"]["200"]
    assert list(plot["content"]) == ["image/png"]
