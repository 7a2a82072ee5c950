"""Signal metadata and analyses; the samples themselves are Parquet objects (see store.py)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
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


class Series(Base):
    """One signal: a metric name and a label set, identified by their 64-bit fingerprint."""

    __tablename__ = "signals_series"
    __table_args__ = (Index("ix_signals_series_scope", "site", "device"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[int] = mapped_column(BigInteger, unique=True)
    metric: Mapped[str] = mapped_column(String(200), index=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    site: Mapped[str | None] = mapped_column(String(200), nullable=True)
    device: Mapped[str | None] = mapped_column(String(200), nullable=True)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    sample_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Analysis(Base):
    """An alert analysis: what was asked, how far it got, and the ranked answer."""

    __tablename__ = "signals_analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    alert_time: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    selector: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    scope: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    window_minutes: Mapped[int] = mapped_column(Integer)
    step_seconds: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    signal_count: Mapped[int] = mapped_column(Integer, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    partial: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AnalysisChunk(Base):
    """One slice of a large analysis, analysed by its own job; merged when all are done."""

    __tablename__ = "signals_analysis_chunks"
    __table_args__ = (UniqueConstraint("analysis_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(
        ForeignKey("signals_analyses.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)
    bounds: Mapped[list[int]] = mapped_column(JSONType, default=list)  # candidates [lo, hi)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Setting(Base):
    """Settings changed at run time (retention), in the database so every process agrees."""

    __tablename__ = "signals_settings"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SampleFile(Base):
    """One Parquet object of samples: readers see exactly the objects listed here, so a
    batch's files appear with its commit and an object of a rolled-back batch is never read."""

    __tablename__ = "signals_sample_files"
    __table_args__ = (Index("ix_signals_sample_files_day_seq", "day", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    seq: Mapped[int] = mapped_column(BigInteger)  # write order: later files win
    key: Mapped[str] = mapped_column(String(300), unique=True)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
