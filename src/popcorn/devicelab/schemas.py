"""Device lab API schemas: devices and agents, the catalog, builds, runs and hooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from popcorn.schemas import Page, ReadSchema, Schema

Name = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]*$")
Platform = Literal["tv", "console", "stb", "mobile", "browser", "streamer"]


class Capabilities(Schema):
    """What a device is and can do; tests require some of these."""

    platform: Platform
    model: str = Field(default="", max_length=200)
    family: str = Field(default="", max_length=200)
    os_version: str = Field(default="", max_length=100)
    firmware: str = Field(default="", max_length=100)
    resolution: str = Field(default="1080p", max_length=20)
    hdr: list[str] = Field(default_factory=list, max_length=10)
    drm_level: str = Field(default="", max_length=40)
    sdk_version: str = Field(default="", max_length=40)
    tags: list[str] = Field(default_factory=list, max_length=50)


class DeviceCreate(Capabilities):
    name: str = Name
    pool: str = Field(default="default", max_length=100)
    site: str = Field(default="", max_length=100)
    rack: str = Field(default="", max_length=100)
    slots: int = Field(default=1, ge=1, le=64)


class DeviceUpdate(Schema):
    pool: str | None = Field(default=None, max_length=100)
    site: str | None = Field(default=None, max_length=100)
    rack: str | None = Field(default=None, max_length=100)
    health: Literal["healthy", "degraded", "failed"] | None = None
    tags: list[str] | None = Field(default=None, max_length=50)


class DeviceRead(ReadSchema):
    id: int
    name: str
    platform: str
    model: str
    family: str
    os_version: str
    firmware: str
    resolution: str
    hdr: list[str]
    drm_level: str
    sdk_version: str
    tags: list[str]
    pool: str
    site: str
    rack: str
    slots: int
    health: str
    agent_state: str
    agent_version: str
    last_heartbeat: datetime | None
    reserved_by: str | None
    reserved_until: datetime | None
    reservation_note: str


class DevicePage(Page[DeviceRead]):
    pass


class ReservationCreate(Schema):
    minutes: float = Field(default=60.0, gt=0, le=7 * 24 * 60)
    note: str = Field(default="", max_length=500)


class AgentRegister(Schema):
    """An agent announcing the device it serves (created on first registration)."""

    device: DeviceCreate
    version: str = Field(default="", max_length=40)


class AgentRegistered(ReadSchema):
    device: str
    device_id: int
    platform_id: str
    agent_key: str
    heartbeat_s: float
    offline_after_s: float


class AgentResult(Schema):
    execution: int = Field(ge=1)
    status: Literal["passed", "failed", "error"]
    duration_s: float = Field(ge=0, le=7 * 24 * 3600)
    message: str = Field(default="", max_length=4000)
    failure_kind: str = Field(default="", max_length=40)


class AgentHeartbeat(Schema):
    running: list[int] = Field(default_factory=list, max_length=64)
    results: list[AgentResult] = Field(
        default_factory=list,
        max_length=256,
        description="Results finished since the last beat, recorded in the beat's transaction.",
    )


class TestCreate(Schema):
    name: str = Field(min_length=1, max_length=300, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]*$")
    suite: str = Field(default="", max_length=200)
    components: list[str] = Field(default_factory=list, max_length=50)
    tags: list[str] = Field(default_factory=list, max_length=50)
    requires: dict[str, Any] = Field(default_factory=dict)
    expected_duration_s: float = Field(default=60.0, gt=0, le=24 * 3600)
    timeout_s: float | None = Field(default=None, gt=0, le=48 * 3600)
    owners: list[str] = Field(default_factory=list, max_length=20)
    behaviour: dict[str, Any] = Field(default_factory=dict)


class TestRead(ReadSchema):
    id: int
    name: str
    suite: str
    components: list[str]
    tags: list[str]
    requires: dict[str, Any]
    expected_duration_s: float
    timeout_s: float
    owners: list[str]


class TestPage(Page[TestRead]):
    pass


class CatalogImport(Schema):
    tests: list[TestCreate] = Field(min_length=1, max_length=50_000)


class SuiteCreate(Schema):
    name: str = Name
    query: str = Field(default="", max_length=4000)
    description: str = Field(default="", max_length=2000)


class SuiteRead(ReadSchema):
    id: int
    name: str
    query: str
    description: str


class SuitePage(Page[SuiteRead]):
    pass


class BuildCreate(Schema):
    app_version: str = Field(min_length=1, max_length=100)
    change: str = Field(default="", max_length=200)
    branch: str = Field(default="main", max_length=200)
    components: list[str] = Field(default_factory=list, max_length=200)


class BuildRead(ReadSchema):
    id: int
    app_version: str
    change: str
    branch: str
    components: list[str]
    created_by: str
    created_at: datetime


class BuildPage(Page[BuildRead]):
    pass


class RunCreate(Schema):
    build: BuildCreate | None = None
    build_id: int | None = Field(default=None, ge=1)
    suite: str = Field(default="", max_length=200)
    query: str = Field(default="", max_length=4000)
    devices: str = Field(default="", max_length=4000, description="Device query")
    retries: int = Field(default=1, ge=0, le=5)
    max_attempts: int = Field(default=3, ge=1, le=10)
    select: Literal["all", "predicted"] = "all"
    recall: float = Field(default=0.99, gt=0.5, le=1.0)


class RunRead(ReadSchema):
    id: int
    build_id: int
    suite: str
    query: str
    devices: str
    status: str
    retries: int
    max_attempts: int
    selection: dict[str, Any]
    summary: dict[str, Any]
    created_by: str
    created_at: datetime
    finished_at: datetime | None


class RunPage(Page[RunRead]):
    pass


class RunStatus(ReadSchema):
    """What a pipeline stage polls: SUCCEEDED, TERMINAL or RUNNING, with the report."""

    run: int
    status: str
    stage_status: str
    passed: bool | None
    summary: dict[str, Any]
    report_url: str
    junit_url: str


class ExecutionRead(ReadSchema):
    id: int
    run_id: int
    build_id: int
    test_name: str
    device_name: str
    family: str
    status: str
    attempt: int
    reason: str
    message: str
    failure_kind: str
    duration_s: float
    flaky: bool
    attribution: str
    probability: float | None
    queued_at: datetime
    assigned_at: datetime | None
    finished_at: datetime | None


class ExecutionPage(Page[ExecutionRead]):
    pass


class HookCreate(Schema):
    name: str = Name
    suite: str = Field(default="", max_length=200)
    devices: str = Field(default="", max_length=4000)
    secret: str | None = Field(default=None, min_length=16, max_length=200)


class HookRead(ReadSchema):
    id: int
    name: str
    suite: str
    devices: str
    created_by: str
    created_at: datetime


class HookCreated(HookRead):
    secret: str


class HookPage(Page[HookRead]):
    pass


class HookTrigger(Schema):
    """The body a pipeline's webhook stage sends (Spinnaker: its `payload`)."""

    app_version: str = Field(min_length=1, max_length=100)
    change: str = Field(default="", max_length=200)
    branch: str = Field(default="main", max_length=200)
    components: list[str] = Field(default_factory=list, max_length=200)
    suite: str | None = Field(default=None, max_length=200)
    devices: str | None = Field(default=None, max_length=4000)
    select: Literal["all", "predicted"] = "all"
    callback_url: str | None = Field(default=None, max_length=1000)


class SelectRequest(Schema):
    build_id: int = Field(ge=1)
    suite: str = Field(default="", max_length=200)
    query: str = Field(default="", max_length=4000)
    devices: str = Field(default="", max_length=4000)
    recall: float = Field(default=0.99, gt=0.5, le=1.0)


class QueryCheck(Schema):
    query: str = Field(max_length=4000)
    target: Literal["tests", "devices"] = "tests"
