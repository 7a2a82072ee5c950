"""Carrying out a traffic plan on AWS: Auto Scaling capacity and Route 53 weights.

These are the primitives a failover runs step by step: set a region's Auto Scaling group to
the planned instance count and wait until that many instances are InService, then write the
step's weighted DNS records. Each has a reader that captures the current value first, so a
half-done failover can be rolled back to exactly where it started.

Clients are ordinary boto3 clients; ``endpoint_url`` points them at any compatible endpoint
(moto in tests, a VPC endpoint in production).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from popcorn.traffic.optimize import PlanInputError

MAX_WEIGHT = 255


class AwsActionError(RuntimeError):
    """AWS refused or failed an action; the message says which resource and why."""


class CapacityTimeoutError(AwsActionError, TimeoutError):
    """Instances did not reach InService in time; ``state`` is the last one seen."""

    def __init__(self, message: str, state: CapacityState):
        super().__init__(message)
        self.state = state


def autoscaling_client(region_name: str, *, endpoint_url: str | None = None, **kwargs: Any) -> Any:
    """A boto3 Auto Scaling client with retries suited to a failover (adaptive, 5 attempts)."""
    return boto3.client(
        "autoscaling",
        region_name=region_name,
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 5, "mode": "adaptive"}),
        **kwargs,
    )


def route53_client(*, endpoint_url: str | None = None, **kwargs: Any) -> Any:
    """A boto3 Route 53 client (a global service: its region is fixed)."""
    return boto3.client(
        "route53",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 5, "mode": "adaptive"}),
        **kwargs,
    )


# --- Auto Scaling -----------------------------------------------------------------------


@dataclass(frozen=True)
class CapacityState:
    """An Auto Scaling group's capacity as AWS reports it."""

    group: str
    desired: int
    minimum: int
    maximum: int
    in_service: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "desired": self.desired,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "in_service": self.in_service,
        }


def get_capacity(autoscaling: Any, group: str) -> CapacityState:
    """Current desired, min, max and InService count of ``group`` (read before changing it)."""
    try:
        groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    except (ClientError, BotoCoreError) as exc:
        raise AwsActionError(f"cannot read auto scaling group {group!r}: {exc}") from exc
    found = groups.get("AutoScalingGroups", [])
    if not found:
        raise AwsActionError(f"auto scaling group {group!r} not found")
    g = found[0]
    in_service = sum(
        1
        for i in g.get("Instances", [])
        if i.get("LifecycleState") == "InService" and i.get("HealthStatus", "Healthy") == "Healthy"
    )
    return CapacityState(
        group=group,
        desired=int(g["DesiredCapacity"]),
        minimum=int(g["MinSize"]),
        maximum=int(g["MaxSize"]),
        in_service=in_service,
    )


def get_desired_capacity(autoscaling: Any, group: str) -> int:
    return get_capacity(autoscaling, group).desired


def set_desired_capacity(
    autoscaling: Any,
    group: str,
    desired: int,
    *,
    wait: bool = True,
    timeout_seconds: float = 2700.0,
    poll_seconds: float = 15.0,
    honor_cooldown: bool = False,
) -> CapacityState:
    """Set ``group`` to ``desired`` instances and (by default) wait until they are InService.

    Refuses a count outside the group's min and max rather than letting AWS clamp it: a plan
    that needs more than the maximum must say so.
    """
    if not isinstance(desired, int) or isinstance(desired, bool) or desired < 0:
        raise PlanInputError("desired", "must be an integer >= 0")
    before = get_capacity(autoscaling, group)
    if not before.minimum <= desired <= before.maximum:
        raise PlanInputError(
            "desired",
            f"{desired} is outside group {group!r} limits [{before.minimum}, {before.maximum}]",
        )
    try:
        autoscaling.set_desired_capacity(
            AutoScalingGroupName=group, DesiredCapacity=desired, HonorCooldown=honor_cooldown
        )
    except (ClientError, BotoCoreError) as exc:
        raise AwsActionError(f"cannot set desired capacity of {group!r}: {exc}") from exc
    if not wait:
        return get_capacity(autoscaling, group)
    return wait_in_service(
        autoscaling, group, desired, timeout_seconds=timeout_seconds, poll_seconds=poll_seconds
    )


