"""The jobs API's shapes: what a job and a schedule look like, what a submission may say."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from popcorn.schemas import ReadSchema, Schema

# Queues open to people's submissions and schedules ("alerts" is reserved).
_OPEN_QUEUE = "^(high|default|low)$"


class JobRead(ReadSchema):
    id: int
    task: str
    queue: str
    arguments: dict[str, Any]
    status: str
    attempts: int
    max_retries: int
    timeout: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    worker: str
    result: Any = None
    error: str
    progress: dict[str, Any]
    created_by: str
    schedule: str | None


class JobSubmit(Schema):
    task: str = Field(min_length=1, max_length=120)
    arguments: dict[str, Any] = Field(default_factory=dict)
    queue: str | None = Field(default=None, pattern=_OPEN_QUEUE)
    delay_seconds: float | None = Field(default=None, ge=0, le=86400 * 30)
    retries: int | None = Field(default=None, ge=0, le=20)
    timeout: int | None = Field(default=None, ge=1, le=86400)


class ScheduleCreate(Schema):
    name: str = Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9_.:-]+$")
    task: str = Field(min_length=1, max_length=120)
    arguments: dict[str, Any] = Field(default_factory=dict)
    queue: str = Field(default="default", pattern=_OPEN_QUEUE)
    cron: str | None = None
    interval_seconds: int | None = Field(default=None, ge=1, le=86400 * 366)
    enabled: bool = True


class ScheduleRead(ReadSchema):
    id: int
    name: str
    task: str
    arguments: dict[str, Any]
    queue: str
    cron: str | None
    interval_seconds: int | None
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None
    last_job_id: int | None
