"""AWS primitives against a moto server over real HTTP: change, read back, roll back."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest

from popcorn.traffic.aws import (
    AwsActionError,
    CapacityTimeoutError,
    autoscaling_client,
    get_capacity,
    get_desired_capacity,
    get_weights,
    restore_weights,
    route53_client,
    set_desired_capacity,
    set_weights,
    wait_for_change,
    wait_in_service,
    weights_from_shares,
)
from popcorn.traffic.evacuate import plan_evacuation
from popcorn.traffic.optimize import PlanInputError, Region

REGION = "us-east-1"


@pytest.fixture
def autoscaling(moto_client_kwargs: dict[str, str]) -> Any:
    return autoscaling_client(REGION, **moto_client_kwargs)


@pytest.fixture
def route53(moto_client_kwargs: dict[str, str]) -> Any:
    return route53_client(**moto_client_kwargs)


@pytest.fixture
def group(moto_client_kwargs: dict[str, str], autoscaling: Any) -> str:
    """A fresh Auto Scaling group (launch template, 1 instance, max 6)."""
    name = f"api-{uuid.uuid4().hex[:8]}"
    ec2 = boto3.client("ec2", region_name=REGION, **moto_client_kwargs)
    ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"},
        MinSize=0,
        MaxSize=6,
        DesiredCapacity=1,
        AvailabilityZones=[f"{REGION}a"],
    )
    return name


@pytest.fixture
def zone(route53: Any) -> tuple[str, str]:
    """A fresh hosted zone: (zone id, domain)."""
    domain = f"{uuid.uuid4().hex[:8]}.example.com"
    response = route53.create_hosted_zone(Name=domain, CallerReference=uuid.uuid4().hex)
    return str(response["HostedZone"]["Id"]), domain


def test_scale_up_waits_for_instances_and_rolls_back(autoscaling: Any, group: str) -> None:
    before = get_desired_capacity(autoscaling, group)
    state = set_desired_capacity(autoscaling, group, 4, timeout_seconds=30, poll_seconds=0.2)

    assert before == 1
    assert (state.desired, state.in_service) == (4, 4)
    assert get_desired_capacity(autoscaling, group) == 4

    back = set_desired_capacity(autoscaling, group, before, timeout_seconds=30, poll_seconds=0.2)
    assert (back.desired, back.in_service) == (1, 1)


def test_capacity_outside_group_limits_is_refused(autoscaling: Any, group: str) -> None:
    with pytest.raises(PlanInputError, match=r"outside group .* limits \[0, 6\]"):
        set_desired_capacity(autoscaling, group, 7)
    assert get_capacity(autoscaling, group).desired == 1


def test_waiting_for_instances_that_never_come_times_out(autoscaling: Any, group: str) -> None:
    with pytest.raises(CapacityTimeoutError) as err:
        wait_in_service(autoscaling, group, 5, timeout_seconds=0.3, poll_seconds=0.1)
    assert err.value.state.in_service == 1
    assert isinstance(err.value, TimeoutError)


def test_unknown_group_is_a_clear_error(autoscaling: Any) -> None:
    with pytest.raises(AwsActionError, match="'nope' not found"):
        get_capacity(autoscaling, "nope")


def test_weights_are_written_read_back_and_restored(route53: Any, zone: tuple[str, str]) -> None:
    zone_id, domain = zone
    name = f"api.{domain}"
    targets = {
        "us-east-1": "api.us-east-1.example.net",
        "us-west-2": "api.us-west-2.example.net",
        "eu-west-1": "api.eu-west-1.example.net",
    }
    first = {"us-east-1": 100, "us-west-2": 80, "eu-west-1": 75}
    change = set_weights(route53, zone_id, name, first, targets=targets)
    wait_for_change(route53, change, timeout_seconds=5, poll_seconds=0.1)
    snapshot = get_weights(route53, zone_id, name)

    assert {k: r.weight for k, r in snapshot.items()} == first
    assert snapshot["us-west-2"].values == ("api.us-west-2.example.net",)

    # A step only moves weights: the record values stay.
    set_weights(route53, zone_id, name, {"us-east-1": 0, "us-west-2": 150, "eu-west-1": 105})
    moved = get_weights(route53, zone_id, name)
    assert moved["us-east-1"].weight == 0
    assert moved["us-east-1"].values == ("api.us-east-1.example.net",)

    restore_weights(route53, zone_id, name, snapshot)
    assert get_weights(route53, zone_id, name) == snapshot


def test_evacuation_steps_drive_route53_weights(route53: Any, zone: tuple[str, str]) -> None:
    zone_id, domain = zone
    regions = [
        Region("us-east-1", instances=10, throughput_per_instance=100.0, max_instances=30),
        Region("us-west-2", instances=10, throughput_per_instance=100.0, max_instances=30),
    ]
    plan = plan_evacuation(
        regions, {"east": 600.0, "west": 400.0}, [[1.0, 5.0], [5.0, 1.0]], ["us-east-1"], steps=4
    )
    targets = {r.name: f"api.{r.name}.example.net" for r in regions}
    name = f"edge.{domain}"
    set_weights(route53, zone_id, name, weights_from_shares(plan.steps[0].weights), targets=targets)
    seen = []
    for step in plan.steps:
        set_weights(route53, zone_id, name, weights_from_shares(step.weights))
        seen.append({k: r.weight for k, r in get_weights(route53, zone_id, name).items()})

    assert [s["us-east-1"] for s in seen] == [115, 77, 38, 0]
    assert seen[-1]["us-west-2"] == 255


def test_weights_from_shares_are_proportional_and_sum_to_255() -> None:
    weights = weights_from_shares({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert sum(weights.values()) == 255
    assert sorted(weights.values()) == [85, 85, 85]
    assert weights_from_shares({"a": 0.0, "b": 2.0}) == {"a": 0, "b": 255}
    with pytest.raises(PlanInputError, match="shares"):
        weights_from_shares({"a": 0.0})


@pytest.mark.parametrize(
    ("weights", "field"),
    [({"a": 256}, "weights['a']"), ({"a": -1}, "weights['a']"), ({}, "weights")],
)
def test_bad_weights_are_refused_before_calling_aws(
    route53: Any, zone: tuple[str, str], weights: dict[str, int], field: str
) -> None:
    with pytest.raises(PlanInputError) as err:
        set_weights(route53, zone[0], f"x.{zone[1]}", weights, targets={})
    assert err.value.field == field


def test_new_region_without_a_target_is_refused(route53: Any, zone: tuple[str, str]) -> None:
    with pytest.raises(PlanInputError, match="no record value for new region 'b'"):
        set_weights(route53, zone[0], f"y.{zone[1]}", {"b": 10})
