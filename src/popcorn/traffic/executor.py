"""Carrying out a stored plan on AWS: the body of the `traffic.execute_plan` job.

The order is the one Demand Engineering follows in a failover. First capture what is there
(every Auto Scaling group's desired capacity and every weighted record the plan touches) and
store it, before any change. Then scale up the regions that will take the load and wait until
their new instances are InService. Then shift traffic one step at a time by writing Route 53
weights, dwelling and running the health check after each step. A return plan finally scales
the helpers back down.

Any failure (AWS refuses, instances never become InService, the health check fails) and an
operator's cancel (a flag in the database, checked between steps and while waiting) restore
the captured weights and capacities. A worker lost half-way is handled the same way: the job
runs again, finds the execution already running and rolls it back from the stored capture.

Every step is a row of `traffic_execution_steps`, every transition a domain event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import select

from popcorn.audit import record_change
from popcorn.db import session_scope, utcnow
from popcorn.errors import NotFound, PopcornError
from popcorn.jobs import report_progress
from popcorn.outbox import emit
from popcorn.traffic import models as m
from popcorn.traffic.aws import (
    AwsActionError,
    WeightedRecord,
    autoscaling_client,
    get_capacity,
    get_weights,
    restore_weights,
    route53_client,
    set_desired_capacity,
    set_weights,
    wait_for_change,
    wait_in_service,
    weights_from_shares,
)
from popcorn.traffic.executions import end_execution
from popcorn.traffic.health import HealthCheck, health_check_from
from popcorn.traffic.service import json_safe

CANCEL_POLL_SECONDS = 0.5


class Aborted(Exception):
    """Stop the execution and roll back: a failed health check or an operator's cancel."""

    def __init__(self, reason: str, *, canceled: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.canceled = canceled


# --- the run ---------------------------------------------------------------------------------


def run(
    execution_id: int,
    *,
    health_check: HealthCheck | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run (or, after a lost worker, roll back) one execution; returns its outcome."""
    with session_scope() as session:
        row = session.get(m.Execution, execution_id, with_for_update=True)
        if row is None:
            raise NotFound(f"no execution {execution_id}", details={"execution": execution_id})
        if row.status not in m.ACTIVE_EXECUTION:
            return {"execution_id": execution_id, "status": row.status}
        plan = session.get(m.Plan, row.plan_id)
        assert plan is not None
        resumed = row.status == "running"
        restore: dict[str, Any] = {}
        if plan.kind == "return" and plan.parent_id is not None:
            # What was live before the evacuation ran: the state a return goes back to.
            before = session.scalar(
                select(m.Execution.snapshot)
                .where(m.Execution.plan_id == plan.parent_id, m.Execution.status == "succeeded")
                .order_by(m.Execution.id.desc())
                .limit(1)
            )
            restore = dict(before or {})
        context = _Context(
            execution_id=row.id,
            plan_id=plan.id,
            plan_kind=plan.kind,
            evacuated=list(plan.evacuated),
            result=dict(plan.result),
            options=dict(row.options),
            snapshot=dict(row.snapshot or {}),
            total=row.total_steps,
            position=len(row.steps),
            restore=restore,
        )
        if not resumed:
            if row.cancel_requested:
                end_execution(
                    session, row, "canceled", "canceled by operator before it started", False
                )
                return {"execution_id": execution_id, "status": "canceled"}
            row.status = "running"
            row.started_at = utcnow()
            emit(
                session,
                "traffic.execution.started",
                "traffic_execution",
                row.id,
                {
                    "execution_id": row.id,
                    "plan_id": plan.id,
                    "kind": plan.kind,
                    "evacuated": list(plan.evacuated),
                    "total_steps": row.total_steps,
                },
            )
    runner = _Runner(
        context,
        health_check or health_check_from(context.options.get("health") or {}),
        sleep,
        clock,
    )
    if resumed:
        return runner.abort("the worker running it was lost; rolled back to the captured state")
    try:
        runner.capture()
        runner.scale_up()
        runner.shift()
        runner.scale_down()
    except Aborted as exc:
        return runner.abort(exc.reason, canceled=exc.canceled)
    except (AwsActionError, PopcornError, ValueError, BotoCoreError, ClientError) as exc:
        return runner.abort(f"{type(exc).__name__}: {exc}")
    return runner.finish()


@dataclass
class _Context:
    execution_id: int
    plan_id: int
    plan_kind: str
    evacuated: list[str]
    result: dict[str, Any]
    options: dict[str, Any]
    snapshot: dict[str, Any]
    total: int
    position: int
    restore: dict[str, Any]  # a return: the evacuation's capture (what was live before it)


class _Runner:
    def __init__(
        self,
        context: _Context,
        health_check: HealthCheck,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ):
        self.ctx = context
        self.health_check = health_check
        self.sleep = sleep
        self.clock = clock
        self.bindings: dict[str, dict[str, Any]] = context.options.get("bindings", {})
        aws = context.options.get("aws", {})
        self.endpoint_url: str | None = aws.get("endpoint_url")
        self.profile: str | None = aws.get("profile")
        self._autoscaling: dict[str, Any] = {}
        self._route53: Any = None
        self._credentials: dict[str, Any] | None = None
        self.done = 0

    # --- AWS clients ---

    def _creds(self) -> dict[str, Any]:
        if self._credentials is None:
            self._credentials = {}
            if self.profile:
                try:
                    found = aws_session(self.profile).get_credentials()
                except BotoCoreError as exc:
                    raise AwsActionError(f"AWS profile {self.profile!r}: {exc}") from exc
                if found is None:
                    raise AwsActionError(f"AWS profile {self.profile!r} has no credentials")
                frozen = found.get_frozen_credentials()
                self._credentials = {
                    "aws_access_key_id": frozen.access_key,
                    "aws_secret_access_key": frozen.secret_key,
                    "aws_session_token": frozen.token,
                }
        return self._credentials

    def autoscaling(self, region: str) -> Any:
        aws_region = self.bindings[region]["aws_region"]
        if aws_region not in self._autoscaling:
            self._autoscaling[aws_region] = autoscaling_client(
                aws_region, endpoint_url=self.endpoint_url, **self._creds()
            )
        return self._autoscaling[aws_region]

    def route53(self) -> Any:
        if self._route53 is None:
            self._route53 = route53_client(endpoint_url=self.endpoint_url, **self._creds())
        return self._route53

    # --- bookkeeping ---

    def _check_cancel(self) -> None:
        with session_scope(readonly=True) as session:
            flag = session.scalar(
                select(m.Execution.cancel_requested).where(m.Execution.id == self.ctx.execution_id)
            )
        if flag:
            raise Aborted("canceled by operator", canceled=True)

    def _wait(self, seconds: float) -> None:
        """Sleep, watching for a cancel (also used while instances come up)."""
        deadline = self.clock() + seconds
        while True:
            self._check_cancel()
            left = deadline - self.clock()
            if left <= 0:
                return
            self.sleep(min(left, CANCEL_POLL_SECONDS))

    def _start_step(self, kind: str, name: str, detail: dict[str, Any]) -> int:
        self.ctx.position += 1
        with session_scope() as session:
            step = m.ExecutionStep(
                execution_id=self.ctx.execution_id,
                position=self.ctx.position,
                kind=kind,
                name=name,
                status="running",
                detail=json_safe(detail),
                started_at=utcnow(),
            )
            session.add(step)
            session.flush()
            return step.id

    def _end_step(
        self,
        step_id: int,
        status: str,
        detail: dict[str, Any],
        *,
        error: str = "",
        counted: bool = False,
        shift_index: int | None = None,
    ) -> None:
        with session_scope() as session:
            step = session.get(m.ExecutionStep, step_id)
            assert step is not None
            name = step.name
            step.status = status
            step.detail = json_safe({**step.detail, **detail})
            step.error = error
            step.ended_at = utcnow()
            row = session.get(m.Execution, self.ctx.execution_id)
            assert row is not None
            if counted:
                self.done += 1
                row.current_step = self.done  # "step N of total_steps" counts every kind
                emit(
                    session,
                    "traffic.execution.stepped",
                    "traffic_execution",
                    row.id,
                    {
                        "execution_id": row.id,
                        "plan_id": row.plan_id,
                        "kind": step.kind,
                        "name": step.name,
                        "position": step.position,
                        "done": self.done,
                        "total": self.ctx.total,
                        "detail": step.detail,
                    },
                )
        if counted:
            report_progress(self.done, self.ctx.total, message=f"{name}: {status}")

    def _set_instances(self, region: str, count: int) -> None:
        """Keep the region's instance count in step with its Auto Scaling group."""
        with session_scope() as session:
            row = session.scalar(select(m.TrafficRegion).where(m.TrafficRegion.name == region))
            if row is None or row.instances == count:
                return
            before = {"instances": row.instances}
            row.instances = count
            if row.max_instances is not None and row.max_instances < count:
                row.max_instances = count
            record_change(
                session,
                "update",
                "traffic_region",
                row.id,
                before=before,
                after={"instances": count, "execution": self.ctx.execution_id},
            )

    # --- phases ---

    def _records(self) -> dict[str, dict[str, Any]]:
        """Regions that shift traffic, grouped by the weighted record they share."""
        out: dict[str, dict[str, Any]] = {}
        for region, b in sorted(self.bindings.items()):
            if not b.get("shift"):
                continue
            key = f"{b['zone_id']}|{b['record_name']}"
            entry = out.setdefault(
                key, {"zone_id": b["zone_id"], "record_name": b["record_name"], "members": {}}
            )
            entry["members"][region] = {
                "set_identifier": b["set_identifier"],
                "target": b["target"],
            }
        return out

    def _scaled_regions(self) -> list[str]:
        actions = self.ctx.result.get("scale_up", []) + self.ctx.result.get("scale_down", [])
        return sorted({a["region"] for a in actions})

    def capture(self) -> None:
        """Read and store everything the run may change, before changing anything."""
        step = self._start_step("capture", "capture weights and capacities", {})
        try:
            records = {}
            for key, entry in self._records().items():
                found = get_weights(self.route53(), entry["zone_id"], entry["record_name"])
                records[key] = {
                    "zone_id": entry["zone_id"],
                    "record_name": entry["record_name"],
                    "records": {ident: r.to_dict() for ident, r in found.items()},
                }
            capacities = {}
            for region in self._scaled_regions():
                state = get_capacity(self.autoscaling(region), self.bindings[region]["asg_name"])
                capacities[region] = state.to_dict()
        except Exception as exc:
            self._end_step(step, "failed", {}, error=f"{type(exc).__name__}: {exc}")
            raise
        snapshot = {"records": records, "capacities": capacities}
        with session_scope() as session:
            row = session.get(m.Execution, self.ctx.execution_id)
            assert row is not None
            row.snapshot = snapshot
        self.ctx.snapshot = snapshot
        self._end_step(step, "succeeded", snapshot)

    def scale_up(self) -> None:
        """Ask for every receiving region's instances at once, then wait for each."""
        timeout = float(self.ctx.options.get("scale_timeout_seconds") or 2700.0)
        poll = float(self.ctx.options.get("poll_seconds") or 15.0)
        pending = []
        for action in self.ctx.result.get("scale_up", []):
            self._check_cancel()
            region, target = action["region"], int(action["to_instances"])
            asg = self.bindings[region]["asg_name"]
            client = self.autoscaling(region)
            step = self._start_step(
                "scale_up", f"scale {region} to {target}", {"region": region, "asg": asg}
            )
            state = get_capacity(client, asg)
            if state.desired >= target:
                self._end_step(
                    step,
                    "skipped",
                    {"desired": state.desired, "note": f"already at {state.desired}"},
                    counted=True,
                )
                continue
            try:
                set_desired_capacity(client, asg, target, wait=False)
            except Exception as exc:
                self._end_step(step, "failed", {}, error=str(exc))
                raise
            pending.append((step, region, asg, client, target, state.desired))
        for n, (step, region, asg, client, target, before) in enumerate(pending):
            try:
                state = wait_in_service(
                    client,
                    asg,
                    target,
                    timeout_seconds=timeout,
                    poll_seconds=poll,
                    clock=self.clock,
                    sleep=self._wait,
                )
            except Exception as exc:
                canceled = isinstance(exc, Aborted)
                self._end_step(step, "canceled" if canceled else "failed", {}, error=str(exc))
                for later in pending[n + 1 :]:
                    self._end_step(later[0], "abandoned", {}, error="an earlier region failed")
                raise
            self._set_instances(region, target)
            self._end_step(
                step,
                "succeeded",
                {"from": before, "to": target, "in_service": state.in_service},
                counted=True,
            )

    def shift(self) -> None:
        """Write each step's weights, dwell, and check health before the next."""
        dwell = float(self.ctx.options.get("dwell_seconds") or 0.0)
        poll = float(self.ctx.options.get("poll_seconds") or 15.0)
        records = self._records()
        steps: Sequence[dict[str, Any]] = self.ctx.result.get("steps", [])
        first = True
        for step_data in steps:
            self._check_cancel()
            index = int(step_data["index"])
            written: dict[str, dict[str, int]] = {}
            step = self._start_step(
                "shift",
                f"shift step {index} of {len(steps)}",
                {"index": index, "fraction": step_data["fraction"], "loads": step_data["loads"]},
            )
            try:
                for key, entry in records.items():
                    members = entry["members"]
                    weights = self._step_weights(key, members, step_data, steps[-1])
                    targets = (
                        {b["set_identifier"]: b["target"] for b in members.values() if b["target"]}
                        if first
                        else None
                    )
                    change = set_weights(
                        self.route53(),
                        entry["zone_id"],
                        entry["record_name"],
                        weights,
                        targets=targets,
                    )
                    wait_for_change(
                        self.route53(),
                        change,
                        poll_seconds=min(poll, 5.0),
                        clock=self.clock,
                        sleep=self._wait,
                    )
                    written[entry["record_name"]] = weights
                first = False
                self._wait(dwell)
                verdict = self.health_check(
                    {
                        "execution_id": self.ctx.execution_id,
                        "plan_id": self.ctx.plan_id,
                        "step": index,
                        "total_steps": len(steps),
                        "loads": step_data["loads"],
                        "weights": written,
                    }
                )
            except Aborted as exc:
                self._end_step(step, "canceled", {"weights": written}, error=exc.reason)
                raise
            except Exception as exc:
                self._end_step(step, "failed", {"weights": written}, error=str(exc))
                raise
            detail = {"weights": written, "health": verdict.to_dict()}
            if not verdict.healthy:
                reason = f"health check failed after step {index}: {verdict.detail}"
                self._end_step(step, "failed", detail, error=reason)
                raise Aborted(reason)
            self._end_step(step, "succeeded", detail, counted=True, shift_index=index)

    def _step_weights(
        self,
        key: str,
        members: Mapping[str, Mapping[str, Any]],
        step_data: Mapping[str, Any],
        last: Mapping[str, Any],
    ) -> dict[str, int]:
        """The weights of one record at one step, ramped from what was live at capture.

        The target is the plan's last step; for a return, the weights that were live before
        the evacuation ran (its capture), written exactly at the last step.
        """
        idents = {b["set_identifier"] for b in members.values()}
        captured = (self.ctx.snapshot.get("records") or {}).get(key, {}).get("records", {})
        live = {i: int(r["weight"]) for i, r in captured.items() if i in idents}
        before = (self.ctx.restore.get("records") or {}).get(key, {}).get("records", {})
        restore = {i: int(r["weight"]) for i, r in before.items() if i in idents}
        fraction = float(step_data.get("fraction", 1.0))
        if restore and fraction >= 1.0:
            return {i: restore.get(i, 0) for i in idents}
        if restore:
            target: dict[str, float] = {i: float(w) for i, w in restore.items()}
        else:
            target = {
                b["set_identifier"]: float(last["weights"].get(region, 0.0))
                for region, b in members.items()
            }
        if not any(live.values()):  # nothing live to start from (new records): the plan's own
            shares = {
                b["set_identifier"]: float(step_data["weights"].get(region, 0.0))
                for region, b in members.items()
            }
        else:
            shares = ramp_weights(live, target, fraction)
        if sum(shares.values()) <= 0:
            return {ident: 0 for ident in shares}
        return weights_from_shares(shares)

    def scale_down(self) -> None:
        """Release the instances a return no longer needs (no wait: traffic has left).

        A return goes back to the capacities captured before its evacuation ran, when known.
        """
        before = self.ctx.restore.get("capacities") or {}
        for action in self.ctx.result.get("scale_down", []):
            self._check_cancel()
            region, target = action["region"], int(action["to_instances"])
            if region in before:
                target = int(before[region]["desired"])
            asg = self.bindings[region]["asg_name"]
            step = self._start_step(
                "scale_down", f"scale {region} to {target}", {"region": region, "asg": asg}
            )
            try:
                state = set_desired_capacity(self.autoscaling(region), asg, target, wait=False)
            except Exception as exc:
                self._end_step(step, "failed", {}, error=str(exc))
                raise
            self._set_instances(region, target)
            self._end_step(step, "succeeded", {"desired": state.desired}, counted=True)

    def finish(self) -> dict[str, Any]:
        with session_scope() as session:
            row = session.get(m.Execution, self.ctx.execution_id)
            assert row is not None
            row.status = "succeeded"
            row.ended_at = utcnow()
            emit(
                session,
                "traffic.execution.finished",
                "traffic_execution",
                row.id,
                {
                    "execution_id": row.id,
                    "plan_id": row.plan_id,
                    "status": "succeeded",
                    "evacuated": self.ctx.evacuated,
                    "kind": self.ctx.plan_kind,
                },
            )
        report_progress(self.ctx.total, self.ctx.total, message="finished")
        return {"execution_id": self.ctx.execution_id, "status": "succeeded"}

    def abort(self, reason: str, *, canceled: bool = False) -> dict[str, Any]:
        """Restore every captured weight and capacity; the execution ends canceled (operator),
        aborted (failure) or rollback_failed (the restore itself failed: act by hand)."""
        with session_scope() as session:  # no step of an ended execution stays "running"
            for left in session.scalars(
                select(m.ExecutionStep).where(
                    m.ExecutionStep.execution_id == self.ctx.execution_id,
                    m.ExecutionStep.status == "running",
                )
            ):
                left.status = "abandoned"
                left.error = left.error or reason
                left.ended_at = utcnow()
        step = self._start_step("rollback", "restore captured weights and capacities", {})
        errors: list[str] = []
        restored: dict[str, Any] = {"records": [], "capacities": {}}
        for key, entry in (self.ctx.snapshot.get("records") or {}).items():
            try:
                self._restore_record(key, entry)
                restored["records"].append(entry["record_name"])
            except Exception as exc:
                errors.append(f"{entry['record_name']}: {exc}")
        for region, state in (self.ctx.snapshot.get("capacities") or {}).items():
            try:
                client = self.autoscaling(region)
                asg = self.bindings[region]["asg_name"]
                if get_capacity(client, asg).desired != int(state["desired"]):
                    set_desired_capacity(client, asg, int(state["desired"]), wait=False)
                self._set_instances(region, int(state["desired"]))
                restored["capacities"][region] = int(state["desired"])
            except Exception as exc:
                errors.append(f"{region}: {exc}")
        status = "rollback_failed" if errors else ("canceled" if canceled else "aborted")
        self._end_step(step, "failed" if errors else "succeeded", restored, error="; ".join(errors))
        message = reason if not errors else f"{reason}; rollback failed: {'; '.join(errors)}"
        with session_scope() as session:
            row = session.get(m.Execution, self.ctx.execution_id)
            assert row is not None
            end_execution(session, row, status, message, rolled_back=not errors)
        return {"execution_id": self.ctx.execution_id, "status": status, "reason": message}

    def _restore_record(self, key: str, entry: Mapping[str, Any]) -> None:
        captured = {
            ident: WeightedRecord(
                set_identifier=r["set_identifier"],
                weight=int(r["weight"]),
                values=tuple(r["values"]),
                ttl=int(r["ttl"]),
            )
            for ident, r in entry["records"].items()
        }
        current = get_weights(self.route53(), entry["zone_id"], entry["record_name"])
        # Records this run created did not exist before: they get no traffic again.
        ours = {
            b["set_identifier"]
            for b in self.bindings.values()
            if f"{b['zone_id']}|{b['record_name']}" == key
        }
        for ident, record in current.items():
            if ident not in captured and ident in ours:
                captured[ident] = WeightedRecord(ident, 0, record.values, record.ttl)
        if captured:
            restore_weights(self.route53(), entry["zone_id"], entry["record_name"], captured)


# --- a sandbox on an AWS-compatible endpoint -------------------------------------------------


def provision_sandbox(
    *,
    endpoint_url: str,
    regions: Sequence[Mapping[str, Any]],
    prefix: str = "popcorn",
    zone: str | None = None,
) -> dict[str, Any]:
    """An Auto Scaling group per region (at its instance count) and a hosted zone with one
    weighted record per region, weighted by instances; returns each region's binding."""
    zone_name = zone or f"{prefix}.popcorn.test"
    record = f"api.{zone_name}"
    route53 = route53_client(endpoint_url=endpoint_url)
    try:
        found = route53.list_hosted_zones_by_name(DNSName=zone_name, MaxItems="1")
        zones = [z for z in found.get("HostedZones", []) if z["Name"] == zone_name + "."]
        if zones:
            zone_id = zones[0]["Id"]
        else:
            created = route53.create_hosted_zone(
                Name=zone_name, CallerReference=f"{prefix}-{time.time_ns()}"
            )
            zone_id = created["HostedZone"]["Id"]
    except (ClientError, BotoCoreError) as exc:
        raise AwsActionError(f"cannot create hosted zone {zone_name}: {exc}") from exc
    bound: dict[str, dict[str, Any]] = {}
    for region in regions:
        name, aws_region = str(region["name"]), str(region["aws_region"])
        asg = f"{prefix}-{name}"
        _sandbox_group(
            endpoint_url,
            aws_region,
            asg,
            int(region["instances"]),
            int(region["max_instances"]),
        )
        bound[name] = {
            "aws_region": aws_region,
            "asg_name": asg,
            "route53_zone_id": zone_id,
            "route53_record_name": record,
            "route53_set_identifier": name,
            "route53_target": f"{name}.{zone_name}",
        }
    shares = {str(r["name"]): float(r["instances"]) or 1.0 for r in regions}
    set_weights(
        route53,
        zone_id,
        record,
        weights_from_shares(shares),
        targets={n: b["route53_target"] for n, b in bound.items()},
    )
    return {"zone_id": zone_id, "record_name": record, "regions": bound}


def _sandbox_group(
    endpoint_url: str, aws_region: str, name: str, desired: int, maximum: int
) -> None:
    ec2 = boto3.client("ec2", region_name=aws_region, endpoint_url=endpoint_url)
    autoscaling = autoscaling_client(aws_region, endpoint_url=endpoint_url)
    try:
        try:
            ec2.create_launch_template(
                LaunchTemplateName=name,
                LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"},
            )
        except ClientError as exc:
            if "AlreadyExists" not in str(exc):
                raise
        try:
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=name,
                LaunchTemplate={"LaunchTemplateName": name, "Version": "$Latest"},
                MinSize=0,
                MaxSize=maximum,
                DesiredCapacity=desired,
                AvailabilityZones=[f"{aws_region}a"],
            )
        except ClientError as exc:
            if "AlreadyExists" not in str(exc):
                raise
            autoscaling.update_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=0, MaxSize=maximum, DesiredCapacity=desired
            )
    except (ClientError, BotoCoreError) as exc:
        raise AwsActionError(f"cannot create auto scaling group {name}: {exc}") from exc


