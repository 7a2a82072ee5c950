"""ML tables: the runs Popcorn started (a Metaflow run's platform side: job, progress, log,
failure, cancel) and the model registry (models, their versions, which one is promoted).

What a run computed (steps, artifacts, cards) stays in Metaflow's datastore and is read
through Metaflow's client API; only what Popcorn itself decides lives here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from popcorn.db import Base, JSONType, UTCDateTime, utcnow

RUN_STATUSES = ("queued", "running", "succeeded", "failed")


class MlRun(Base):
    """One run of a flow started by Popcorn (by a person, a schedule or a resume)."""

    __tablename__ = "ml_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    flow: Mapped[str] = mapped_column(String(120), index=True)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    decorators: Mapped[list[str]] = mapped_column(JSONType, default=list)
    auto_promote: Mapped[bool] = mapped_column(default=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metaflow_flow: Mapped[str] = mapped_column(String(200), default="")
    metaflow_run_id: Mapped[str] = mapped_column(String(64), default="")
    resume_of: Mapped[int | None] = mapped_column(
        ForeignKey("ml_runs.id", ondelete="SET NULL"), nullable=True
    )
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    progress: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    failed_step: Mapped[str] = mapped_column(String(200), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    log_tail: Mapped[str] = mapped_column(Text, default="")
    log_key: Mapped[str] = mapped_column(String(300), default="")
    promoted_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MlModel(Base):
    """A served model (named after its flow) and the version it serves now."""

    __tablename__ = "ml_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    flow: Mapped[str] = mapped_column(String(120))
    promoted_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Versions promoted, oldest first: a rollback goes back one step along it.
    history: Mapped[list[int]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    versions: Mapped[list[MlModelVersion]] = relationship(
        back_populates="model", cascade="all, delete-orphan", order_by="MlModelVersion.version"
    )


class MlModelVersion(Base):
    """A run's model, copied into the object store with the digest it was stored under."""

    __tablename__ = "ml_model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("ml_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("ml_runs.id", ondelete="SET NULL"), nullable=True
    )
    pathspec: Mapped[str] = mapped_column(String(300), default="")
    object_key: Mapped[str] = mapped_column(String(400))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    model_class: Mapped[str] = mapped_column(String(300), default="")
    input_schema: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    model: Mapped[MlModel] = relationship(back_populates="versions")
