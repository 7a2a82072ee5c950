"""The storage pack: storage appliances (Open Connect storage boxes) with a failing disk.

`storage.disk_failure` asks each target's Bolt agent for disk health (SMART
and kernel counters, over mutual TLS), decides whether a disk has failed,
then marks the disk failed and the device in maintenance in inventory, asks
traffic planning to move the site's load off the device, and verifies the
inventory change. Without a failing disk it stops after the decision.

Traffic planning is asked through the domain event
`remediation.traffic.shift_requested` (payload: site, device, execution_id,
reason, disks), which the traffic domain subscribes to.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from popcorn import domains
from popcorn.remediation.engine import (
    Concurrency,
    Pack,
    Runbook,
    StepContext,
    step,
)

pack = Pack(
    "storage",
    version="1.0.0",
    description="Storage appliances: disk failure diagnosis and remediation through Bolt.",
)

MAINTENANCE = "maintenance"
FAILED = "failed"


class DiskFailureInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disk: str | None = Field(
        default=None, max_length=100, description="Check only this disk (e.g. sdc); default all."
    )
    reason: str = Field(default="disk failure alert", max_length=500)
    shift_traffic: bool = Field(
        default=True, description="Ask traffic planning to move load off the device."
    )
    treat_degraded_as_failed: bool = Field(
        default=False, description="Also take out disks that are degraded (not yet failing)."
    )


class DiskSummary(BaseModel):
    name: str
    status: str | None = None
    model: str | None = None
    serial: str | None = None
    reasons: list[str] = Field(default_factory=list)


class DeviceDisks(BaseModel):
    device: str
    site: str | None = None
    source: str | None = None
    failing: list[str] = Field(default_factory=list)
    degraded: list[str] = Field(default_factory=list)
    disks: list[DiskSummary] = Field(default_factory=list)


class DiskReport(BaseModel):
    devices: list[DeviceDisks]


class FailedDisk(BaseModel):
    device: str
    site: str | None = None
    disk: str
    reasons: list[str] = Field(default_factory=list)


class Decision(BaseModel):
    failed: list[FailedDisk]


@pack.runbook
class DiskFailure(Runbook):
    """A storage appliance reports a failing disk: confirm it through the device's Bolt
    agent, take the disk and the device out of service in inventory, ask traffic planning
    to shift the load, and verify."""

    name = "disk_failure"
    Inputs = DiskFailureInputs
    target = "required"
    concurrency = Concurrency(max_runs=20, per_target=1, on_limit="queue")

    @step(kind="diagnose", retries=2, timeout=60, backoff=2.0, output=DiskReport)
    def check_disks(self, ctx: StepContext) -> DiskReport:
        """Disk health from each device's Bolt agent (`disk_health`)."""
        args = {"device": ctx.inputs.disk} if ctx.inputs.disk else {}
        devices = []
        for target in ctx.targets:
            result = ctx.agent_run(target, "disk_health", args, timeout=30)
            if not result.ok:
                ctx.fail(
                    f"disk_health on {target['name']} ended {result.status}: {result.error}",
                    retry=result.status in ("timeout", "error"),
                )
            body = result.result if isinstance(result.result, dict) else {}
            if not isinstance(body.get("disks"), list):
                ctx.fail(
                    f"disk_health on {target['name']} answered without a disk list", retry=True
                )
            report = DeviceDisks(
                device=str(target["name"]),
                site=target.get("site"),
                source=body.get("source"),
                failing=list(body.get("failing") or []),
                degraded=list(body.get("degraded") or []),
                disks=[
                    DiskSummary.model_validate(
                        {k: d.get(k) for k in ("name", "status", "model", "serial", "reasons")}
                    )
                    for d in body["disks"]
                    if isinstance(d, dict)
                ],
            )
            ctx.info(
                f"{report.device}: {len(report.disks)} disks, failing {report.failing or 'none'}"
            )
            devices.append(report)
        return DiskReport(devices=devices)

    @step(kind="decide", output=Decision, uses=("check_disks",))
    def decide(self, ctx: StepContext) -> Decision:
        """A disk is failed when its health says failing (or degraded, if asked)."""
        report = DiskReport.model_validate(ctx.outputs["check_disks"])
        failed = []
        for device in report.devices:
            names = set(device.failing)
            if ctx.inputs.treat_degraded_as_failed:
                names |= set(device.degraded)
            for disk in device.disks:
                if disk.name in names:
                    failed.append(
                        FailedDisk(
                            device=device.device,
                            site=device.site,
                            disk=disk.name,
                            reasons=disk.reasons,
                        )
                    )
        if not failed:
            ctx.stop("no failed disk found")
        return Decision(failed=failed)

    @step(kind="remediate", retries=2, timeout=60, idempotent=True, uses=("decide",))
    def take_out_of_service(self, ctx: StepContext) -> dict[str, Any]:
        """Mark each failed disk failed and its device in maintenance, in inventory."""
        decision = Decision.model_validate(ctx.outputs["decide"])
        done: dict[str, Any] = {"components": [], "devices": [], "degraded": []}
        if not domains.installed("inventory"):
            message = "inventory service unavailable: disk and device status not changed"
            ctx.warning(message)
            done["degraded"].append(message)
            return done
        import popcorn.inventory.api as inventory_api

        for failed in decision.failed:
            reason = f"{ctx.inputs.reason}: {', '.join(failed.reasons) or 'failing'}"
            with ctx.session() as session:
                inventory_api.mark_component_failed(
                    session=session, device=failed.device, component=failed.disk, reason=reason
                )
            done["components"].append({"device": failed.device, "component": failed.disk})
            ctx.info(f"marked {failed.device}/{failed.disk} failed")
        for device in sorted({f.device for f in decision.failed}):
            with ctx.session() as session:
                inventory_api.set_device_status(
                    session=session,
                    ref=device,
                    status=MAINTENANCE,
                    reason=f"{ctx.inputs.reason} (execution {ctx.execution_id})",
                )
            done["devices"].append({"device": device, "status": MAINTENANCE})
            ctx.info(f"set {device} to {MAINTENANCE}")
        return done

    @step(kind="remediate", idempotent=True, uses=("decide",))
    def shift_traffic(self, ctx: StepContext) -> dict[str, Any]:
        """Ask traffic planning to move the site's load off each affected device."""
        if not ctx.inputs.shift_traffic:
            return {"requested": []}
        decision = Decision.model_validate(ctx.outputs["decide"])
        requested = []
        for device in sorted({f.device for f in decision.failed}):
            site = next((f.site for f in decision.failed if f.device == device), None)
            disks = sorted(f.disk for f in decision.failed if f.device == device)
            ctx.emit(
                "remediation.traffic.shift_requested",
                {"site": site, "device": device, "reason": ctx.inputs.reason, "disks": disks},
            )
            requested.append({"site": site, "device": device})
            ctx.info(f"asked traffic planning to shift load off {device} at {site}")
        return {"requested": requested}

    @step(kind="verify", retries=3, timeout=30, backoff=1.0, uses=("decide",))
    def verify(self, ctx: StepContext) -> dict[str, Any]:
        """Inventory now shows each device in maintenance and each disk failed."""
        decision = Decision.model_validate(ctx.outputs["decide"])
        if not domains.installed("inventory"):
            ctx.fail("cannot verify: the inventory service is unavailable", retry=False)
        import popcorn.inventory.api as inventory_api

        checked = []
        for device_name in sorted({f.device for f in decision.failed}):
            with ctx.session() as session:
                status = inventory_api.get_device(session=session, ref=device_name).status
                disks = {
                    f.disk: inventory_api.find_component(
                        session=session, device=device_name, component=f.disk
                    ).status
                    for f in decision.failed
                    if f.device == device_name
                }
            if status != MAINTENANCE:
                ctx.fail(
                    f"{device_name} is {status!r} in inventory, not {MAINTENANCE!r}", retry=True
                )
            for disk, state in disks.items():
                if state != FAILED:
                    ctx.fail(f"{device_name}/{disk} is {state!r}, not {FAILED!r}", retry=True)
            checked.append({"device": device_name, "status": status, "failed_disks": sorted(disks)})
        return {"verified": checked}
