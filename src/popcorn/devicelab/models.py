"""Device lab tables: devices and their agents, the test catalog and suites, builds, runs,
each test execution on a device, and the pipeline hooks that start runs.

A retry or a reschedule is a new execution row (attempt + 1), never an overwrite, so the
history that flaky detection and the failure model read keeps every outcome.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, validates

from popcorn.db import Base, JSONType, UTCDateTime, utcnow

DEVICE_HEALTH = ("healthy", "degraded", "failed")
AGENT_STATES = ("unregistered", "online", "offline")
RUN_STATUSES = ("queued", "running", "passed", "failed", "error", "cancelled")
EXEC_STATUSES = (
    "queued",
    "assigned",
    "running",
    "passed",
    "failed",
    "error",
    "timeout",
    "lost",
    "cancelled",
)
EXEC_FINAL = ("passed", "failed", "error", "timeout", "lost", "cancelled")


class LabDevice(Base):
    """A device under test, what it can do, where it is, who holds it, and its agent."""

    __tablename__ = "devicelab_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    platform: Mapped[str] = mapped_column(String(40), index=True)
    model: Mapped[str] = mapped_column(String(200), default="")
    family: Mapped[str] = mapped_column(String(200), default="")
    os_version: Mapped[str] = mapped_column(String(100), default="")
    firmware: Mapped[str] = mapped_column(String(100), default="")
    resolution: Mapped[str] = mapped_column(String(20), default="1080p")
    hdr: Mapped[list[str]] = mapped_column(JSONType, default=list)
    drm_level: Mapped[str] = mapped_column(String(40), default="")
    sdk_version: Mapped[str] = mapped_column(String(40), default="")
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    pool: Mapped[str] = mapped_column(String(100), default="default", index=True)
    site: Mapped[str] = mapped_column(String(100), default="")
    rack: Mapped[str] = mapped_column(String(100), default="")
    slots: Mapped[int] = mapped_column(Integer, default=1)
    health: Mapped[str] = mapped_column(String(20), default="healthy")
    agent_state: Mapped[str] = mapped_column(String(20), default="unregistered", index=True)
    agent_key: Mapped[str] = mapped_column(Text, default="")  # sealed per-registration key
    agent_version: Mapped[str] = mapped_column(String(40), default="")
    last_heartbeat: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reserved_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reserved_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reservation_note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LabTest(Base):
    """A test in the catalog. `behaviour` drives the simulated device agents (its planted
    failure causes); a real runner ignores it."""

    __tablename__ = "devicelab_tests"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    suite: Mapped[str] = mapped_column(String(200), default="", index=True)
    components: Mapped[list[str]] = mapped_column(JSONType, default=list)
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    requires: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    expected_duration_s: Mapped[float] = mapped_column(Float, default=60.0)
    timeout_s: Mapped[float] = mapped_column(Float, default=600.0)
    owners: Mapped[list[str]] = mapped_column(JSONType, default=list)
    behaviour: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LabSuite(Base):
    """A named selection of the catalog: a query in the test query language."""

    __tablename__ = "devicelab_suites"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    query: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LabBuild(Base):
    """An app version and the change it carries (the components it touches)."""

    __tablename__ = "devicelab_builds"

    id: Mapped[int] = mapped_column(primary_key=True)
    app_version: Mapped[str] = mapped_column(String(100))
    change: Mapped[str] = mapped_column(String(200), default="")
    branch: Mapped[str] = mapped_column(String(200), default="main")
    components: Mapped[list[str]] = mapped_column(JSONType, default=list)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LabRun(Base):
    """A suite of a build on a set of devices, with its selection and its outcome."""

    __tablename__ = "devicelab_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    build_id: Mapped[int] = mapped_column(
        ForeignKey("devicelab_builds.id", ondelete="CASCADE"), index=True
    )
    suite: Mapped[str] = mapped_column(String(200), default="")
    query: Mapped[str] = mapped_column(Text, default="")
    devices: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    retries: Mapped[int] = mapped_column(Integer, default=1)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    selection: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    hook_id: Mapped[int | None] = mapped_column(
        ForeignKey("devicelab_hooks.id", ondelete="SET NULL"), nullable=True
    )
    callback_url: Mapped[str] = mapped_column(String(1000), default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LabExecution(Base):
    """One attempt of one test of a run on one device.

    `candidate_count` and `expected_duration_s` copy what placement ranks a queued test by
    (how many devices can run it, how long it takes), so a beat reads a family's queue in
    placement order from one index, a few rows at a time, however deep the queue is."""

    __tablename__ = "devicelab_executions"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("devicelab_runs.id", ondelete="CASCADE"), index=True
    )
    build_id: Mapped[int] = mapped_column(Integer, index=True)
    test_id: Mapped[int] = mapped_column(
        ForeignKey("devicelab_tests.id", ondelete="CASCADE"), index=True
    )
    test_name: Mapped[str] = mapped_column(String(300))
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devicelab_devices.id", ondelete="SET NULL"), nullable=True, index=True
    )
    device_name: Mapped[str] = mapped_column(String(200), default="")
    family: Mapped[str] = mapped_column(String(200), default="")
    candidates: Mapped[list[int]] = mapped_column(JSONType, default=list)
    candidate_count: Mapped[int] = mapped_column(Integer, default=0)
    expected_duration_s: Mapped[float] = mapped_column(Float, default=60.0)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str] = mapped_column(String(40), default="")  # first, retry, rescheduled
    message: Mapped[str] = mapped_column(Text, default="")
    failure_kind: Mapped[str] = mapped_column(String(40), default="")
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    timeout_s: Mapped[float] = mapped_column(Float, default=600.0)
    flaky: Mapped[bool] = mapped_column(default=False)
    attribution: Mapped[str] = mapped_column(String(40), default="")
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @validates("candidates")
    def _count_candidates(self, _key: str, value: list[int]) -> list[int]:
        self.candidate_count = len(value)
        return value


# A family's queue per build in placement order: scarcest first, then longest, then oldest.
Index(
    "ix_devicelab_executions_queue",
    LabExecution.family,
    LabExecution.status,
    LabExecution.build_id,
    LabExecution.candidate_count,
    LabExecution.expected_duration_s.desc(),
    LabExecution.id,
)


class LabHook(Base):
    """A pipeline stage's entry: a signing secret (sealed), the suite it starts and where."""

    __tablename__ = "devicelab_hooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    secret: Mapped[str] = mapped_column(Text)  # sealed
    suite: Mapped[str] = mapped_column(String(200), default="")
    devices: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
