"""Stored events, versioned rules, what matched, what each action did, and incidents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from popcorn.db import MIGRATION_ONLY_INDEXES, Base, JSONType, UTCDateTime, utcnow


class EventRecord(Base):
    """One accepted event. (source, event_id) is unique: a re-delivery is a duplicate."""

    __tablename__ = "events_events"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_events_events_source_event_id"),
        Index("ix_events_events_status", "status", "id"),
        Index("ix_events_events_type_time", "type", "time"),
        # events_0002 adds a GIN index on labels for `label=key:value` searches, on
        # PostgreSQL only (SQLite searches labels with json_extract).
        {"info": {MIGRATION_ONLY_INDEXES: ("ix_events_events_labels",)}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(500))
    type: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(500), nullable=True, index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    datacontenttype: Mapped[str | None] = mapped_column(String(200), nullable=True)
    dataschema: Mapped[str | None] = mapped_column(String(500), nullable=True)
    origin: Mapped[str] = mapped_column(String(20), default="api")
    hops: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    match_count: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    received_by: Mapped[str] = mapped_column(String(200), default="")


class RuleRecord(Base):
    """A rule by name; its behaviour is the active version's YAML."""

    __tablename__ = "events_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    active_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleVersion(Base):
    """One text of a rule, kept forever so any version can be shown or re-activated."""

    __tablename__ = "events_rule_versions"
    __table_args__ = (UniqueConstraint("rule_id", "version", name="uq_events_rule_versions_rv"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("events_rules.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(64))
    file: Mapped[str] = mapped_column(String(1000), default="")
    mode: Mapped[str] = mapped_column(String(20), default="enforce")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")


class MatchRecord(Base):
    """A rule that matched an event, and whether it acted (monitor, throttle, dedupe)."""

    __tablename__ = "events_matches"
    __table_args__ = (
        UniqueConstraint("event_id", "rule_name", name="uq_events_matches_event_rule"),
        Index("ix_events_matches_rule", "rule_name", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events_events.id", ondelete="CASCADE"))
    rule_name: Mapped[str] = mapped_column(String(200))
    rule_version: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(20))
    acted: Mapped[bool] = mapped_column(default=False)
    suppressed: Mapped[str | None] = mapped_column(String(20), nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActionRun(Base):
    """One action of one match: its rendered parameters and what happened when it ran."""

    __tablename__ = "events_action_runs"
    __table_args__ = (
        Index("ix_events_action_runs_status", "status", "id"),
        Index("ix_events_action_runs_event", "event_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    match_id: Mapped[int] = mapped_column(ForeignKey("events_matches.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events_events.id", ondelete="CASCADE"))
    rule_name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20))
    params: Mapped[Any] = mapped_column(JSONType, nullable=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    response: Mapped[Any] = mapped_column(JSONType, nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    replays: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Incident(Base):
    """An incident opened, updated and resolved by rules, keyed by a templated key.

    `open_key` equals `key` while the incident is open and is NULL once resolved,
    so the unique constraint allows one open incident per key on every database.
    """

    __tablename__ = "events_incidents"
    __table_args__ = (Index("ix_events_incidents_key", "key", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(500))
    open_key: Mapped[str | None] = mapped_column(String(500), nullable=True, unique=True)
    title: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    severity: Mapped[str] = mapped_column(String(40), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    rule_name: Mapped[str] = mapped_column(String(200), default="")
    event_count: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IncidentEvent(Base):
    """An event attached to an incident, with what it did to it."""

    __tablename__ = "events_incident_events"

    incident_id: Mapped[int] = mapped_column(
        ForeignKey("events_incidents.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[int] = mapped_column(
        ForeignKey("events_events.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    change: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Secret(Base):
    """A webhook signing secret, sealed with a key derived from POPCORN_SECRET_KEY."""

    __tablename__ = "events_secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    sealed: Mapped[str] = mapped_column(Text)
    # URL prefixes or host names an admin allowed this secret to sign for (issue #12, item 5).
    allowed_targets: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Setting(Base):
    """Domain settings (retention) and the rules stamp that invalidates compiled rule sets."""

    __tablename__ = "events_settings"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONType, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