def aws_session(profile: str | None) -> boto3.Session:
    """A boto3 session for `profile`, reading this installation's own AWS files first.

    Workers started by `popcorn up` inherit no shell environment worth relying on, so an
    installation keeps `<home>/aws/credentials` and `<home>/aws/config` (profiles as in
    `~/.aws/`); without them boto3's usual chain applies (environment, `~/.aws`, instance role).
    """
    import botocore.session

    from popcorn.config import get_settings

    core = botocore.session.Session()
    folder = get_settings().home / "aws"
    if (folder / "credentials").is_file():
        core.set_config_variable("credentials_file", str(folder / "credentials"))
    if (folder / "config").is_file():
        core.set_config_variable("config_file", str(folder / "config"))
    return boto3.Session(botocore_session=core, profile_name=profile)


def ramp_weights(
    live: Mapping[str, int], target: Mapping[str, float], fraction: float
) -> dict[str, float]:
    """Shares `fraction` of the way from the live weights to the target shares.

    Both sides are normalised first (Route 53 weights are relative), so a ramp that starts
    at the live 85/85/85 moves by the plan's fraction instead of jumping to the plan's model.
    """
    keys = sorted(set(live) | set(target))
    live_total = float(sum(max(0, int(live.get(k, 0))) for k in keys))
    target_total = float(sum(max(0.0, float(target.get(k, 0.0))) for k in keys))
    out = {}
    for k in keys:
        a = max(0, int(live.get(k, 0))) / live_total if live_total > 0 else 0.0
        b = max(0.0, float(target.get(k, 0.0))) / target_total if target_total > 0 else 0.0
        out[k] = (1.0 - fraction) * a + fraction * b
    return out
