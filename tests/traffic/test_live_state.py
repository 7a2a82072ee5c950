"""Executions start from what is live on Route 53 and Auto Scaling (moto over HTTP, read back
with boto3), a return restores the captured live state, and credentials come from the
installation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from popcorn.config import get_settings
from popcorn.db import session_scope
from popcorn.traffic import executions as execution_service
from popcorn.traffic import plans as plan_service
from popcorn.traffic import schemas as s
from popcorn.traffic import service
from popcorn.traffic.aws import set_weights


def live_weights(sandbox: dict[str, Any]) -> dict[str, int]:
    """Route 53's weighted records of the sandbox name, read with plain boto3."""
    route53 = boto3.client("route53", region_name="us-east-1", endpoint_url=sandbox["endpoint"])
    found = route53.list_resource_record_sets(HostedZoneId=sandbox["zone_id"])
    name = sandbox["record_name"].rstrip(".") + "."
    return {
        r["SetIdentifier"]: int(r["Weight"])
        for r in found["ResourceRecordSets"]
        if r["Name"] == name and "SetIdentifier" in r
    }


def live_desired(sandbox: dict[str, Any]) -> dict[str, int]:
    out = {}
    for region, bound in sorted(sandbox["regions"].items()):
        client = boto3.client(
            "autoscaling", region_name=bound["aws_region"], endpoint_url=sandbox["endpoint"]
        )
        groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[bound["asg_name"]])
        out[region] = int(groups["AutoScalingGroups"][0]["DesiredCapacity"])
    return out


def run(plan_id: int) -> dict[str, Any]:
    spec = s.ExecuteCreate(dwell_seconds=0, poll_seconds=0.1)
    with session_scope() as session:
        execution_id = execution_service.execute_plan(
            session=session, plan_id=plan_id, spec=spec
        ).id
    execution_service.run_execution(execution_id)
    with session_scope(readonly=True) as session:
        return execution_service.execution_detail(session=session, execution_id=execution_id)


@pytest.mark.slow
def test_an_evacuation_ramps_from_the_live_weights_and_its_return_restores_them(
    sandbox: dict[str, Any],
) -> None:
    route53 = boto3.client("route53", region_name="us-east-1", endpoint_url=sandbox["endpoint"])
    set_weights(route53, sandbox["zone_id"], sandbox["record_name"],
                {region: 85 for region in sandbox["regions"]})  # fmt: skip
    before_weights, before_desired = live_weights(sandbox), live_desired(sandbox)
    assert set(before_weights.values()) == {85}

    with session_scope() as session:
        evacuation = plan_service.plan_evacuation_for(
            session=session, spec=s.EvacuationCreate(evacuate=["us-east-1"], steps=5)
        ).id
    found = run(evacuation)
    assert found["status"] == "succeeded", found["error"]
    assert found["current_step"] == found["total_steps"]  # a finished run reports every step
    shifts = [st for st in found["steps"] if st["kind"] == "shift"]
    east = [st["detail"]["weights"][sandbox["record_name"]] for st in shifts]
    for step, written in zip(shifts, east, strict=True):
        share = written["us-east-1"] / sum(written.values())
        # Each step is its fraction of the way from the live third, not from the model.
        assert share == pytest.approx((1 - step["detail"]["fraction"]) / 3, abs=0.01)
    assert live_weights(sandbox)["us-east-1"] == 0
    assert live_desired(sandbox) != before_desired  # the receivers were scaled up

    with session_scope() as session:
        back = plan_service.plan_return_for(
            session=session, plan_id=evacuation, spec=s.ReturnCreate(steps=3)
        ).id
    returned = run(back)
    assert returned["status"] == "succeeded", returned["error"]
    assert live_weights(sandbox) == before_weights  # 85/85/85, not the plan's model shares
    assert live_desired(sandbox) == before_desired
    assert returned["current_step"] == returned["total_steps"]


def test_missing_credentials_abort_without_a_step_left_running(
    sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    with session_scope() as session:
        service.update_settings(session=session, changes={"aws_profile": "failover"})
        plan_id = plan_service.plan_evacuation_for(
            session=session, spec=s.EvacuationCreate(evacuate=["us-east-1"], steps=2)
        ).id
    found = run(plan_id)
    assert found["status"] == "aborted"
    assert "failover" in found["error"]
    assert [st["status"] for st in found["steps"]] == ["failed", "succeeded"]  # capture, rollback
    assert all(st["status"] != "running" for st in found["steps"])

    # The installation's own credentials file makes the profile work for every worker.
    folder: Path = get_settings().home / "aws"
    folder.mkdir(exist_ok=True)
    (folder / "credentials").write_text(
        "[failover]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    try:
        again = run(plan_id)
        assert again["status"] == "succeeded", again["error"]
    finally:
        (folder / "credentials").unlink()
