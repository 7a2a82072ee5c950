"""API shapes for events, rules, matches, action runs, incidents, secrets and settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from popcorn.schemas import ReadSchema, Schema


class EventRead(ReadSchema):
    id: int = Field(description="Popcorn's id for the stored event.")
    event_id: str = Field(description="The sender's id (CloudEvents `id`).")
    source: str
    type: str
    subject: str | None
    time: datetime
    received_at: datetime
    labels: dict[str, str]
    data: dict[str, Any]
    datacontenttype: str | None
    dataschema: str | None
    origin: str
    hops: int
    status: str
    match_count: int
    processed_at: datetime | None
    error: str
    received_by: str


class ActionRunRead(ReadSchema):
    id: int
    match_id: int
    event_id: int
    rule_name: str
    position: int
    type: str
    params: Any = None
    status: str
    attempts: int
    error: str
    response: Any = None
    job_id: int | None
    replays: int
    created_at: datetime
    updated_at: datetime


class MatchRead(ReadSchema):
    id: int
    event_id: int
    rule_name: str
    rule_version: int
    mode: str
    acted: bool
    suppressed: str | None
    error: str
    created_at: datetime


class IncidentRead(ReadSchema):
    id: int
    key: str
    title: str
    status: str
    severity: str
    description: str
    labels: dict[str, Any]
    rule_name: str
    event_count: int
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


class RuleVersionRead(ReadSchema):
    version: int
    checksum: str
    file: str
    mode: str
    created_at: datetime
    created_by: str
    source: str


class RulesLoad(Schema):
    """Rules as YAML text (one rule, a list, or several documents)."""

    # Stripping would shift the line numbers that errors report.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    text: str = Field(min_length=1, max_length=4 * 1024 * 1024)
    file: str = Field(default="<api>", max_length=500, description="Name shown in errors.")
    prune: bool = Field(
        default=False, description="Deactivate active rules that this text does not define."
    )


class RuleActivate(Schema):
    version: int = Field(ge=1)


class RulesTest(Schema):
    """An event (CloudEvent, Alertmanager webhook or stored-event shape) to explain."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    event: dict[str, Any] | list[Any]
    rules: str | None = Field(
        default=None, description="YAML rules to test instead of the active ones."
    )


class SecretSet(Schema):
    value: str | None = Field(
        default=None,
        min_length=16,
        max_length=500,
        description="The signing secret; omit to have Popcorn generate one (shown once).",
    )


class SettingsUpdate(Schema):
    retention_days: int = Field(ge=1, le=3650)
