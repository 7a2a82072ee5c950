"""ML API shapes: flows, runs (with what Metaflow recorded), models and predictions."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from popcorn.schemas import ReadSchema, Schema

PARAM_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
# Decorators a run may be sent with (`--with`): where it runs and how it retries.
DECORATOR = re.compile(r"^(kubernetes|batch|retry|resources)(:[A-Za-z0-9_=,.-]{0,200})?$")


class FlowParameterRead(ReadSchema):
    name: str
    default: Any = None
    help: str = ""


class FlowRead(ReadSchema):
    name: str
    source: str
    path: str
    class_name: str
    description: str
    steps: list[str]
    parameters: list[FlowParameterRead]


class FlowList(ReadSchema):
    items: list[FlowRead]


class RunCreate(Schema):
    flow: str = Field(min_length=1, max_length=120)
    parameters: dict[str, str] = Field(default_factory=dict, max_length=50)
    decorators: list[str] = Field(default_factory=list, max_length=10)
    auto_promote: bool = True

    @field_validator("parameters")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not PARAM_NAME.fullmatch(key):
                raise ValueError(f"not a parameter name: {key[:70]!r}")
            if len(item) > 1000:
                raise ValueError(f"parameter {key} is longer than 1000 characters")
        return value

    @field_validator("decorators")
    @classmethod
    def _decorators(cls, value: list[str]) -> list[str]:
        for item in value:
            if not DECORATOR.fullmatch(item):
                raise ValueError(f"decorator not allowed: {item[:70]!r}")
        return value


class RunRead(ReadSchema):
    id: int
    flow: str
    status: str
    parameters: dict[str, Any]
    decorators: list[str]
    auto_promote: bool
    job_id: int | None
    metaflow_flow: str
    metaflow_run_id: str
    pathspec: str
    resume_of: int | None
    resumable: bool
    progress: dict[str, Any]
    failed_step: str
    error: str
    promoted_version: int | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunPage(ReadSchema):
    items: list[RunRead]
    count: int | None = None
    next: str | None = None


class RunDetail(RunRead):
    log_tail: str
    metaflow: dict[str, Any] | None = None


class ScheduleCreate(Schema):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    flow: str = Field(min_length=1, max_length=120)
    parameters: dict[str, str] = Field(default_factory=dict, max_length=50)
    cron: str | None = Field(default=None, max_length=120)
    interval_seconds: int | None = Field(default=None, ge=60)
    auto_promote: bool = True


class ScheduleRead(ReadSchema):
    name: str
    flow: str
    parameters: dict[str, Any]
    cron: str | None
    interval_seconds: int | None
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None


class ScheduleList(ReadSchema):
    items: list[ScheduleRead]


class VersionRead(ReadSchema):
    version: int
    run_id: int | None
    pathspec: str
    object_key: str
    sha256: str
    size: int
    model_class: str
    input_schema: dict[str, str]
    evaluation: dict[str, Any]
    created_by: str
    created_at: datetime
    promoted: bool = False


class ModelRead(ReadSchema):
    name: str
    flow: str
    promoted_version: int | None
    history: list[int]
    updated_at: datetime
    versions: list[VersionRead] = Field(default_factory=list)


class ModelList(ReadSchema):
    items: list[ModelRead]


class PromoteRequest(Schema):
    run: int = Field(ge=1)


class RollbackRequest(Schema):
    to: int | None = Field(default=None, ge=1)


class PredictRequest(Schema):
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


class PredictResponse(ReadSchema):
    model: str
    version: int
    predictions: list[Any]
