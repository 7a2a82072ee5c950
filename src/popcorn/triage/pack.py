"""The triage pack: "triage this group" as a runbook, its report attached to the execution.

`triage.group` collects the group's host state through Bolt (hosts from the execution's
target, or a role/site/region), ranks the outliers, and attaches the top ones with their
evidence to the execution. It changes nothing on any host; an events rule can start it on
an alert and chain whatever comes next on the suspects.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from popcorn.remediation.engine import Concurrency, Pack, Runbook, StepContext, step
from popcorn.triage.tables import TableName

pack = Pack(
    "triage",
    version="1.0.0",
    description="Fleet triage: find the hosts of a group that differ from their peers.",
)


class GroupInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(default=None, max_length=100)
    site: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=100)
    tag: str | None = Field(default=None, max_length=100)
    tables: list[TableName] | None = None
    rare_fraction: float = Field(default=0.1, gt=0, le=0.5)
    concurrency: int = Field(default=16, ge=1, le=256)
    top: int = Field(default=5, ge=1, le=50)


class Collected(BaseModel):
    collection_id: int
    hosts: dict[str, int]
    findings: int


class Report(BaseModel):
    collection_id: int
    suspects: list[str]
    outliers: list[dict[str, Any]]


@pack.runbook
class TriageGroup(Runbook):
    """Triage this group: collect every host's state, rank the odd ones with evidence."""

    name = "group"
    Inputs = GroupInputs
    target = "optional"
    concurrency = Concurrency(max_runs=3, per_target=None)

    @step(kind="diagnose", retries=0, timeout=3600, output=Collected)
    def collect(self, ctx: StepContext) -> Collected:
        """Collect from the target devices (or role, site, region, model, tag); analyse."""
        from popcorn.triage import schemas, service

        inputs = ctx.inputs
        devices = [t["name"] for t in ctx.targets if t.get("name")] or None
        spec = schemas.CollectionCreate.model_validate(
            {
                "scope": {
                    "role": inputs.role,
                    "site": inputs.site,
                    "region": inputs.region,
                    "model": inputs.model,
                    "tags": [inputs.tag] if inputs.tag else None,
                    "devices": devices,
                },
                "name": f"runbook execution {ctx.execution_id}",
                "tables": inputs.tables,
                "concurrency": inputs.concurrency,
                "rare_fraction": inputs.rare_fraction,
            }
        )
        with ctx.session() as session:
            collection_id = service.create_collection(
                session=session, spec=spec, run_as_job=False
            ).id
        ctx.info(f"collection {collection_id} started")
        summary = service.run_collection(collection_id)
        return Collected(
            collection_id=collection_id, hosts=summary["hosts"], findings=summary["findings"]
        )

    @step(kind="diagnose", uses=("collect",), output=Report)
    def report(self, ctx: StepContext) -> Report:
        """Attach the top outliers, each with the rows that make it rare, as evidence."""
        from popcorn.listing import ListParams
        from popcorn.triage import schemas, service

        collection_id = ctx.outputs["collect"]["collection_id"]
        with ctx.session() as session:
            page = service.list_outliers(
                session=session,
                collection=collection_id,
                params=ListParams(limit=ctx.inputs.top),
                flagged_only=True,
            )
            outliers = page.serialize(schemas.OutlierRead)["items"]
            findings = service.list_findings(
                session=session, collection=collection_id, params=ListParams(limit=10)
            ).serialize(schemas.FindingRead)["items"]
        for outlier in outliers:
            outlier["evidence"] = outlier["evidence"][:10]
        ctx.attach_evidence(
            {
                "kind": "triage_outliers",
                "collection_id": collection_id,
                "hosts": ctx.outputs["collect"]["hosts"],
                "outliers": outliers,
                "findings": [
                    {k: f[k] for k in ("rank", "kind", "score", "hosts", "tables")}
                    for f in findings
                ],
            }
        )
        suspects = [o["device"] for o in outliers]
        ctx.info(f"suspects: {', '.join(suspects) or 'none'}")
        return Report(collection_id=collection_id, suspects=suspects, outliers=outliers)
