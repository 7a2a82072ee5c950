"""The demo's own runbook pack, installed into POPCORN_HOME/packs the way a user installs one.

`field.disk_replacement` sends a technician to swap a failed disk. Sending someone to a
site costs money and a visit window, so a person approves it with a change ticket before
the step runs; the story answers that approval. It changes nothing in inventory itself:
the disk was failed by `storage.disk_failure`; this confirms that, asks for the change
ticket, and announces the replacement as a domain event.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from popcorn import domains
from popcorn.remediation.engine import Approval, Pack, Runbook, StepContext, step

pack = Pack(
    "field",
    version="1.0.0",
    description="Field work on appliances: a disk replacement an operator approves.",
)


class ReplacementInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field(max_length=200, description="The appliance")
    disk: str = Field(max_length=100, description="The failed disk (component name)")


class ChangeTicket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket: str = Field(pattern=r"^CHG-\d{1,9}$", description="The change ticket for the visit")


@pack.runbook
class DiskReplacement(Runbook):
    """Confirm a disk is failed in inventory, then (once an operator approves with a change
    ticket) schedule a technician to replace it."""

    name = "disk_replacement"
    Inputs = ReplacementInputs

    @step(kind="diagnose")
    def confirm_failed(self, ctx: StepContext) -> dict[str, Any]:
        """The disk must already be failed in inventory: nobody is sent for a healthy disk."""
        domains.require("inventory", "the disk's status is read from inventory")
        import popcorn.inventory.api as inventory_api

        with ctx.session() as session:
            device = inventory_api.get_device(session=session, ref=ctx.inputs.device)
            part = inventory_api.find_component(
                session=session, device=ctx.inputs.device, component=ctx.inputs.disk
            )
        if part.status != "failed":
            ctx.stop(f"{ctx.inputs.device}/{ctx.inputs.disk} is {part.status!r}, not failed")
        return {"device": device.name, "site": device.site, "disk": part.name}

    @step(
        kind="remediate",
        uses=("confirm_failed",),
        approval=Approval(
            roles=("operator",),
            timeout=3600,
            message="Send a technician to replace the failed disk?",
            payload=ChangeTicket,
        ),
    )
    def schedule_replacement(self, ctx: StepContext) -> dict[str, Any]:
        """Announce the approved replacement (`remediation.disk.replacement_scheduled`)."""
        found = ctx.outputs["confirm_failed"]
        ticket = (ctx.approval or {}).get("ticket")
        ctx.emit("remediation.disk.replacement_scheduled", {**found, "ticket": ticket})
        ctx.info(f"replacement of {found['device']}/{found['disk']} scheduled under {ticket}")
        return {**found, "ticket": ticket}
