"""API shapes for events, rules, matches, action runs, incidents, secrets and settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from popcorn.schemas import Page, ReadSchema, Schema


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
    allowed_targets: list[str] = Field(
        min_length=1,
        max_length=50,
        description="Where this secret may sign: URL prefixes "
        "(`https://hooks.example.net/popcorn/`) or bare host names (`hooks.example.net`). "
        "A webhook whose URL matches none of them is not signed with it.",
    )


class SettingsUpdate(Schema):
    retention_days: int = Field(ge=1, le=3650)


# --- answers ----------------------------------------------------------------------------


class EventPage(Page[EventRead]):
    """A page of stored events."""


class MatchPage(Page[MatchRead]):
    """A page of rule matches."""


class ActionRunPage(Page[ActionRunRead]):
    """A page of action runs (webhook replies and headers only for operators and above)."""


class IncidentPage(Page[IncidentRead]):
    """A page of incidents."""


class IngestItem(BaseModel):
    id: int | None
    event_id: str
    source: str
    type: str
    status: str = Field(description="`accepted` or `duplicate`.")


class IngestAnswer(BaseModel):
    accepted: int
    duplicates: int
    events: list[IngestItem]


class MatchDetail(MatchRead):
    actions: list[ActionRunRead]


class IncidentLink(BaseModel):
    id: int
    key: str
    status: str
    change: str


class EventDetail(EventRead):
    matches: list[MatchDetail]
    incidents: list[IncidentLink]


class IncidentEventLink(BaseModel):
    id: int
    event_id: str
    type: str
    change: str
    at: datetime


class IncidentDetail(IncidentRead):
    events: list[IncidentEventLink]


class RuleSummary(BaseModel):
    name: str
    active_version: int | None
    latest_version: int
    updated_at: datetime | None = None
    error: str = ""
    events: list[str] | None = None
    mode: str | None = None
    priority: int | None = None
    stop: bool | None = None
    description: str | None = None
    actions: list[str] | None = None
    throttle: float | None = None
    dedupe: float | None = None


class RulePage(Page[RuleSummary]):
    """Every rule (one page)."""


class RuleVersionSummary(BaseModel):
    version: int
    checksum: str
    file: str
    mode: str
    created_at: datetime
    created_by: str
    active: bool


class RuleDetail(RuleSummary):
    created_at: datetime
    source: str
    file: str
    versions: list[RuleVersionSummary]


class RuleChange(BaseModel):
    name: str
    version: int | None
    change: str = Field(description="created, updated, unchanged, deactivated or activated.")


class RulesLoaded(BaseModel):
    rules: list[RuleChange]
    created: int
    updated: int
    unchanged: int
    deactivated: int


class RuleVerdict(BaseModel):
    rule: str
    matched: bool
    mode: str
    reason: str
    lines: list[str]
    actions: list[dict[str, Any]] | None = None


class ExplainedEvent(BaseModel):
    event: dict[str, Any]
    rules: list[RuleVerdict]


class RulesTestAnswer(BaseModel):
    results: list[ExplainedEvent]


class SecretRead(BaseModel):
    name: str
    allowed_targets: list[str]
    created_at: datetime
    updated_at: datetime


class SecretPage(Page[SecretRead]):
    """Signing secrets (names and where they may sign, never values)."""


class SecretCreated(BaseModel):
    name: str
    secret: str = Field(description="The secret itself: shown in this answer only.")
    allowed_targets: list[str]


class Deleted(BaseModel):
    name: str
    deleted: bool


class SettingsRead(BaseModel):
    retention_days: int
    max_hops: int
