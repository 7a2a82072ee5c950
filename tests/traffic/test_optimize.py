"""Steering plans: cheapest region first, capacity binds with a price, overflow is reported."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from popcorn.traffic.optimize import (
    ClientGroup,
    PlanInputError,
    Region,
    plan_steering,
)


def _random_world(
    groups: int, regions: int, slack: float, seed: int
) -> tuple[list[Region], dict[str, float], np.ndarray]:
    rng = np.random.default_rng(seed)
    gpos = rng.normal(size=(groups, 3))
    gpos /= np.linalg.norm(gpos, axis=1, keepdims=True)
    rpos = rng.normal(size=(regions, 3))
    rpos /= np.linalg.norm(rpos, axis=1, keepdims=True)
    cost = np.arccos(np.clip(gpos @ rpos.T, -1, 1)) * 30 + 5
    cost[rng.random(cost.shape) < 0.1] = np.inf
    cost[np.arange(groups), rng.integers(0, regions, groups)] = 20.0  # everyone has a route
    demand = rng.lognormal(2, 1, groups)
    cap = rng.uniform(0.5, 1.5, regions)
    cap *= demand.sum() * slack / cap.sum()
    regs = [Region(f"r{i}", capacity=float(c)) for i, c in enumerate(cap)]
    return regs, {f"g{i}": float(d) for i, d in enumerate(demand)}, cost


def test_demand_goes_to_the_cheapest_region_until_its_capacity_binds() -> None:
    regions = [Region("near", capacity=100.0), Region("far", capacity=1000.0)]
    plan = plan_steering(regions, {"isp": 150.0}, [[10.0, 25.0]])

    assert plan.feasible
    assert plan.share("isp", "near") == pytest.approx(100 / 150)
    assert plan.share("isp", "far") == pytest.approx(50 / 150)
    assert [r.region for r in plan.binding] == ["near"]
    # One more unit of capacity at "near" saves the 15 between far and near.
    assert plan.binding[0].shadow_price == pytest.approx(15.0)
    assert plan.objective == pytest.approx(100 * 10 + 50 * 25)


def test_with_room_everywhere_each_group_uses_only_its_cheapest_region() -> None:
    regions = [Region("a", capacity=1000.0), Region("b", capacity=1000.0)]
    plan = plan_steering(regions, {"x": 50.0, "y": 70.0}, [[1.0, 3.0], [4.0, 2.0]])

    np.testing.assert_allclose(plan.shares, [[1, 0], [0, 1]])
    assert plan.binding == []
    assert all(r.shadow_price == 0 for r in plan.region_loads)


def test_headroom_target_caps_the_load() -> None:
    regions = [
        Region("a", instances=10, throughput_per_instance=10.0, headroom=0.25),
        Region("b", capacity=500.0),
    ]
    plan = plan_steering(regions, {"x": 200.0}, [[1.0, 5.0]])

    assert plan.loads[0] == pytest.approx(75.0)
    assert plan.region_loads[0].binding
    assert plan.region_loads[0].capacity == pytest.approx(75.0)


def test_disallowed_pairs_carry_nothing() -> None:
    regions = [Region("a", capacity=10.0), Region("b", capacity=1000.0), Region("c", capacity=1e3)]
    cost = [[1.0, math.inf, 50.0], [float("nan"), 2.0, 3.0]]
    plan = plan_steering(regions, {"x": 100.0, "y": 10.0}, cost)

    assert plan.flows[0, 1] == 0.0
    assert plan.flows[1, 0] == 0.0
    assert plan.share("x", "c") == pytest.approx(0.9)


def test_demand_that_cannot_fit_reports_shortfall_and_the_capacity_that_would_fit() -> None:
    regions = [
        Region("a", capacity=100.0),
        Region("b", instances=5, throughput_per_instance=10.0, headroom=0.2),
    ]
    # "y" may only use b (40 usable) but brings 100: 60 short at b; a is full with x.
    cost = {"x": {"a": 1.0, "b": 2.0}, "y": {"b": 1.0}}
    plan = plan_steering(regions, {"x": 100.0, "y": 100.0}, cost)

    assert not plan.feasible
    assert plan.shortfall == {"b": pytest.approx(60.0)}
    b = plan.region_loads[1]
    assert b.load == pytest.approx(100.0)
    assert b.required_capacity == pytest.approx(125.0)  # 100 usable at 20% headroom
    assert b.required_instances == 13
    assert b.shadow_price is None
    assert plan.total_shortfall == pytest.approx(60.0)
    assert plan.flows.sum() == pytest.approx(200.0)  # all demand is still placed


def test_shortfall_is_the_least_possible_overflow() -> None:
    regions, groups, cost = _random_world(300, 6, slack=0.8, seed=3)
    plan = plan_steering(regions, groups, cost)

    total = sum(groups.values())
    capacity = sum(r.usable_capacity for r in regions)
    assert not plan.feasible
    assert plan.total_shortfall == pytest.approx(total - capacity, rel=1e-6)


def test_zero_demand_groups_still_get_a_route() -> None:
    regions = [Region("a", capacity=10.0), Region("b", capacity=10.0)]
    plan = plan_steering(regions, [ClientGroup("idle", 0.0)], [[5.0, 1.0]])

    np.testing.assert_allclose(plan.shares, [[0.0, 1.0]])


@pytest.mark.parametrize("slack", [1.3, 1.02, 0.9])
def test_priced_decomposition_matches_one_full_lp(slack: float) -> None:
    regions, groups, cost = _random_world(2400, 12, slack=slack, seed=7)
    full = plan_steering(regions, groups, cost, method="full")
    priced = plan_steering(regions, groups, cost, method="decomposed")

    assert (full.method, priced.method) == ("full", "decomposed")
    assert priced.objective == pytest.approx(full.objective, rel=1e-8)
    assert priced.total_shortfall == pytest.approx(full.total_shortfall, rel=1e-8, abs=1e-6)
    np.testing.assert_allclose(priced.flows.sum(axis=1), list(groups.values()), rtol=1e-9)
    if slack > 1:
        assert priced.feasible
        assert (priced.loads <= priced.capacity * (1 + 1e-9)).all()


def test_mapping_and_matrix_cost_give_the_same_plan() -> None:
    regions = [Region("a", capacity=60.0), Region("b", capacity=100.0)]
    groups = {"x": 50.0, "y": 40.0}
    matrix = plan_steering(regions, groups, [[1.0, 2.0], [1.5, np.inf]])
    mapping = plan_steering(regions, groups, {"x": {"a": 1.0, "b": 2.0}, "y": {"a": 1.5}})

    np.testing.assert_allclose(matrix.flows, mapping.flows)
    assert mapping.share("y", "a") == 1.0


def test_plan_serialises_to_json() -> None:
    regions = [Region("a", capacity=100.0), Region("b", capacity=100.0)]
    plan = plan_steering(regions, {"x": 150.0}, [[1.0, 2.0]])
    data = json.loads(json.dumps(plan.to_dict()))

    assert data["binding"] == ["a"]
    assert {a["region"] for a in data["assignments"]} == {"a", "b"}
    assert data["regions"][0]["shadow_price"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("groups", "cost", "field"),
    [
        ({"x": -1.0}, [[1.0]], "group 'x'.demand"),
        ({"x": float("nan")}, [[1.0]], "group 'x'.demand"),
        ({"x": None}, [[1.0]], "group 'x'.demand"),
        ({"x": "lots"}, [[1.0]], "group 'x'.demand"),
        ({"x": 1.0}, [[1.0, 2.0]], "cost"),
        ({"x": 1.0}, [[-1.0]], "cost"),
        ({"x": 1.0}, {"x": {"nowhere": 1.0}}, "cost['x']"),
        ({"x": 1.0}, {"y": {"a": 1.0}}, "cost"),
        ({"x": 1.0}, [[np.inf]], "cost"),
        ({}, [], "groups"),
    ],
)
def test_bad_input_names_the_field(groups: dict[str, float], cost: object, field: str) -> None:
    with pytest.raises(PlanInputError) as err:
        plan_steering([Region("a", capacity=10.0)], groups, cost)  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError)
    assert err.value.field == field
    assert str(err.value).startswith(field)


def test_bad_regions_are_refused() -> None:
    with pytest.raises(PlanInputError, match="regions"):
        plan_steering([], {"x": 1.0}, np.zeros((1, 0)))
    with pytest.raises(PlanInputError, match="duplicate region 'a'"):
        plan_steering([Region("a", capacity=1.0), Region("a", capacity=1.0)], {"x": 1.0}, [[1, 1]])
    with pytest.raises(PlanInputError, match="headroom"):
        Region("a", capacity=1.0, headroom=1.0)
    with pytest.raises(PlanInputError, match="capacity"):
        Region("a")
    with pytest.raises(PlanInputError, match="max_instances"):
        Region("a", instances=5, throughput_per_instance=1.0, max_instances=2)
