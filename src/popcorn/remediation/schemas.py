"""API shapes of the remediation domain: starting runbooks, executions, approvals, agents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from popcorn.schemas import Page, ReadSchema, Schema

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"


class TargetSpec(Schema):
    """Which devices a runbook acts on, resolved through inventory when it starts."""

    device: str | list[str] | None = None
    site: str | None = None
    region: str | None = None
    role: str | None = None
    status: str | None = None

    @field_validator("device")
    @classmethod
    def _devices(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and not (1 <= len(value) <= 1000):
            raise ValueError("give between 1 and 1000 device names")
        return value

    def as_filters(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v not in (None, "", [])}


class ExecutionStart(Schema):
    runbook: str = Field(min_length=1, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    target: TargetSpec | None = None
    trigger: dict[str, Any] | None = None
    dry_run: bool = False


class ExecutionRead(ReadSchema):
    id: int
    runbook: str
    pack: str
    pack_version: str
    status: str
    inputs: dict[str, Any]
    target: dict[str, Any] | None
    targets: list[dict[str, Any]]
    trigger: dict[str, Any] | None
    dry_run: bool
    evidence: list[dict[str, Any]]
    error: str
    current_step: str | None
    cancel_requested: bool
    rerun_of: int | None
    job_id: int | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime


class StepRunRead(ReadSchema):
    id: int
    position: int
    name: str
    kind: str
    status: str
    attempts: int
    max_attempts: int
    inputs: dict[str, Any] | None
    outputs: dict[str, Any] | None
    logs: list[dict[str, Any]]
    error: str
    reused: bool
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: float | None
    next_attempt_at: datetime | None


class ApprovalRead(ReadSchema):
    id: int
    execution_id: int
    step: str
    status: str
    message: str
    roles: list[str]
    payload_schema: dict[str, Any] | None
    payload: dict[str, Any] | None
    comment: str
    deadline: datetime
    answered_by: str | None
    answered_at: datetime | None
    created_at: datetime


class ExecutionDetail(ExecutionRead):
    steps: list[StepRunRead]
    approvals: list[ApprovalRead]


class RerunBody(Schema):
    from_step: str | None = Field(default=None, max_length=100)


class ApproveBody(Schema):
    payload: dict[str, Any] | None = None
    comment: str = Field(default="", max_length=2000)


class RejectBody(Schema):
    comment: str = Field(default="", max_length=2000)


class CircuitRead(ReadSchema):
    state: str
    budget: int
    window_seconds: int
    used: int
    tripped_at: datetime | None
    reason: str
    reset_by: str | None
    reset_at: datetime | None


class CircuitConfigure(Schema):
    budget: int | None = Field(default=None, ge=0, le=1_000_000)
    window_seconds: int | None = Field(default=None, ge=1, le=30 * 86400)


class AgentHeartbeat(Schema):
    """What a Bolt agent announces on every beat."""

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    device: str | None = Field(default=None, max_length=100)
    url: str = Field(min_length=1, max_length=300, pattern=r"^https?://[^\s/]+")
    version: str = Field(default="", max_length=50)
    actions: list[str] = Field(default_factory=list, max_length=1000)


class AgentRead(ReadSchema):
    id: int
    name: str
    device: str | None
    url: str
    version: str
    actions: list[str]
    inventory_link: str
    last_seen: datetime
    created_at: datetime
    stale: bool = False


class StepDescription(BaseModel):
    name: str
    kind: str
    description: str | None = None
    retries: int
    timeout: float
    backoff: float
    idempotent: bool
    uses: list[str] | None = None
    output_schema: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None


class RunbookDescription(BaseModel):
    name: str
    pack: str | None
    version: str | None
    description: str | None = None
    target: str
    concurrency: dict[str, Any]
    inputs_schema: dict[str, Any]
    steps: list[StepDescription]


class PackRead(BaseModel):
    name: str
    version: str
    description: str | None = None
    source: str
    runbooks: list[RunbookDescription]


class PackLoadError(BaseModel):
    source: str
    error: str


class PackPage(Page[PackRead]):
    errors: list[PackLoadError] = Field(default_factory=list, description="Packs that failed.")


class RunbookPage(Page[RunbookDescription]):
    pass


class ExecutionPage(Page[ExecutionRead]):
    pass


class ApprovalPage(Page[ApprovalRead]):
    pass


class AgentPage(Page[AgentRead]):
    pass
