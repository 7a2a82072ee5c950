"""Runbooks the console tests drive; copied into POPCORN_HOME/packs like a user's pack."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from popcorn.remediation.engine import Approval, Pack, Runbook, StepContext, step

pack = Pack("console", version="1.0.0", description="Runbooks for the console's tests")


class Inputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: str = "cache"
    depth: int = 1


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket: str = Field(pattern=r"^CHG-\d+$", description="The change ticket")
    window_minutes: int = Field(default=30, ge=1, le=240)


@pack.runbook
class Gated(Runbook):
    """Look, restart once a person approves with a change ticket, then verify."""

    name = "gated"
    Inputs = Inputs

    @step(kind="diagnose")
    def look(self, ctx: StepContext) -> dict[str, Any]:
        ctx.info("looked at the service", service=ctx.inputs.service)
        return {"healthy": False}

    @step(
        kind="remediate",
        approval=Approval(
            roles=("operator",), timeout=600, message="Restart the cache?", payload=Ticket
        ),
    )
    def restart(self, ctx: StepContext) -> dict[str, Any]:
        ctx.info("restarting", ticket=(ctx.approval or {}).get("ticket"))
        return {"ticket": (ctx.approval or {}).get("ticket")}

    @step(kind="verify")
    def verify(self, ctx: StepContext) -> dict[str, Any]:
        return {"healthy": True}
