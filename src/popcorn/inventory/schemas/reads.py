"""What the inventory answers: one read schema per object type, pages and reports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    Field,
    WithJsonSchema,
    create_model,
)

from popcorn.schemas import Page, ReadSchema

# --- outputs -----------------------------------------------------------------


class Stamped(ReadSchema):
    id: int
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RegionRead(Stamped):
    slug: str
    name: str
    parent: str | None
    parent_id: int | None
    description: str


class SiteRead(Stamped):
    code: str
    name: str
    region: str | None
    region_id: int | None
    group: str | None = None
    group_id: int | None = None
    kind: str
    status: str
    country: str | None
    city: str
    latitude: float | None
    longitude: float | None
    asn: int | None
    description: str
    tags: list[str]
    custom_fields: dict[str, Any]


class RackRead(Stamped):
    site: str
    site_id: int
    location: str | None = None
    location_id: int | None = None
    name: str
    u_height: int
    status: str
    description: str
    tags: list[str]
    custom_fields: dict[str, Any]


class ManufacturerRead(Stamped):
    name: str
    slug: str
    description: str


class DeviceModelRead(Stamped):
    manufacturer: str
    manufacturer_id: int
    model: str
    slug: str
    part_number: str
    u_height: float
    is_full_depth: bool
    airflow: str | None
    weight: float | None
    weight_unit: str | None
    subdevice_role: str | None
    description: str
    comments: str
    tags: list[str]
    custom_fields: dict[str, Any]
    templates: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


class ModuleTypeRead(Stamped):
    manufacturer: str
    manufacturer_id: int
    model: str
    part_number: str
    airflow: str | None
    weight: float | None
    weight_unit: str | None
    description: str
    comments: str
    templates: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


class DeviceRead(Stamped):
    name: str
    role: str
    model: str
    model_id: int
    site: str
    site_id: int
    location: str | None = None
    location_id: int | None = None
    rack: str | None
    rack_id: int | None
    position: float | None
    face: str | None
    serial: str | None
    asset_tag: str | None
    platform: str
    os_version: str
    primary_ip4: str | None
    primary_ip6: str | None
    status: str
    throughput_gbps: float | None
    storage_tb: float | None
    description: str
    comments: str
    tags: list[str]
    custom_fields: dict[str, Any]
    agent_url: str | None
    agent_version: str | None
    agent_last_seen: datetime | None


class ComponentRead(Stamped):
    device: str
    device_id: int
    name: str
    kind: str
    label: str
    parent: str | None
    parent_id: int | None
    bay: str | None
    module_type: str | None
    manufacturer: str | None
    part_number: str
    serial: str | None
    firmware: str
    status: str
    install_date: date | None
    eol_date: date | None
    description: str
    custom_fields: dict[str, Any]


class InterfaceRead(ReadSchema):
    id: int
    device: str
    device_id: int
    name: str
    label: str
    type: str
    speed: int | None
    mgmt_only: bool
    enabled: bool
    mac_address: str | None
    mtu: int | None
    module: str | None
    description: str
    link_id: int | None


class PortRead(ReadSchema):
    id: int
    device: str
    device_id: int
    kind: str
    name: str
    label: str
    type: str | None
    description: str
    maximum_draw: int | None
    allocated_draw: int | None
    feed_leg: str | None
    positions: int | None
    rear_port: str | None
    rear_port_position: int | None
    power_port: str | None
    module: str | None
    link_id: int | None


class BayRead(ReadSchema):
    id: int
    device: str
    device_id: int
    kind: str
    name: str
    label: str
    position: str
    description: str
    installed_device: str | None


class LinkRead(Stamped):
    # No device when the end is a circuit termination or a power feed.
    a_device: str | None
    a_name: str
    a_kind: str
    b_device: str | None
    b_name: str
    b_kind: str
    type: str
    status: str
    label: str
    color: str
    length: float | None
    length_unit: str | None
    description: str


class CustomFieldRead(ReadSchema):
    id: int
    object_type: str
    name: str
    label: str
    type: str
    required: bool
    choices: list[str] | None
    description: str


class JournalRead(ReadSchema):
    id: int
    object_type: str
    object_id: int
    kind: str
    comments: str
    created_by: str
    created_at: datetime


class ImportResult(ReadSchema):
    dry_run: bool
    counts: dict[str, dict[str, int]]
    totals: dict[str, int]
    seconds: float


class TraceHop(ReadSchema):
    near: dict[str, Any]
    link: dict[str, Any] | None
    far: dict[str, Any] | None


class Trace(ReadSchema):
    hops: list[TraceHop]
    complete: bool
    origin: dict[str, Any]
    destination: dict[str, Any] | None


# --- list answers ---------------------------------------------------------------


def list_page(read: type[ReadSchema]) -> type[BaseModel]:
    """The list answer of one object type.

    Items are the type's read objects, or only the fields asked for with
    `fields=a,b` or `brief=1`, so they are checked as objects and documented
    with the read schema's fields (read schemas are flat: no nested models).
    """
    item = Annotated[dict[str, Any], WithJsonSchema(read.model_json_schema(mode="serialization"))]
    page: type[BaseModel] = create_model(
        f"{read.__name__.removesuffix('Read')}Page",
        items=(list[item], ...),
        count=(int | None, None),
        next=(str | None, None),
    )
    return page


class JournalPage(Page[JournalRead]):
    pass


class BulkResult(ImportResult):
    """A bulk create or update: the counts and every object it created or changed."""

    items: list[dict[str, Any]]


class BulkDeleted(BaseModel):
    deleted: int


class ReportPage(BaseModel):
    """Report rows (their keys depend on the report and its `by`)."""

    items: list[dict[str, Any]]
    count: int | None = None
    next: str | None = None


class EndOfLifeReport(ReportPage):
    cutoff: str = Field(description="Components reaching end of life by this date are listed.")
