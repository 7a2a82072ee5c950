"""Notebook API schemas: definitions, runs, archived versions and publications."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from popcorn.schemas import Page, ReadSchema, Schema

Kind = Literal["notebook", "spark", "callable"]
Format = Literal["html", "markdown", "pdf"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$"


class DefinitionCreate(Schema):
    """A job definition. The notebook comes as nbformat JSON (`notebook`), or as a path in the
    workspace (`workspace_path`); a Spark job may instead be a pyspark `script`; a `callable`
    job names a function of an installed plugin (`module:function` or `module.function`)."""

    name: str = Field(pattern=NAME_PATTERN)
    kind: Kind = "notebook"
    notebook: dict[str, Any] | None = None
    workspace_path: str = ""
    script: str | None = Field(default=None, max_length=200_000)
    callable: str = Field(default="", max_length=300)
    origin: str = Field(default="", max_length=1024)
    parameters: dict[str, Any] = Field(default_factory=dict)
    kernel: str = Field(default="python3", max_length=120)
    cron: str | None = Field(default=None, max_length=120)
    timezone: str = Field(default="UTC", max_length=64)
    timeout: int = Field(default=600, ge=1, le=24 * 3600)
    retries: int = Field(default=0, ge=0, le=5)
    tags: list[str] = Field(default_factory=list, max_length=20)
    exclusive: bool = False
    spark_master: str = Field(
        default="", max_length=300, description="local[N], spark://host:port, yarn, k8s://..."
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict, max_length=100, description="--conf pairs for spark-submit"
    )
    output_formats: list[Format] = Field(
        default_factory=list, description="Besides the output notebook (always stored)."
    )
    after: str | None = Field(default=None, description="Run after this definition succeeds.")
    enabled: bool = True


class DefinitionUpdate(Schema):
    parameters: dict[str, Any] | None = None
    cron: str | None = None
    timezone: str | None = None
    timeout: int | None = Field(default=None, ge=1, le=24 * 3600)
    retries: int | None = Field(default=None, ge=0, le=5)
    tags: list[str] | None = Field(default=None, max_length=20)
    exclusive: bool | None = None
    enabled: bool | None = None
    spark_master: str | None = Field(default=None, max_length=300)
    spark_conf: dict[str, str] | None = Field(default=None, max_length=100)
    output_formats: list[Format] | None = None


class DefinitionRead(ReadSchema):
    id: int
    name: str
    kind: str
    source_key: str
    workspace_path: str
    origin: str
    callable: str
    parameters: dict[str, Any]
    kernel: str
    cron: str | None
    timezone: str
    timeout: int
    retries: int
    tags: list[str]
    exclusive: bool
    spark_master: str
    spark_conf: dict[str, str]
    output_formats: list[str]
    after_id: int | None
    enabled: bool
    next_run_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class RunCreate(Schema):
    """Start a run now; `parameters` override the definition's defaults."""

    parameters: dict[str, Any] = Field(default_factory=dict)


class RunRead(ReadSchema):
    id: int
    definition_id: int
    status: str
    trigger: str
    tick: datetime | None
    parameters: dict[str, Any]
    parent_run_id: int | None
    job_id: int | None
    attempts: int
    retryable: bool
    output_key: str
    log_key: str
    format_keys: dict[str, str]
    format_errors: dict[str, str]
    failed_cell: int | None
    error: str
    traceback: str
    outputs: dict[str, Any]
    duration_s: float | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class VersionCreate(Schema):
    """A snapshot of the notebook saved at `path` (nbformat JSON)."""

    path: str = Field(min_length=1, max_length=1024)
    notebook: dict[str, Any]


class VersionRead(ReadSchema):
    id: int
    path: str
    version: int
    object_key: str
    sha256: str
    size: int
    created_by: str
    created_at: datetime


class PublishCreate(Schema):
    path: str = Field(min_length=1, max_length=1024)
    version: int | None = Field(default=None, description="The latest when not given.")
    slug: str | None = Field(default=None, pattern=NAME_PATTERN)


class PublicationRead(ReadSchema):
    id: int
    slug: str
    version_id: int
    path: str
    version: int
    link: str
    created_by: str
    updated_at: datetime


DefinitionPage = Page[DefinitionRead]
RunPage = Page[RunRead]
VersionPage = Page[VersionRead]
PublicationPage = Page[PublicationRead]
