"""Traffic API schemas: what operators send (strict) and what they get back."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from popcorn.lookup import MAX_ID
from popcorn.schemas import Page, ReadSchema, Schema

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*$"
RegionKind = Literal["cloud", "cdn"]
GroupKind = Literal["country", "isp", "network", "other"]
DemandSource = Literal["given", "signals", "forecast"]
Method = Literal["auto", "full", "decomposed"]


class RegionFields(Schema):
    kind: RegionKind | None = None
    capacity: float | None = Field(
        default=None,
        ge=0,
        description="Measured capacity: req/s for a cloud region, Gbps for a CDN site.",
    )
    instances: int | None = Field(default=None, ge=0)
    throughput_per_instance: float | None = Field(
        default=None, gt=0, description="req/s per instance."
    )
    headroom: float | None = Field(default=None, ge=0, lt=1, description="Share kept free.")
    max_instances: int | None = Field(default=None, ge=0)
    readiness_seconds: float | None = Field(default=None, ge=0)
    storage_gb: float | None = Field(default=None, ge=0, description="For content placement.")
    aws_region: str | None = Field(default=None, max_length=40)
    asg_name: str | None = Field(default=None, max_length=255)
    route53_zone_id: str | None = Field(default=None, max_length=64)
    route53_record_name: str | None = Field(default=None, max_length=255)
    route53_set_identifier: str | None = Field(
        default=None, max_length=128, description="Defaults to the region name."
    )
    route53_target: str | None = Field(
        default=None, max_length=255, description="Record value to create the record with."
    )
    inventory_site: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=200)


class RegionCreate(RegionFields):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)


class RegionUpdate(RegionFields):
    pass


class RegionRead(ReadSchema):
    id: int
    name: str
    kind: str
    source: str
    inventory_site: str | None
    capacity: float | None
    instances: int | None
    throughput_per_instance: float | None
    headroom: float
    max_instances: int | None
    readiness_seconds: float
    storage_gb: float | None
    aws_region: str | None
    asg_name: str | None
    route53_zone_id: str | None
    route53_record_name: str | None
    route53_set_identifier: str | None
    route53_target: str | None
    description: str
    created_at: datetime
    updated_at: datetime


class GroupFields(Schema):
    kind: GroupKind | None = None
    demand_source: DemandSource | None = None
    demand: float | None = Field(default=None, ge=0)
    demand_selector: str | None = Field(default=None, max_length=500)
    demand_window_seconds: float | None = Field(default=None, gt=0, le=86400 * 7)
    forecast_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    description: str | None = Field(default=None, max_length=200)


class GroupCreate(GroupFields):
    name: str = Field(min_length=1, max_length=100, pattern=NAME)


class GroupUpdate(GroupFields):
    pass


class GroupRead(ReadSchema):
    id: int
    name: str
    kind: str
    demand_source: str
    demand: float | None
    demand_selector: str | None
    demand_window_seconds: float
    forecast_id: int | None
    description: str
    created_at: datetime
    updated_at: datetime


class Scope(Schema):
    kind: RegionKind = "cloud"
    regions: list[str] | None = Field(default=None, description="Default: every region of kind.")
    groups: list[str] | None = Field(default=None, description="Default: every group.")
    demand: dict[str, float | None] | None = Field(
        default=None, description="Demand per group for this plan, instead of the stored one."
    )
    reason: str = Field(default="", max_length=500)


class SteeringCreate(Scope):
    method: Method = "auto"


class EvacuationCreate(Scope):
    evacuate: list[str] = Field(min_length=1)
    steps: int = Field(default=10, ge=1, le=200)
    dwell_seconds: float = Field(default=60.0, ge=0, le=86400)
    scale_cost: float = Field(default=0.0, ge=0)
    current_plan: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="A steering plan in force to start from (default: optimal).",
    )
    method: Method = "auto"


class ReturnCreate(Schema):
    steps: int | None = Field(default=None, ge=1, le=200)
    dwell_seconds: float | None = Field(default=None, ge=0, le=86400)
    reason: str = Field(default="", max_length=500)


class ShiftCreate(Schema):
    site: str = Field(min_length=1, max_length=100)
    reason: str = Field(default="", max_length=500)
    device: str | None = Field(default=None, max_length=200)


class PlanRead(ReadSchema):
    id: int
    kind: str
    region_kind: str
    reason: str
    feasible: bool
    evacuated: list[str]
    parent_id: int | None
    summary: dict[str, Any]
    created_by: str
    created_at: datetime


class PlanDetail(PlanRead):
    inputs: dict[str, Any]
    result: dict[str, Any]


class HealthSpec(Schema):
    selector: str | None = Field(default=None, max_length=500)
    threshold: float | None = None
    window_seconds: float | None = Field(default=None, gt=0, le=86400)
    url: str | None = Field(default=None, max_length=2000)
    callable: str | None = Field(default=None, max_length=300, pattern=r"^[\w.]+:[\w.]+$")


class ExecuteCreate(Schema):
    dwell_seconds: float | None = Field(
        default=None, ge=0, le=86400, description="Wait per step (default: the plan's)."
    )
    scale_timeout_seconds: float | None = Field(default=None, gt=0, le=86400)
    poll_seconds: float | None = Field(default=None, gt=0, le=600)
    health: HealthSpec | None = None


class StepRead(ReadSchema):
    position: int
    kind: str
    name: str
    status: str
    detail: dict[str, Any]
    error: str
    started_at: datetime
    ended_at: datetime | None


class ExecutionRead(ReadSchema):
    id: int
    plan_id: int
    status: str
    cancel_requested: bool
    job_id: int | None
    current_step: int
    total_steps: int
    error: str
    rolled_back: bool
    created_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class ExecutionDetail(ExecutionRead):
    options: dict[str, Any]
    snapshot: dict[str, Any]
    steps: list[StepRead]


class SettingsUpdate(Schema):
    aws_endpoint_url: str | None = Field(default=None, max_length=500)
    aws_region: str | None = Field(default=None, max_length=40)
    aws_profile: str | None = Field(default=None, max_length=100)
    scale_timeout_seconds: float | None = Field(default=None, gt=0, le=86400)
    poll_seconds: float | None = Field(default=None, gt=0, le=600)
    health_selector: str | None = Field(default=None, max_length=500)
    health_threshold: float | None = None
    health_window_seconds: float | None = Field(default=None, gt=0, le=86400)
    health_url: str | None = Field(default=None, max_length=2000)
    health_callable: str | None = Field(default=None, max_length=300, pattern=r"^[\w.]+:[\w.]+$")
    health_timeout_seconds: float | None = Field(default=None, gt=0, le=600)


class ForecastCreate(Schema):
    region: str | None = Field(default=None, description="Region whose demand is forecast.")
    name: str = Field(default="", max_length=200)
    selector: str | None = Field(default=None, max_length=500, description="Signals selector.")
    history: list[float | None] | None = Field(
        default=None, description="Demand samples, oldest first, instead of a selector."
    )
    step_seconds: int = Field(default=300, gt=0, le=86400)
    horizon: int = Field(default=288, ge=1, le=20000)
    days: float = Field(default=28.0, gt=0, le=366, description="History read from signals.")
    end: datetime | None = Field(default=None, description="End of the history (default: now).")
    folds: int = Field(default=3, ge=1, le=20)
    min_instances: int = Field(default=1, ge=0)
    band: float = Field(default=0.1, ge=0, lt=1)
    demand: Literal["history", "predicted"] = Field(
        default="history",
        description="`predicted`: the region's hourly demand from ML's promoted demand-forecast "
        "model (no selector or history; steps are hours, horizon default 48).",
    )
    ml_region: str = Field(
        default="", max_length=200, description="The region's name in ML's model (default: region)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ForecastCreate:
        if self.demand == "predicted":
            if not self.region:
                raise ValueError("`demand: predicted` needs the region to scale")
            if self.selector is not None or self.history is not None:
                raise ValueError("`demand: predicted` takes no selector or history")
            if "step_seconds" in self.model_fields_set and self.step_seconds != 3600:
                raise ValueError("`demand: predicted` is hourly: step_seconds must be 3600")
            self.step_seconds = 3600
            if "horizon" not in self.model_fields_set:
                self.horizon = 48
            return self
        if (self.selector is None) == (self.history is None):
            raise ValueError("give exactly one of selector and history")
        return self


class ForecastRead(ReadSchema):
    id: int
    name: str
    region_id: int | None
    source: str
    selector: str | None
    start: datetime
    step_seconds: float
    horizon: int
    backtest: dict[str, Any]
    weights: dict[str, float]
    created_by: str
    created_at: datetime


class ForecastDetail(ForecastRead):
    values: list[float]
    scaling: dict[str, Any] | None


class PopularityRow(Schema):
    site: str = Field(min_length=1)
    title: str = Field(min_length=1)
    requests: float = Field(ge=0)


class SizeRow(Schema):
    title: str = Field(min_length=1)
    size: float = Field(gt=0)


class StorageRow(Schema):
    site: str = Field(min_length=1)
    storage: float = Field(ge=0)


class PlacementCreate(Schema):
    name: str = Field(default="", max_length=200)
    popularity: list[PopularityRow] = Field(
        default_factory=list,
        description="Requests per (site, title); leave empty with `demand: predicted`.",
    )
    demand: Literal["observed", "predicted"] = Field(
        default="observed",
        description="`predicted`: each site's requests are ML's predicted title demand in its "
        "region (`site_regions`), from the promoted recommendations model.",
    )
    site_regions: dict[str, str] = Field(
        default_factory=dict,
        max_length=10_000,
        description="Site -> the region ML predicts demand for (with `demand: predicted`).",
    )
    sizes: list[SizeRow] = Field(min_length=1)
    storage: list[StorageRow] | None = Field(
        default=None, description="GB per site; default: the site's region storage or inventory."
    )
    strategy: Literal["density", "popularity"] = "density"

    @model_validator(mode="after")
    def _demand_source(self) -> PlacementCreate:
        if self.demand == "observed" and not self.popularity:
            raise ValueError("popularity needs at least one row (or `demand: predicted`)")
        if self.demand == "predicted" and not self.site_regions:
            raise ValueError("`demand: predicted` needs `site_regions` (site -> region)")
        return self


class PlacementRead(ReadSchema):
    id: int
    name: str
    strategy: str
    local_share: float
    bound_share: float | None
    baseline_share: float | None
    summary: dict[str, Any]
    created_by: str
    created_at: datetime


class PlacementDetail(PlacementRead):
    result: dict[str, Any]


# --- list and other answers ----------------------------------------------------------------


class RegionPage(Page[RegionRead]):
    pass


class GroupPage(Page[GroupRead]):
    pass


class PlanPage(Page[PlanRead]):
    pass


class ExecutionPage(Page[ExecutionRead]):
    pass


class ForecastPage(Page[ForecastRead]):
    pass


class PlacementPage(Page[PlacementRead]):
    pass


class ChangeRead(BaseModel):
    """One audit record of an object: when, who, what and the changed fields."""

    time: datetime
    actor: str
    action: str
    diff: dict[str, Any]


class ChangePage(Page[ChangeRead]):
    pass


class SyncResult(BaseModel):
    created: list[str] = Field(description="Regions created from inventory sites.")
    updated: list[str] = Field(description="Regions whose numbers changed.")
    sites: int = Field(description="Inventory sites read.")


class CostMatrix(BaseModel):
    groups: list[str]
    regions: list[str]
    matrix: list[list[float | None]] = Field(
        description="One row per group, one cost per region; null where not allowed."
    )


class CostsStored(BaseModel):
    pairs: int = Field(description="Cost pairs stored after the upload.")
    given: int = Field(description="Entries in the upload.")
    replace: bool


class SettingsRead(BaseModel):
    aws_endpoint_url: str | None
    aws_region: str | None
    aws_profile: str | None
    scale_timeout_seconds: float
    poll_seconds: float
    health_selector: str | None
    health_threshold: float | None
    health_window_seconds: float
    health_url: str | None
    health_callable: str | None
    health_timeout_seconds: float
