"""Studio tables: the production-tracking entities of a show, one table per entity type.

Columns keep ShotGrid's meaning (cut in/out, handles, frame ranges, versions and
publishes) so the generic entity API can map `sg_*` field names onto them one to one.
Links to "an entity of several possible types" (a task's shot or asset) are a
(type, id) pair, and many-to-many links (casting, playlist versions, task and
publish dependencies, note links) share `studio_links`, which the filter compiler
queries with indexed EXISTS subqueries.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from popcorn.db import Base, JSONType, UTCDateTime, utcnow


class Tracked:
    """Columns every studio entity has: who made it, when, and its soft-delete mark."""

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StudioUser(Tracked, Base):
    """A person (ShotGrid's HumanUser): assigned to tasks, addressed by notes."""

    __tablename__ = "studio_users"

    login: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(10), default="act")


class StudioProject(Tracked, Base):
    __tablename__ = "studio_projects"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    tank_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(40), default="active")
    archived: Mapped[bool] = mapped_column(Boolean, default=False)


class StudioEpisode(Tracked, Base):
    __tablename__ = "studio_episodes"
    __table_args__ = (Index("ix_studio_episodes_project_code", "project_id", "code"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"))
    code: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(40), default="wtg")


class StudioSequence(Tracked, Base):
    __tablename__ = "studio_sequences"
    __table_args__ = (Index("ix_studio_sequences_project_code", "project_id", "code"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"))
    episode_id: Mapped[int | None] = mapped_column(
        ForeignKey("studio_episodes.id"), nullable=True, index=True
    )
    code: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(40), default="wtg")


class StudioShot(Tracked, Base):
    __tablename__ = "studio_shots"
    __table_args__ = (
        Index("ix_studio_shots_project_status", "project_id", "status"),
        Index("ix_studio_shots_sequence", "sequence_id"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"))
    sequence_id: Mapped[int | None] = mapped_column(
        ForeignKey("studio_sequences.id"), nullable=True
    )
    code: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(40), default="wtg")
    cut_in: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cut_out: Mapped[int | None] = mapped_column(Integer, nullable=True)
    head_in: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tail_out: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cut_duration: Mapped[int | None] = mapped_column(Integer, nullable=True)


class StudioAsset(Tracked, Base):
    __tablename__ = "studio_assets"
    __table_args__ = (Index("ix_studio_assets_project_type", "project_id", "asset_type"),)

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"))
    code: Mapped[str] = mapped_column(String(200), index=True)
    asset_type: Mapped[str] = mapped_column(String(60), default="Prop")
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(40), default="wtg")


class StudioStep(Tracked, Base):
    """A pipeline step (Layout, Animation, Lighting, Comp...) for shots or for assets."""

    __tablename__ = "studio_steps"

    code: Mapped[str] = mapped_column(String(100), index=True)
    short_name: Mapped[str] = mapped_column(String(40), default="")
    entity_type: Mapped[str] = mapped_column(String(40), default="Shot")
    list_order: Mapped[int] = mapped_column(Integer, default=0)
    color: Mapped[str] = mapped_column(String(20), default="")


class StudioTask(Tracked, Base):
    __tablename__ = "studio_tasks"
    __table_args__ = (
        Index("ix_studio_tasks_entity", "entity_type", "entity_id"),
        Index("ix_studio_tasks_project_step_status", "project_id", "step_id", "status"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"))
    content: Mapped[str] = mapped_column(String(200))
    step_id: Mapped[int | None] = mapped_column(ForeignKey("studio_steps.id"), nullable=True)
    entity_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    entity_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(40), default="wtg")
    start_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    est_in_mins: Mapped[int | None] = mapped_column(Integer, nullable=True)
    time_logs_sum: Mapped[int] = mapped_column(Integer, default=0)


class StudioVersion(Tracked, Base):
    __tablename__ = "studio_versions"
    __table_args__ = (
        Index("ix_studio_versions_entity", "entity_type", "entity_id"),
        Index("ix_studio_versions_project_status", "project_id", "status"),
        Index("ix_studio_versions_task", "task_id"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"))
    code: Mapped[str] = mapped_column(String(200), index=True)
    entity_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    entity_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("studio_tasks.id"), nullable=True)
    first_frame: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_frame: Mapped[int | None] = mapped_column(Integer, nullable=True)
    frame_range: Mapped[str | None] = mapped_column(String(40), nullable=True)
    path_to_movie: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    path_to_frames: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    image: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    user: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(40), default="rev")
    description: Mapped[str] = mapped_column(Text, default="")


class StudioPublishedFile(Tracked, Base):
    __tablename__ = "studio_published_files"
    __table_args__ = (
        Index("ix_studio_published_entity", "entity_type", "entity_id"),
        Index("ix_studio_published_code_version", "project_id", "code", "version_number"),
    )

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"))
    code: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    path: Mapped[str] = mapped_column(String(1000))
    published_file_type: Mapped[str] = mapped_column(String(60), default="")
    version_number: Mapped[int] = mapped_column(Integer, default=1)
    entity_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    entity_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("studio_tasks.id"), nullable=True)
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("studio_versions.id"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(40), default="cmpt")
    description: Mapped[str] = mapped_column(Text, default="")


class StudioPlaylist(Tracked, Base):
    __tablename__ = "studio_playlists"

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"), index=True)
    code: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    locked: Mapped[bool] = mapped_column(Boolean, default=False)


class StudioNote(Tracked, Base):
    """A review note; replies point at the note they answer, which makes the thread."""

    __tablename__ = "studio_notes"

    project_id: Mapped[int] = mapped_column(ForeignKey("studio_projects.id"), index=True)
    subject: Mapped[str] = mapped_column(String(300), default="")
    content: Mapped[str] = mapped_column(Text, default="")
    user: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("studio_notes.id"), nullable=True, index=True
    )
    status: Mapped[str] = mapped_column(String(40), default="opn")


class StudioAttachment(Tracked, Base):
    """A stored file (under the installation's home) attached to an entity or one of its fields."""

    __tablename__ = "studio_attachments"
    __table_args__ = (Index("ix_studio_attachments_entity", "entity_type", "entity_id"),)

    entity_type: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[int] = mapped_column(BigInteger)
    field_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    filename: Mapped[str] = mapped_column(String(300))
    display_name: Mapped[str] = mapped_column(String(300), default="")
    content_type: Mapped[str] = mapped_column(String(200), default="application/octet-stream")
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    tag_list: Mapped[list[str]] = mapped_column(JSONType, default=list)


class StudioLink(Base):
    """One many-to-many link: `kind` names the relation (casting, playlist_version...)."""

    __tablename__ = "studio_links"
    __table_args__ = (
        Index("ix_studio_links_source", "kind", "source_id", "position"),
        Index("ix_studio_links_target", "kind", "target_type", "target_id"),
        UniqueConstraint("kind", "source_id", "target_type", "target_id", name="uq_studio_links"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[int] = mapped_column(BigInteger)
    target_type: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[int] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(Integer, default=0)


class StudioWorkflow(Base):
    """The statuses an entity type may take and, optionally, which moves are allowed."""

    __tablename__ = "studio_workflows"

    id: Mapped[int] = mapped_column(primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(40), unique=True)
    statuses: Mapped[list[str]] = mapped_column(JSONType, default=list)
    default: Mapped[str] = mapped_column(String(40))
    transitions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
