"""Remediation tables: executions and their step runs, approvals, safety rails, Bolt agents.

An execution is the durable record of one runbook run: every step has a row
written when it starts and when it ends, so a worker that dies mid-run leaves
a checkpoint to resume from. Concurrency gates and holds make the runbook and
target limits atomic (a row lock per gate key); the circuit row is the global
remediation budget.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from popcorn.db import Base, JSONType, UTCDateTime, utcnow

# Executions are queued (over a concurrency limit), pending (a job will run them), running
# or waiting_approval, then end succeeded, failed, canceled, rejected or dropped. Steps are
# pending, running, retrying or waiting_approval, then end succeeded, failed, skipped,
# canceled or rejected.
TERMINAL_STATUSES = ("succeeded", "failed", "canceled", "rejected", "dropped")


class RunbookExecution(Base):
    __tablename__ = "remediation_executions"
    __table_args__ = (Index("ix_remediation_executions_runbook_status", "runbook", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    runbook: Mapped[str] = mapped_column(String(200))
    pack: Mapped[str] = mapped_column(String(100))
    pack_version: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    target: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    targets: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    error: Mapped[str] = mapped_column(Text, default="")
    current_step: Mapped[str | None] = mapped_column(String(100), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    rerun_of: Mapped[int | None] = mapped_column(
        ForeignKey("remediation_executions.id", ondelete="SET NULL"), nullable=True
    )
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    claim: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StepRun(Base):
    __tablename__ = "remediation_step_runs"
    __table_args__ = (
        UniqueConstraint("execution_id", "position"),
        Index("ix_remediation_step_runs_kind_started", "kind", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("remediation_executions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    logs: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    error: Mapped[str] = mapped_column(Text, default="")
    reused: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Approval(Base):
    __tablename__ = "remediation_approvals"

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("remediation_executions.id", ondelete="CASCADE"), index=True
    )
    step_run_id: Mapped[int] = mapped_column(
        ForeignKey("remediation_step_runs.id", ondelete="CASCADE"), unique=True
    )
    step: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    message: Mapped[str] = mapped_column(Text, default="")
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    payload_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    deadline: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    answered_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Gate(Base):
    """One row per concurrency key; admission locks it so counting holders is not racy."""

    __tablename__ = "remediation_gates"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Hold(Base):
    """An execution's claim on a gate key: granted while it runs, waiting while it is queued."""

    __tablename__ = "remediation_holds"
    __table_args__ = (
        UniqueConstraint("execution_id", "key"),
        Index("ix_remediation_holds_key_granted", "key", "granted"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("remediation_executions.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(300))
    limit: Mapped[int] = mapped_column(Integer)
    granted: Mapped[bool] = mapped_column(Boolean, default=False)


class Circuit(Base):
    """The global budget of remediations per window, and whether automation is stopped."""

    __tablename__ = "remediation_circuit"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="closed")
    budget: Mapped[int] = mapped_column(Integer)
    window_seconds: Mapped[int] = mapped_column(Integer)
    tripped_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    reset_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Agent(Base):
    """A Bolt agent as last announced by its heartbeat."""

    __tablename__ = "remediation_agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    device: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    url: Mapped[str] = mapped_column(String(300))
    version: Mapped[str] = mapped_column(String(50), default="")
    actions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    inventory_link: Mapped[str] = mapped_column(String(200), default="")
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