def wait_in_service(
    autoscaling: Any,
    group: str,
    count: int,
    *,
    timeout_seconds: float = 2700.0,
    poll_seconds: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> CapacityState:
    """Poll until exactly ``count`` healthy instances are InService, or time out."""
    if not (math.isfinite(timeout_seconds) and timeout_seconds >= 0):
        raise PlanInputError("timeout_seconds", "must be a finite number >= 0")
    if not (math.isfinite(poll_seconds) and poll_seconds > 0):
        raise PlanInputError("poll_seconds", "must be a finite number > 0")
    deadline = clock() + timeout_seconds
    while True:
        state = get_capacity(autoscaling, group)
        if state.in_service == count:
            return state
        left = deadline - clock()
        if left <= 0:
            raise CapacityTimeoutError(
                f"group {group!r} has {state.in_service} instances InService, expected {count}"
                f" after {timeout_seconds:g} s",
                state,
            )
        sleep(min(poll_seconds, left))


# --- Route 53 ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightedRecord:
    """One weighted record of a name: the region it sends to and its weight."""

    set_identifier: str
    weight: int
    values: tuple[str, ...]
    ttl: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "set_identifier": self.set_identifier,
            "weight": self.weight,
            "values": list(self.values),
            "ttl": self.ttl,
        }


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def get_weights(
    route53: Any, zone_id: str, name: str, *, record_type: str = "CNAME"
) -> dict[str, WeightedRecord]:
    """Weighted records of ``name`` by set identifier (read before changing them)."""
    fqdn = _fqdn(name)
    out: dict[str, WeightedRecord] = {}
    kwargs: dict[str, Any] = {
        "HostedZoneId": zone_id,
        "StartRecordName": fqdn,
        "StartRecordType": record_type,
    }
    try:
        while True:
            page = route53.list_resource_record_sets(**kwargs)
            for rs in page.get("ResourceRecordSets", []):
                if rs["Name"] != fqdn or rs["Type"] != record_type:
                    return out
                if "SetIdentifier" in rs and "Weight" in rs:
                    out[rs["SetIdentifier"]] = WeightedRecord(
                        set_identifier=rs["SetIdentifier"],
                        weight=int(rs["Weight"]),
                        values=tuple(r["Value"] for r in rs.get("ResourceRecords", [])),
                        ttl=int(rs.get("TTL", 60)),
                    )
            if not page.get("IsTruncated"):
                return out
            kwargs["StartRecordName"] = page["NextRecordName"]
            kwargs["StartRecordType"] = page["NextRecordType"]
            if "NextRecordIdentifier" in page:
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
    except (ClientError, BotoCoreError) as exc:
        raise AwsActionError(f"cannot read records of {fqdn} in zone {zone_id}: {exc}") from exc


def set_weights(
    route53: Any,
    zone_id: str,
    name: str,
    weights: Mapping[str, int],
    *,
    targets: Mapping[str, str | Sequence[str]] | None = None,
    record_type: str = "CNAME",
    ttl: int = 60,
    comment: str = "popcorn traffic step",
) -> str:
    """UPSERT one weighted record per region in a single atomic change; returns the change id.

    ``targets`` gives each region's record value(s); regions without one keep their current
    value, so a step that only moves weights needs no targets.
    """
    _check_weights(weights)
    if not isinstance(ttl, int) or ttl < 0:
        raise PlanInputError("ttl", "must be an integer >= 0")
    targets = dict(targets or {})
    unknown_targets = set(targets) - set(weights)
    if unknown_targets:
        raise PlanInputError("targets", f"no weight given for {sorted(unknown_targets)}")
    current = (
        get_weights(route53, zone_id, name, record_type=record_type)
        if (set(weights) - set(targets))
        else {}
    )
    records = []
    for ident, weight in weights.items():
        if ident in targets:
            value = targets[ident]
            values = (value,) if isinstance(value, str) else tuple(value)
            record_ttl = ttl
        elif ident in current:
            values, record_ttl = current[ident].values, current[ident].ttl
        else:
            raise PlanInputError("targets", f"no record value for new region {ident!r}")
        if not values:
            raise PlanInputError("targets", f"region {ident!r} has no record value")
        records.append(
            WeightedRecord(set_identifier=ident, weight=int(weight), values=values, ttl=record_ttl)
        )
    return _upsert(route53, zone_id, name, record_type, records, comment)


