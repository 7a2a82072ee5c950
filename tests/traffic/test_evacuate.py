"""Regional evacuation: scale up first, shift in steps, never overload, and come back."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from popcorn.traffic.evacuate import EvacuationPlan, plan_evacuation, plan_return, ramp_png
from popcorn.traffic.optimize import PlanInputError, Region, plan_steering

GROUPS = {"us-east-clients": 700.0, "us-west-clients": 500.0, "eu-clients": 500.0}
COST = [[10.0, 60.0, 80.0], [60.0, 10.0, 140.0], [80.0, 140.0, 10.0]]


def _regions(max_instances: int = 30) -> list[Region]:
    return [
        Region("us-east-1", instances=10, throughput_per_instance=100.0, headroom=0.2,
               max_instances=40, readiness_seconds=300.0),
        Region("us-west-2", instances=8, throughput_per_instance=100.0, headroom=0.2,
               max_instances=max_instances, readiness_seconds=420.0),
        Region("eu-west-1", instances=8, throughput_per_instance=100.0, headroom=0.2,
               max_instances=max_instances, readiness_seconds=360.0),
    ]  # fmt: skip


def _step_loads(plan: EvacuationPlan, index: int) -> np.ndarray:
    return plan.demand @ plan.shares_at(index)


def test_evacuating_one_of_three_regions_never_overloads_any_region_at_any_step() -> None:
    plan = plan_evacuation(_regions(), GROUPS, COST, ["us-east-1"], steps=10, dwell_seconds=30)

    assert plan.feasible
    assert len(plan.steps) == 10
    for k in range(11):
        loads = _step_loads(plan, k)
        assert (loads <= plan.capacity + 1e-9).all(), f"overload at step {k}"
        assert loads.sum() == pytest.approx(sum(GROUPS.values()))
    for step in plan.steps:
        assert step.overloaded == ()
        assert step.max_utilisation <= 1 + 1e-9
        np.testing.assert_allclose(list(step.loads.values()), _step_loads(plan, step.index))
    assert plan.steps[-1].loads["us-east-1"] == 0.0
    assert sum(plan.steps[-1].weights.values()) == pytest.approx(1.0)


def test_receiving_regions_scale_up_before_any_traffic_moves() -> None:
    regions = _regions()
    plan = plan_evacuation(regions, GROUPS, COST, ["us-east-1"], steps=10, dwell_seconds=30)

    # us-west-2 is the cheapest home for us-east clients; 8 instances (640 usable) cannot take
    # 500 + 700, so it grows to ceil(1200 / 80) = 15 before the first shift.
    assert [(a.region, a.from_instances, a.to_instances) for a in plan.scale_up] == [
        ("us-west-2", 8, 15)
    ]
    assert plan.target_loads[1] > regions[1].usable_capacity
    assert plan.scale_up_seconds == 420.0
    assert plan.steps[0].start_seconds == 420.0
    assert plan.total_seconds == 420.0 + 10 * 30


def test_return_plan_brings_traffic_back_to_the_original_split_and_scales_down() -> None:
    start = plan_steering(_regions(), GROUPS, COST)
    evacuation = plan_evacuation(_regions(), GROUPS, COST, ["us-east-1"], current=start)
    back = plan_return(evacuation)

    assert back.direction == "return"
    assert back.feasible
    np.testing.assert_allclose(back.shares_at(len(back.steps)), start.shares, atol=1e-12)
    np.testing.assert_allclose(back.shares_at(0), evacuation.target_shares)
    for k in range(len(back.steps) + 1):
        assert (_step_loads(back, k) <= back.capacity + 1e-9).all()
    assert [(a.region, a.to_instances) for a in back.scale_down] == [("us-west-2", 8)]
    with pytest.raises(PlanInputError, match="already a return plan"):
        plan_return(back)


def test_several_regions_at_once() -> None:
    regions = [*_regions(), Region("ap-south-1", capacity=5000.0)]
    groups = {**GROUPS, "apac-clients": 300.0}
    cost = [[*row, 200.0] for row in COST] + [[150.0, 120.0, 160.0, 10.0]]
    plan = plan_evacuation(regions, groups, cost, ["us-east-1", "us-west-2"])

    assert plan.feasible
    assert plan.target_loads[:2].tolist() == [0.0, 0.0]
    assert all(step.overloaded == () for step in plan.steps)


def test_evacuation_that_cannot_fit_is_reported_not_raised() -> None:
    plan = plan_evacuation(_regions(max_instances=10), GROUPS, COST, ["us-east-1"])

    assert not plan.feasible
    assert plan.steps == []
    report = plan.infeasibility
    assert report is not None
    # 1700 of demand against 2 regions x 10 instances x 80 usable each: 100 short.
    assert sum(report.shortfall.values()) == pytest.approx(1700 - 2 * 10 * 80)
    assert report.instances_needed
    assert all(n > 10 for n in report.instances_needed.values())
    json.dumps(plan.to_dict())


def test_groups_that_only_the_evacuated_region_may_serve_are_named() -> None:
    cost = [[10.0, np.inf, np.inf], COST[1], COST[2]]
    plan = plan_evacuation(_regions(), GROUPS, cost, ["us-east-1"])

    assert not plan.feasible
    assert plan.infeasibility is not None
    assert plan.infeasibility.stranded_groups == ("us-east-clients",)


def test_current_split_is_the_starting_point() -> None:
    current = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    plan = plan_evacuation(_regions(), GROUPS, COST, ["eu-west-1"], current=current)

    np.testing.assert_allclose(plan.start_loads, [350.0, 850.0, 500.0])
    assert plan.feasible


@pytest.mark.parametrize(
    ("evacuate", "kwargs", "field"),
    [
        (["us-east-1", "us-west-2", "eu-west-1"], {}, "evacuate"),
        (["mars-1"], {}, "evacuate"),
        ([], {}, "evacuate"),
        (["us-east-1"], {"steps": 0}, "steps"),
        (["us-east-1"], {"dwell_seconds": -1.0}, "dwell_seconds"),
        (["us-east-1"], {"current": np.ones((3, 3))}, "current"),
        (["us-east-1"], {"current": np.ones((2, 3))}, "current"),
    ],
)
def test_bad_requests_are_refused(evacuate: list[str], kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(PlanInputError) as err:
        plan_evacuation(_regions(), GROUPS, COST, evacuate, **kwargs)
    assert err.value.field == field


def test_evacuating_every_region_says_so() -> None:
    with pytest.raises(PlanInputError, match="cannot evacuate every region"):
        plan_evacuation(_regions(), GROUPS, COST, ["us-east-1", "us-west-2", "eu-west-1"])


def test_ramp_chart_is_a_png() -> None:
    plan = plan_evacuation(_regions(), GROUPS, COST, ["us-east-1"])
    png = ramp_png(plan)

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 10_000


def test_target_regions_bind_only_at_their_maximum() -> None:
    plan = plan_evacuation(_regions(), GROUPS, COST, ["us-east-1"])
    assert plan.target is not None
    west = plan.target.region_loads[1]

    assert west.capacity == pytest.approx(30 * 80.0)  # max instances x usable per instance
    assert not west.binding


def test_regions_without_an_instance_limit_scale_as_far_as_needed() -> None:
    regions = [
        Region("a", instances=10, throughput_per_instance=100.0),
        Region("b", instances=2, throughput_per_instance=100.0),
    ]
    plan = plan_evacuation(regions, {"x": 900.0}, [[1.0, 2.0]], ["a"])

    assert plan.feasible
    assert [(a.region, a.to_instances) for a in plan.scale_up] == [("b", 9)]
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["target"]["regions"][1]["capacity"] is None  # unbounded
