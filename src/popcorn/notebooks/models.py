"""Notebook tables: job definitions, their runs, and the archive of saved notebook versions
with the published area (a stable name pointing at one version)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from popcorn.db import Base, JSONType, UTCDateTime, utcnow

KINDS = ("notebook", "spark", "callable")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "canceled", "skipped")
ACTIVE = ("queued", "running")


class NotebookDefinition(Base):
    """A job definition: what to run (a notebook, a Spark notebook or script, a callable), with
    which defaults, where (kernel, Spark master) and when (cron in a time zone)."""

    __tablename__ = "notebooks_definitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(20), default="notebook")
    source_key: Mapped[str] = mapped_column(String(1024), default="")
    workspace_path: Mapped[str] = mapped_column(String(1024), default="")
    origin: Mapped[str] = mapped_column(String(1024), default="", index=True)
    callable: Mapped[str] = mapped_column(String(300), default="")
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    kernel: Mapped[str] = mapped_column(String(120), default="python3")
    cron: Mapped[str | None] = mapped_column(String(120), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    timeout: Mapped[int] = mapped_column(Integer, default=600)
    retries: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    exclusive: Mapped[bool] = mapped_column(default=False)
    spark_master: Mapped[str] = mapped_column(String(300), default="")
    # Spark configuration passed to spark-submit as --conf (yarn, k8s:// masters need it)
    spark_conf: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    # besides the output notebook, always stored: html, markdown, pdf
    output_formats: Mapped[list[str]] = mapped_column(JSONType, default=list)
    after_id: Mapped[int | None] = mapped_column(
        ForeignKey("notebooks_definitions.id", ondelete="SET NULL"), nullable=True, index=True
    )
    enabled: Mapped[bool] = mapped_column(default=True)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotebookRun(Base):
    """One run of a definition. `tick_key` is unique: a schedule tick makes at most one run."""

    __tablename__ = "notebooks_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(
        ForeignKey("notebooks_definitions.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    trigger: Mapped[str] = mapped_column(String(20), default="manual")
    tick: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    tick_key: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    parent_run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retryable: Mapped[bool] = mapped_column(default=False)
    output_key: Mapped[str] = mapped_column(String(1024), default="")
    log_key: Mapped[str] = mapped_column(String(1024), default="")
    format_keys: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    format_errors: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    kernel_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    failed_cell: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    traceback: Mapped[str] = mapped_column(Text, default="")
    outputs: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class NotebookVersion(Base):
    """A saved snapshot of a notebook at a path (the Jupyter extension archives every save)."""

    __tablename__ = "notebooks_versions"
    __table_args__ = (UniqueConstraint("path", "version", name="uq_notebooks_versions_path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), index=True)
    version: Mapped[int] = mapped_column(Integer)
    object_key: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotebookPublication(Base):
    """The published area: a stable name pointing at one archived version, read-only."""

    __tablename__ = "notebooks_publications"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("notebooks_versions.id"))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