def restore_weights(
    route53: Any,
    zone_id: str,
    name: str,
    records: Mapping[str, WeightedRecord],
    *,
    record_type: str = "CNAME",
) -> str:
    """Put back records captured with ``get_weights`` (rollback)."""
    if not records:
        raise PlanInputError("records", "nothing to restore")
    return _upsert(route53, zone_id, name, record_type, list(records.values()), "popcorn rollback")


def wait_for_change(
    route53: Any,
    change_id: str,
    *,
    timeout_seconds: float = 300.0,
    poll_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until Route 53 reports the change INSYNC on its name servers."""
    deadline = clock() + timeout_seconds
    while True:
        try:
            status = route53.get_change(Id=change_id)["ChangeInfo"]["Status"]
        except (ClientError, BotoCoreError) as exc:
            raise AwsActionError(f"cannot read Route 53 change {change_id}: {exc}") from exc
        if status == "INSYNC":
            return
        if clock() >= deadline:
            raise AwsActionError(f"Route 53 change {change_id} still {status} after timeout")
        sleep(poll_seconds)


def weights_from_shares(shares: Mapping[str, float], *, total: int = MAX_WEIGHT) -> dict[str, int]:
    """Integer Route 53 weights proportional to traffic shares (largest remainder rounding).

    A region with no share gets weight 0, so it receives no traffic.
    """
    if not shares:
        raise PlanInputError("shares", "at least one region is required")
    if not isinstance(total, int) or not 1 <= total <= MAX_WEIGHT:
        raise PlanInputError("total", f"must be an integer in [1, {MAX_WEIGHT}]")
    values = {k: float(v) for k, v in shares.items()}
    if any(not math.isfinite(v) or v < 0 for v in values.values()):
        raise PlanInputError("shares", "must be finite and >= 0")
    whole = sum(values.values())
    if whole <= 0:
        raise PlanInputError("shares", "at least one share must be positive")
    exact = {k: v / whole * total for k, v in values.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    left = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:left]:
        out[k] += 1
    return out


def _check_weights(weights: Mapping[str, int]) -> None:
    if not weights:
        raise PlanInputError("weights", "at least one region is required")
    for ident, weight in weights.items():
        if not isinstance(ident, str) or not ident:
            raise PlanInputError("weights", "set identifiers must be non-empty strings")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 255:
            raise PlanInputError(f"weights[{ident!r}]", f"must be an integer in [0, {MAX_WEIGHT}]")


def _upsert(
    route53: Any,
    zone_id: str,
    name: str,
    record_type: str,
    records: Sequence[WeightedRecord],
    comment: str,
) -> str:
    changes = [
        {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": _fqdn(name),
                "Type": record_type,
                "SetIdentifier": r.set_identifier,
                "Weight": r.weight,
                "TTL": r.ttl,
                "ResourceRecords": [{"Value": v} for v in r.values],
            },
        }
        for r in records
    ]
    try:
        response = route53.change_resource_record_sets(
            HostedZoneId=zone_id, ChangeBatch={"Comment": comment, "Changes": changes}
        )
    except (ClientError, BotoCoreError) as exc:
        raise AwsActionError(f"cannot write records of {_fqdn(name)}: {exc}") from exc
    return str(response["ChangeInfo"]["Id"])
