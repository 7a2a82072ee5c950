"""Triage API schemas: what a collection is asked for, and what it and its analysis return."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, model_validator

from popcorn.schemas import Page, ReadSchema, Schema
from popcorn.triage.tables import TABLE_NAMES, TableName

SIMILARITY = (
    "Hosts are clustered when their row sets are on average this Jaccard-similar; each is "
    "ranked against its cluster (0: one cluster, the whole group)"
)


class CollectionScope(Schema):
    """The hosts to collect from, resolved through inventory (every given field must match).

    `role` is one of inventory's device roles (`server`, `storage-appliance`...); a group
    such as "the web servers" is a role plus inventory tags (`tags: ["web"]`), a model
    (device model slug), a site or region, or a list of devices.
    """

    role: str | None = Field(default=None, max_length=100)
    site: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    model: str | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, min_length=1, max_length=20)
    status: str | None = Field(default=None, max_length=40)
    devices: list[str] | None = Field(default=None, min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _something(self) -> CollectionScope:
        if not (self.role or self.site or self.region or self.model or self.tags or self.devices):
            raise ValueError("name a role, a site, a region, a model, tags or a list of devices")
        return self


class CollectionCreate(Schema):
    scope: CollectionScope
    name: str = Field(default="", max_length=200)
    tables: list[TableName] | None = Field(default=None, min_length=1, max_length=len(TABLE_NAMES))
    concurrency: int = Field(default=16, ge=1, le=256)
    timeout: float = Field(default=120.0, gt=0, le=3600)
    recent_days: float = Field(default=7.0, gt=0, le=365)
    rare_fraction: float = Field(default=0.1, gt=0, le=0.5)
    similarity: float = Field(default=0.7, ge=0, le=1, description=SIMILARITY)


RerunStatus = Literal["missing", "error", "oversized"]


def _missing_only() -> list[RerunStatus]:
    return ["missing"]


class RerunRequest(Schema):
    statuses: list[RerunStatus] = Field(default_factory=_missing_only, min_length=1)


class AnalyseRequest(Schema):
    rare_fraction: float = Field(default=0.1, gt=0, le=0.5)
    similarity: float = Field(default=0.7, ge=0, le=1, description=SIMILARITY)


class CollectionRead(ReadSchema):
    id: int
    name: str
    scope: dict[str, Any]
    tables: list[str]
    options: dict[str, Any]
    concurrency: int
    status: str
    error: str
    summary: dict[str, Any]
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class CollectionPage(Page[CollectionRead]):
    pass


class HostRead(ReadSchema):
    id: int
    collection_id: int
    device: str
    role: str | None
    site: str | None
    agent_url: str | None
    status: str
    reason: str
    source: str
    row_count: int
    size_bytes: int
    duration_s: float
    collected_at: datetime | None
    score: float
    rank: int | None
    cluster: int | None = None


class HostPage(Page[HostRead]):
    pass


class EvidenceRead(ReadSchema):
    table: str
    kind: str  # "extra": a rare row the host has; "missing": a common row it lacks
    row: dict[str, Any]
    hosts_with: int  # how many hosts of the group have the row
    peers: int  # hosts of the group that returned the table
    score: float


class OutlierRead(ReadSchema):
    rank: int | None
    device: str
    status: str
    score: float
    cluster: int | None = None
    extra: int = 0
    missing: int = 0
    evidence: list[EvidenceRead]


class OutlierPage(Page[OutlierRead]):
    pass


class FindingRead(ReadSchema):
    id: int
    collection_id: int
    rank: int
    kind: str
    score: float
    hosts: list[str]
    peers: int
    tables: list[str]
    rows: list[dict[str, Any]]


class FindingPage(Page[FindingRead]):
    pass


class RowChange(ReadSchema):
    table: str
    change: Literal["added", "removed", "extra", "missing"]
    row: dict[str, Any]
    hosts_with: int | None = None
    peers: int | None = None


class DiffRead(ReadSchema):
    device: str
    before: int | None = None  # collection ids (host diff)
    after: int | None = None
    collection: int | None = None  # collection id (host vs group)
    changes: list[RowChange]
    counts: dict[str, int]
