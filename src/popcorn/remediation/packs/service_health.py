"""The service pack: a service's error rate alert, explained by the signals around it.

`service.high_error_rate` asks the signals domain to rank the signals that
changed before the alert (and together), attaches the ranked findings and
clusters to the execution as evidence, and names the suspects. It changes
nothing: responders read the evidence on the execution (or an events rule
chains a remediation runbook on the suspects).
"""

from __future__ import annotations

from datetime import datetime
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
    "service",
    version="1.0.0",
    description="Service health: alert analysis with ranked signal evidence.",
)

FINDING_FIELDS = (
    "series_id",
    "name",
    "verdict",
    "score",
    "change_time",
    "offset_seconds",
    "kind",
    "direction",
    "explanation",
)


class HighErrorRateInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alert_time: datetime = Field(description="When the alert fired (ISO 8601).")
    service: str | None = Field(default=None, max_length=200)
    trigger: str | None = Field(
        default=None, max_length=1000, description="The alerting series: an id or a selector."
    )
    selector: str | None = Field(
        default=None, max_length=1000, description="Candidate signals (PromQL-style selector)."
    )
    scope: dict[str, Any] | None = Field(
        default=None, description="Candidate signals by label values, e.g. {'site': 'ams1'}."
    )
    window_minutes: int = Field(default=120, ge=5, le=20160)
    top: int = Field(default=10, ge=1, le=100)


class Finding(BaseModel):
    model_config = ConfigDict(extra="ignore")

    series_id: int | None = None
    name: str | None = None
    verdict: str | None = None
    score: float | None = None
    change_time: Any = None
    offset_seconds: int | None = None
    kind: str | None = None
    direction: str | None = None
    explanation: Any = None


class Ranking(BaseModel):
    analysis_id: int
    signal_count: int
    findings: list[Finding]
    clusters: list[dict[str, Any]]


@pack.runbook
class HighErrorRate(Runbook):
    """A service's error rate is high: rank the signals that changed before the alert and
    attach them to the execution as evidence."""

    name = "high_error_rate"
    Inputs = HighErrorRateInputs
    target = "optional"
    concurrency = Concurrency(max_runs=10, per_target=None)

    @step(kind="diagnose", retries=1, timeout=300, backoff=2.0, output=Ranking)
    def rank_signals(self, ctx: StepContext) -> Ranking:
        """Signals analysis around the alert time (signals' analyze_alert, inline)."""
        if not domains.installed("signals"):
            ctx.fail("the signals service (analyze_alert) is not available", retry=False)
        from popcorn.signals import api as signals_api

        scope = dict(ctx.inputs.scope or {})
        if not scope and not ctx.inputs.selector and ctx.targets:
            scope = {"device": [t["name"] for t in ctx.targets if t.get("name")]}
        if ctx.inputs.service and not ctx.inputs.selector:
            scope.setdefault("service", ctx.inputs.service)
        # No transaction of ours around it: signals ranks in a read-only session and saves
        # in a short one, so other writes do not wait behind the ranking.
        analysis = signals_api.analyze_alert(
            alert_time=ctx.inputs.alert_time,
            trigger=ctx.inputs.trigger,
            selector=ctx.inputs.selector,
            scope=scope or None,
            window_minutes=ctx.inputs.window_minutes,
            inline=True,
        )
        result, analysis_id, signal_count = analysis.result, analysis.id, analysis.signal_count
        findings = [
            Finding.model_validate({k: f.get(k) for k in FINDING_FIELDS})
            for f in (result.get("findings") or [])[: ctx.inputs.top]
            if isinstance(f, dict)
        ]
        clusters = [c for c in (result.get("clusters") or [])[:5] if isinstance(c, dict)]
        ranking = Ranking(
            analysis_id=analysis_id,
            signal_count=signal_count,
            findings=findings,
            clusters=clusters,
        )
        ctx.attach_evidence(
            {
                "source": "signals",
                "analysis_id": analysis_id,
                "alert_time": ctx.inputs.alert_time.isoformat(),
                "signal_count": signal_count,
                "findings": [f.model_dump(mode="json") for f in findings],
                "clusters": clusters,
            }
        )
        ctx.info(f"ranked {signal_count} signals; top {len(findings)} attached as evidence")
        return ranking

    @step(kind="decide", uses=("rank_signals",))
    def name_suspects(self, ctx: StepContext) -> dict[str, Any]:
        """The signals that changed before the alert, best first."""
        ranking = Ranking.model_validate(ctx.outputs["rank_signals"])
        suspects = [f for f in ranking.findings if (f.verdict or "") != "unchanged"]
        if not suspects:
            ctx.stop("no signal changed around the alert")
        top = suspects[0]
        return {
            "suspects": [f.name for f in suspects],
            "summary": f"{top.name} changed first (score {top.score}); "
            f"{len(suspects)} signals changed around the alert",
        }
