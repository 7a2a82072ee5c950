"""Triage tables: collections over a group of hosts, each host's outcome, the tables it
returned, and the findings of the group's baseline.

A host's tables are stored compactly: per (host, table) one record with the raw rows and,
aligned with them, the 64-bit key of each normalised row, which is all a baseline needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from popcorn.db import Base, JSONType, UTCDateTime, utcnow

COLLECTION_STATUSES = ("pending", "running", "done", "failed")
HOST_STATUSES = ("pending", "ok", "missing", "error", "oversized")


class TriageCollection(Base):
    """One collection: which hosts (a scope resolved through inventory), which tables, how
    far it got, and a summary of its baseline once analysed."""

    __tablename__ = "triage_collections"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    scope: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    tables: Mapped[list[str]] = mapped_column(JSONType, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    concurrency: Mapped[int] = mapped_column(Integer, default=16)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    error: Mapped[str] = mapped_column(Text, default="")
    rerun_of: Mapped[int | None] = mapped_column(
        ForeignKey("triage_collections.id", ondelete="SET NULL"), nullable=True
    )
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    hosts: Mapped[list[TriageHost]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", order_by="TriageHost.device"
    )


class TriageHost(Base):
    """One host of a collection: ok, missing (down), error (with the reason) or oversized;
    after analysis, its outlier score and rank with the evidence behind them."""

    __tablename__ = "triage_hosts"
    __table_args__ = (UniqueConstraint("collection_id", "device"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("triage_collections.id", ondelete="CASCADE"), index=True
    )
    device: Mapped[str] = mapped_column(String(200))
    device_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    role: Mapped[str | None] = mapped_column(String(100), nullable=True)
    site: Mapped[str | None] = mapped_column(String(100), nullable=True)
    agent_url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(40), default="")
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cluster: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 0 = the largest
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)

    collection: Mapped[TriageCollection] = relationship(back_populates="hosts")


class TriageHostTable(Base):
    """The rows one host returned for one table, with each row's normalised key."""

    __tablename__ = "triage_host_tables"
    __table_args__ = (UniqueConstraint("host_id", "table"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("triage_hosts.id", ondelete="CASCADE"))
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("triage_collections.id", ondelete="CASCADE"), index=True
    )
    table: Mapped[str] = mapped_column(String(40))
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    truncated: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    keys: Mapped[list[int]] = mapped_column(JSONType, default=list)
    rows: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)


class TriageFinding(Base):
    """Rare rows shared by the same set of hosts (or missing from the same set): one finding,
    so a compromise spreading over several hosts reads as one."""

    __tablename__ = "triage_findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("triage_collections.id", ondelete="CASCADE"), index=True
    )
    rank: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # "extra" (rare row) or "missing"
    score: Mapped[float] = mapped_column(Float)
    hosts: Mapped[list[str]] = mapped_column(JSONType, default=list)
    peers: Mapped[int] = mapped_column(Integer)  # hosts in the baseline
    tables: Mapped[list[str]] = mapped_column(JSONType, default=list)
    rows: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
