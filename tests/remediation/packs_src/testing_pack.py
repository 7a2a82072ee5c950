"""Runbooks the remediation tests drive; copied into POPCORN_HOME/packs so that worker
processes discover them the way they discover users' packs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from popcorn.remediation.engine import Approval, Concurrency, Pack, Runbook, StepContext, step

pack = Pack("testing", version="1.0.0", description="Runbooks for Popcorn's own tests")


class Knobs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 1
    marker: str | None = None
    fail_times: int = 0
    sleep: float = 0.0


def _count(marker: str | None, label: str) -> int:
    """Appends `label` to the marker file and returns how often it is there now."""
    if not marker:
        return 0
    path = Path(marker)
    with path.open("a") as fh:
        fh.write(label + "\n")
    return path.read_text().splitlines().count(label)


@pack.runbook
class Trivial(Runbook):
    """Three quick steps: the runbook the benchmark runs too."""

    name = "trivial"
    Inputs = Knobs

    @step(kind="diagnose")
    def look(self, ctx: StepContext) -> dict[str, Any]:
        ctx.info("looking", n=ctx.inputs.n)
        return {"n": ctx.inputs.n}

    @step(kind="decide", uses=("look",))
    def think(self, ctx: StepContext) -> dict[str, Any]:
        return {"double": ctx.outputs["look"]["n"] * 2}

    @step(kind="remediate")
    def act(self, ctx: StepContext) -> dict[str, Any]:
        ctx.emit("remediation.testing.acted", {"n": ctx.inputs.n})
        return {"acted": True, "saw": sorted(ctx.outputs)}


@pack.runbook
class Flaky(Runbook):
    """The second step fails `fail_times` times before it succeeds."""

    name = "flaky"
    Inputs = Knobs

    @step(kind="diagnose")
    def first(self, ctx: StepContext) -> dict[str, Any]:
        return {"runs": _count(ctx.inputs.marker, "first")}

    @step(kind="diagnose", retries=2, backoff=0.05)
    def shaky(self, ctx: StepContext) -> dict[str, Any]:
        runs = _count(ctx.inputs.marker, "shaky")
        if runs <= ctx.inputs.fail_times:
            raise RuntimeError(f"planned failure {runs}")
        return {"runs": runs}

    @step(kind="verify")
    def last(self, ctx: StepContext) -> dict[str, Any]:
        return {"shaky": ctx.outputs["shaky"]}


class Ticket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ticket: str = Field(pattern=r"^CHG-\d+$")
    window_minutes: int = Field(default=30, ge=1, le=240)


@pack.runbook
class Gated(Runbook):
    """Diagnose, then a remediation that a human approves with a change ticket."""

    name = "gated"
    Inputs = Knobs

    @step(kind="diagnose")
    def check(self, ctx: StepContext) -> dict[str, Any]:
        return {"ok": True}

    @step(
        kind="remediate",
        approval=Approval(roles=("operator",), timeout=600, message="restart?", payload=Ticket),
    )
    def restart(self, ctx: StepContext) -> dict[str, Any]:
        return {"ticket": (ctx.approval or {}).get("ticket")}


@pack.runbook
class Slow(Runbook):
    """A long middle step (for cancellation, timeouts and lost workers)."""

    name = "slow"
    Inputs = Knobs

    @step(kind="diagnose")
    def before(self, ctx: StepContext) -> dict[str, Any]:
        return {"runs": _count(ctx.inputs.marker, "before")}

    @step(kind="diagnose", timeout=20)
    def wait(self, ctx: StepContext) -> dict[str, Any]:
        runs = _count(ctx.inputs.marker, "wait")
        ctx.sleep(ctx.inputs.sleep)
        return {"runs": runs}

    @step(kind="verify")
    def after(self, ctx: StepContext) -> dict[str, Any]:
        return {"runs": _count(ctx.inputs.marker, "after")}


@pack.runbook
class Stubborn(Runbook):
    """A remediation that must not be repeated when its worker is lost."""

    name = "stubborn"
    Inputs = Knobs

    @step(kind="remediate")
    def once(self, ctx: StepContext) -> dict[str, Any]:
        ctx.sleep(ctx.inputs.sleep)
        return {}


@pack.runbook
class Quick(Runbook):
    """A tight timeout, an output that is not JSON, and an early stop."""

    name = "quick"
    Inputs = Knobs

    @step(kind="diagnose", timeout=0.3, retries=1, backoff=0.01)
    def hurry(self, ctx: StepContext) -> dict[str, Any]:
        ctx.sleep(ctx.inputs.sleep)
        return {"slept": ctx.inputs.sleep}

    @step(kind="decide")
    def maybe_stop(self, ctx: StepContext) -> Any:
        if ctx.inputs.n == 0:
            ctx.stop("nothing to do")
        if ctx.inputs.n < 0:
            return 42
        return {"go": True}

    @step(kind="remediate")
    def fix(self, ctx: StepContext) -> dict[str, Any]:
        return {"fixed": True}


@pack.runbook
class PerDevice(Runbook):
    """One at a time per device; queue the rest."""

    name = "per_device"
    Inputs = Knobs
    target = "required"
    concurrency = Concurrency(per_target=1, on_limit="queue")

    @step(kind="remediate")
    def touch(self, ctx: StepContext) -> dict[str, Any]:
        return {"devices": [t["name"] for t in ctx.targets]}


@pack.runbook
class Single(Runbook):
    """One execution at a time in total; drop the rest."""

    name = "single"
    Inputs = Knobs
    target = "none"
    concurrency = Concurrency(max_runs=1, per_target=None, on_limit="drop")

    @step(kind="diagnose")
    def alone(self, ctx: StepContext) -> dict[str, Any]:
        return {}


@pack.runbook
class AgentProbe(Runbook):
    """Asks a device's Bolt agent for disk health, retrying quickly."""

    name = "agent_probe"
    Inputs = Knobs
    target = "required"
    concurrency = Concurrency(per_target=None)

    @step(kind="diagnose", retries=2, backoff=0.01, timeout=20)
    def probe(self, ctx: StepContext) -> dict[str, Any]:
        result = ctx.agent_run(ctx.targets[0], "disk_health", {})
        return {"status": result.status, "failing": result.result.get("failing")}


@pack.runbook
class Patient(Runbook):
    """A retry far enough away that the worker is released meanwhile."""

    name = "patient"
    Inputs = Knobs

    @step(kind="diagnose", retries=1, backoff=120)
    def later(self, ctx: StepContext) -> dict[str, Any]:
        if _count(ctx.inputs.marker, "later") == 1:
            raise RuntimeError("not yet")
        return {}
