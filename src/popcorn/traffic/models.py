"""Traffic tables: regions and CDN sites, client groups and their costs, plans, executions,
forecasts, placements and the installation's AWS and health-check settings.

Plans keep a snapshot of their inputs next to their result, so a plan stays readable (and
executable) after the regions or groups it was made from change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from popcorn.db import Base, JSONType, UTCDateTime, utcnow

REGION_KINDS = ("cloud", "cdn")
GROUP_KINDS = ("country", "isp", "network", "other")
DEMAND_SOURCES = ("given", "signals", "forecast")
PLAN_KINDS = ("steering", "evacuation", "return", "shift")
EXECUTION_STATUSES = ("pending", "running", "succeeded", "aborted", "canceled", "rollback_failed")
ACTIVE_EXECUTION = ("pending", "running")


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TrafficRegion(Timestamps, Base):
    """A cloud region or a CDN site that serves traffic, and how it is bound to AWS."""

    __tablename__ = "traffic_regions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default="cloud", index=True)
    source: Mapped[str] = mapped_column(String(20), default="manual")
    inventory_site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    capacity: Mapped[float | None] = mapped_column(Float, nullable=True)
    instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    throughput_per_instance: Mapped[float | None] = mapped_column(Float, nullable=True)
    headroom: Mapped[float] = mapped_column(Float, default=0.0)
    max_instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    readiness_seconds: Mapped[float] = mapped_column(Float, default=600.0)
    storage_gb: Mapped[float | None] = mapped_column(Float, nullable=True)
    aws_region: Mapped[str | None] = mapped_column(String(40), nullable=True)
    asg_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    route53_zone_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    route53_record_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    route53_set_identifier: Mapped[str | None] = mapped_column(String(128), nullable=True)
    route53_target: Mapped[str | None] = mapped_column(String(255), nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")


class ClientGroup(Timestamps, Base):
    """Clients steered together (a country, an ISP, a network) and where their demand comes from."""

    __tablename__ = "traffic_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="other")
    demand_source: Mapped[str] = mapped_column(String(20), default="given")
    demand: Mapped[float | None] = mapped_column(Float, nullable=True)
    demand_selector: Mapped[str | None] = mapped_column(String(500), nullable=True)
    demand_window_seconds: Mapped[float] = mapped_column(Float, default=900.0)
    forecast_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(String(200), default="")


class Cost(Base):
    """Cost (latency, say) of serving a group from a region; a missing pair is not allowed."""

    __tablename__ = "traffic_costs"
    __table_args__ = (UniqueConstraint("group_id", "region_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("traffic_groups.id", ondelete="CASCADE"), index=True
    )
    region_id: Mapped[int] = mapped_column(
        ForeignKey("traffic_regions.id", ondelete="CASCADE"), index=True
    )
    cost: Mapped[float] = mapped_column(Float)


class Setting(Base):
    """One installation-wide traffic setting (AWS endpoint, health check, timeouts)."""

    __tablename__ = "traffic_settings"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Plan(Base):
    """A steering, evacuation, return or site-shift plan: its inputs and its result."""

    __tablename__ = "traffic_plans"
    __table_args__ = (Index("ix_traffic_plans_kind_created", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    region_kind: Mapped[str] = mapped_column(String(10), default="cloud")
    reason: Mapped[str] = mapped_column(String(500), default="")
    feasible: Mapped[bool] = mapped_column(Boolean)
    evacuated: Mapped[list[str]] = mapped_column(JSONType, default=list)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("traffic_plans.id"), nullable=True, index=True
    )
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Execution(Base):
    """One run of a plan against AWS: what it captured first, how far it got, how it ended."""

    __tablename__ = "traffic_executions"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("traffic_plans.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    current_step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    rolled_back: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    steps: Mapped[list[ExecutionStep]] = relationship(
        back_populates="execution", order_by="ExecutionStep.position", cascade="all, delete-orphan"
    )


class ExecutionStep(Base):
    """A unit of an execution: capture, scale a region, shift a step, roll back."""

    __tablename__ = "traffic_execution_steps"
    __table_args__ = (Index("ix_traffic_steps_execution", "execution_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("traffic_executions.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="running")
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    execution: Mapped[Execution] = relationship(back_populates="steps")


class Forecast(Base):
    """Forecast demand of a region (or any series) with its backtest and scaling plan."""

    __tablename__ = "traffic_forecasts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    region_id: Mapped[int | None] = mapped_column(
        ForeignKey("traffic_regions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    source: Mapped[str] = mapped_column(String(20))
    selector: Mapped[str | None] = mapped_column(String(500), nullable=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    step_seconds: Mapped[float] = mapped_column(Float)
    horizon: Mapped[int] = mapped_column(Integer)
    history: Mapped[list[float]] = mapped_column(JSONType, default=list)
    values: Mapped[list[float]] = mapped_column(JSONType, default=list)
    backtest: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    weights: Mapped[dict[str, float]] = mapped_column(JSONType, default=dict)
    scaling: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Placement(Base):
    """A content placement plan: per site, which titles to hold, in fill order."""

    __tablename__ = "traffic_placements"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    strategy: Mapped[str] = mapped_column(String(20))
    local_share: Mapped[float] = mapped_column(Float)
    bound_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    baseline_share: Mapped[float | None] = mapped_column(Float, nullable=True)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
