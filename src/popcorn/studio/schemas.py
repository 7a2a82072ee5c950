"""API shapes of the studio domain: shotgun_api3's call arguments as JSON bodies."""

from __future__ import annotations

from typing import Any

from apiflask.fields import UploadFile
from pydantic import BaseModel, Field

from popcorn.schemas import Schema

ENTITY_HELP = (
    "An entity type: Project, Episode, Sequence, Shot, Asset, Step, Task, Version, HumanUser, "
    "PublishedFile, Playlist, Note, Attachment"
)


class FindIn(Schema):
    entity_type: str = Field(description=ENTITY_HELP)
    filters: list[Any] = Field(
        default_factory=list,
        description='[["sg_status_list", "is", "ip"], ["entity.Shot.code", "starts_with", '
        '"SEQ010"]] or groups {"filter_operator": "any", "filters": [...]}',
    )
    fields: list[str] | None = Field(default=None, description="Fields and linked paths to return")
    order: list[dict[str, Any]] | None = Field(
        default=None,
        description='[{"field_name": "entity.Shot.code", "direction": "asc"}] (fields and '
        "linked paths)",
    )
    filter_operator: str | None = Field(default=None, description="all (default) or any")
    limit: int | None = Field(default=None, ge=1, description="Page size (see /limits)")
    page: int | None = Field(default=None, ge=1, description="1-based page of `limit` rows")
    cursor: str | None = Field(default=None, description="The `next` of the previous page")
    retired_only: bool = False
    include_archived_projects: bool = True
    additional_filter_presets: list[dict[str, Any]] | None = Field(
        default=None,
        description='ShotGrid\'s presets: [{"preset_name": "LATEST", "latest_by": '
        '"ENTITIES_CREATED_AT" or "BY_PIPELINE_STEP_NUMBER_AND_ENTITIES_CREATED_AT"}] '
        "(Version, PublishedFile)",
    )


class UploadForm(BaseModel):
    """The multipart form of an upload (shotgun_api3's `upload` arguments)."""

    entity_type: str = Field(description=ENTITY_HELP)
    entity_id: int = Field(gt=0, lt=2**63)
    file: UploadFile = Field(description="The file's bytes (refused over max_upload_bytes)")
    field_name: str | None = Field(default=None, description="A field to point at the file")
    display_name: str | None = None
    tag_list: str | None = Field(default=None, description="Comma-separated tags")


class EntityPage(BaseModel):
    items: list[dict[str, Any]]
    next: str | None = Field(default=None, description="Cursor of the next page, if any")


class CreateIn(Schema):
    entity_type: str = Field(description=ENTITY_HELP)
    data: dict[str, Any]
    return_fields: list[str] | None = None


class UpdateIn(Schema):
    entity_type: str = Field(description=ENTITY_HELP)
    entity_id: int
    data: dict[str, Any]
    multi_entity_update_modes: dict[str, str] | None = Field(
        default=None, description='{"versions": "add"} (set, add or remove)'
    )


class EntityRefIn(Schema):
    entity_type: str = Field(description=ENTITY_HELP)
    entity_id: int


class EntityOut(BaseModel):
    model_config = {"extra": "allow"}
    type: str
    id: int


class Done(BaseModel):
    result: bool


class BatchIn(Schema):
    requests: list[dict[str, Any]] = Field(
        description='[{"request_type": "create", "entity_type": "Shot", "data": {...}}, '
        '{"request_type": "update", "entity_type": "Shot", "entity_id": 3, "data": {...}}, '
        '{"request_type": "delete", "entity_type": "Shot", "entity_id": 3}]'
    )


class BatchOut(BaseModel):
    results: list[Any]


class SummarizeIn(Schema):
    entity_type: str = Field(description=ENTITY_HELP)
    filters: list[Any] = Field(default_factory=list)
    summary_fields: list[dict[str, Any]] = Field(
        description='[{"field": "id", "type": "count"}, '
        '{"field": "sg_cut_duration", "type": "sum"}]'
    )
    filter_operator: str | None = None
    grouping: list[dict[str, Any]] | None = Field(
        default=None,
        description='[{"field": "sg_status_list", "type": "exact", "direction": "asc"}]',
    )
    include_archived_projects: bool = True


class SummaryOut(BaseModel):
    summaries: dict[str, Any]
    groups: list[dict[str, Any]]


class UploadOut(BaseModel):
    id: int
    type: str = "Attachment"


class LimitsOut(BaseModel):
    max_page_size: int
    default_page_size: int
    max_batch: int
    max_upload_bytes: int
    rate_per_s: float = Field(description="Requests per second per token (0: no limit)")
    rate_burst: int = Field(description="Requests a token may make at once")


class WorkflowIn(Schema):
    statuses: list[str] = Field(min_length=1)
    default: str
    transitions: dict[str, list[str]] = Field(
        default_factory=dict, description='{"wtg": ["rdy", "ip"]}: statuses not named move freely'
    )


class WorkflowOut(BaseModel):
    entity_type: str
    statuses: list[str]
    default: str
    transitions: dict[str, list[str]]


class WorkflowList(BaseModel):
    items: list[WorkflowOut]


class SchemaOut(BaseModel):
    entities: dict[str, Any]
