"""Input and output shapes of the inventory, shared by the API, the CLI and imports.

One input schema per object type serves every path in: the API body, a CLI `key=value`
list and each row of a CSV, JSON or YAML import, so a value valid in one is valid in all.
Quantities take units ("100G", "3.84TB", "1.1kW"); a wrong unit is an error on that field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
    WithJsonSchema,
    create_model,
)

from popcorn.schemas import Page, ReadSchema, Schema

SITE_KINDS = ("cdn-isp", "cdn-ix", "cloud-region", "datacenter")
SITE_STATUSES = ("planned", "staging", "active", "decommissioning", "retired")
RACK_STATUSES = ("planned", "active", "deprecated")
DEVICE_ROLES = (
    "storage-appliance",
    "flash-appliance",
    "router",
    "switch",
    "server",
    "console-server",
    "pdu",
    "patch-panel",
)
DEVICE_STATUSES = ("planned", "staged", "active", "maintenance", "failed", "decommissioned")
# Allowed lifecycle moves. A failed device comes back through maintenance or
# straight to active (remediation fixed it); decommissioned is final.
TRANSITIONS: dict[str, frozenset[str]] = {
    "planned": frozenset({"staged", "decommissioned"}),
    "staged": frozenset({"planned", "active", "failed", "decommissioned"}),
    "active": frozenset({"maintenance", "failed", "decommissioned"}),
    "maintenance": frozenset({"active", "failed", "decommissioned"}),
    "failed": frozenset({"maintenance", "active", "decommissioned"}),
    "decommissioned": frozenset(),
}
COMPONENT_KINDS = (
    "module",
    "disk",
    "nic",
    "optic",
    "psu",
    "fan",
    "dimm",
    "cpu",
    "gpu",
    "other",
)
COMPONENT_STATUSES = ("ok", "degraded", "failed", "replaced")
PORT_KINDS = (
    "console-port",
    "console-server-port",
    "power-port",
    "power-outlet",
    "front-port",
    "rear-port",
)
BAY_KINDS = ("module-bay", "device-bay")
AIRFLOWS = (
    "front-to-rear",
    "rear-to-front",
    "left-to-right",
    "right-to-left",
    "side-to-rear",
    "rear-to-side",
    "bottom-to-top",
    "top-to-bottom",
    "passive",
    "mixed",
)
WEIGHT_UNITS = ("kg", "g", "lb", "oz")
LENGTH_UNITS = ("km", "m", "cm", "mi", "ft", "in")
LINK_STATUSES = ("connected", "planned", "decommissioning")
LINK_END_TYPES = ("interface", "port")
JOURNAL_KINDS = ("info", "success", "warning", "danger")
CUSTOM_FIELD_TYPES = ("text", "integer", "decimal", "boolean", "date", "url", "select", "json")
CUSTOM_FIELD_OBJECTS = ("site", "rack", "device_model", "device", "component")

# --- units -------------------------------------------------------------------

_QUANTITY = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([A-Za-z/]*)\s*$")


def _quantity(
    value: Any, units: Mapping[str, float], what: str, default_unit: str, shown: str
) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a {what}, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a {what} such as 10 or '10{default_unit}'")
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a {what} (e.g. '10{default_unit}')")
    number, unit = float(match.group(1)), match.group(2)
    if not unit:
        return number
    factor = units.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown unit {unit!r} for a {what} (use {shown})")
    return number * factor


_SPEED_UNITS = {
    "k": 1,
    "kbps": 1,
    "kb/s": 1,
    "kbit/s": 1,
    "m": 1e3,
    "mbps": 1e3,
    "mb/s": 1e3,
    "mbit/s": 1e3,
    "g": 1e6,
    "gbps": 1e6,
    "gb/s": 1e6,
    "gbit/s": 1e6,
    "t": 1e9,
    "tbps": 1e9,
    "tb/s": 1e9,
    "tbit/s": 1e9,
}
_THROUGHPUT_UNITS = {k: v / 1e6 for k, v in _SPEED_UNITS.items()}
_STORAGE_UNITS = {
    "gb": 1e-3,
    "tb": 1.0,
    "pb": 1e3,
    "gib": 2**30 / 1e12,
    "tib": 2**40 / 1e12,
    "pib": 2**50 / 1e12,
}
_POWER_UNITS = {"w": 1, "kw": 1000}


def _speed_kbps(value: Any) -> int:
    kbps = _quantity(value, _SPEED_UNITS, "speed", "G", "kbps, Mbps, Gbps or Tbps")
    if kbps < 0:
        raise ValueError("speed cannot be negative")
    return round(kbps)


def _gbps(value: Any) -> float:
    gbps = _quantity(value, _THROUGHPUT_UNITS, "throughput", "Gbps", "Mbps, Gbps or Tbps")
    if gbps < 0:
        raise ValueError("throughput cannot be negative")
    return gbps


def _terabytes(value: Any) -> float:
    tb = _quantity(value, _STORAGE_UNITS, "storage size", "TB", "GB, TB or PB")
    if tb < 0:
        raise ValueError("storage cannot be negative")
    return round(tb, 6)


def _watts(value: Any) -> int:
    watts = _quantity(value, _POWER_UNITS, "power draw", "W", "W or kW")
    if watts < 1:
        raise ValueError("power draw must be at least 1 W")
    return round(watts)


def _u_height(value: float) -> float:
    if value < 0 or value > 100 or (value * 2) != int(value * 2):
        raise ValueError("u_height must be a multiple of 0.5 between 0 and 100")
    return value


_DOTTED_QUAD = re.compile(
    r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$"
)


def _ipv4(value: str) -> str:
    if _DOTTED_QUAD.match(value):
        return value  # the common case, without building an address object
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 address") from exc
    if iface.version != 4:
        raise ValueError(f"{value!r} is not an IPv4 address")
    return str(iface) if "/" in value else str(iface.ip)


def _ipv6(value: str) -> str:
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv6 address") from exc
    if iface.version != 6:
        raise ValueError(f"{value!r} is not an IPv6 address")
    return str(iface) if "/" in value else str(iface.ip)


_MAC = re.compile(r"^[0-9A-Fa-f]{2}([-:.]?)[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


def _mac(value: str) -> str:
    digits = re.sub(r"[-:.]", "", value)
    if not _MAC.match(value) or len(digits) != 12:
        raise ValueError(f"{value!r} is not a MAC address")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2)).upper()


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", value):
        raise ValueError("country must be a two-letter ISO 3166 code such as NL")
    return value.upper()


def _tags(value: Any) -> Any:
    """CSV cells hold tags as 'a,b'; JSON and YAML as lists."""
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()]
    return value


def _blank_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Slug = Annotated[str, StringConstraints(pattern=r"^[-a-zA-Z0-9_.]+$", min_length=1, max_length=100)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Text100 = Annotated[str, StringConstraints(max_length=100)]
Text200 = Annotated[str, StringConstraints(max_length=200)]
OptName = Annotated[Name | None, BeforeValidator(_blank_none)]
Speed = Annotated[
    int | None, BeforeValidator(lambda v: None if _blank_none(v) is None else _speed_kbps(v))
]
Gbps = Annotated[
    float | None, BeforeValidator(lambda v: None if _blank_none(v) is None else _gbps(v))
]
Terabytes = Annotated[
    float | None, BeforeValidator(lambda v: None if _blank_none(v) is None else _terabytes(v))
]
Watts = Annotated[
    int | None, BeforeValidator(lambda v: None if _blank_none(v) is None else _watts(v))
]
UHeight = Annotated[float, AfterValidator(_u_height)]
IPv4 = Annotated[
    str | None,
    BeforeValidator(_blank_none),
    AfterValidator(lambda v: None if v is None else _ipv4(v)),
]
IPv6 = Annotated[
    str | None,
    BeforeValidator(_blank_none),
    AfterValidator(lambda v: None if v is None else _ipv6(v)),
]
MAC = Annotated[
    str | None,
    BeforeValidator(_blank_none),
    AfterValidator(lambda v: None if v is None else _mac(v)),
]
Country = Annotated[
    str | None,
    BeforeValidator(_blank_none),
    AfterValidator(lambda v: None if v is None else _country(v)),
]
Tags = Annotated[list[Slug], BeforeValidator(_tags)]
OptDate = Annotated[date | None, BeforeValidator(_blank_none)]
OptFloat = Annotated[float | None, BeforeValidator(_blank_none)]
OptInt = Annotated[int | None, BeforeValidator(_blank_none)]
CustomFields = dict[str, Any]

# --- inputs ------------------------------------------------------------------
# Fields left out of a create take their defaults; left out of an update or an
# import row for an existing object, they keep their current value.


class RegionIn(Schema):
    id: int | None = None
    slug: Slug
    name: Name
    parent: OptName = Field(default=None, description="Parent region slug or name.")
    description: Text200 = ""


class SiteIn(Schema):
    id: int | None = None
    code: Slug = Field(description="Short unique code, e.g. ams1 or isp-comcast-den2.")
    name: Name
    region: OptName = Field(default=None, description="Region slug or name.")
    group: OptName = Field(default=None, description="Site group slug or name.")
    kind: Literal[SITE_KINDS] = "datacenter"  # type: ignore[valid-type]
    status: Literal[SITE_STATUSES] = "active"  # type: ignore[valid-type]
    country: Country = None
    city: Text100 = ""
    latitude: Annotated[float | None, Field(ge=-90, le=90), BeforeValidator(_blank_none)] = None
    longitude: Annotated[float | None, Field(ge=-180, le=180), BeforeValidator(_blank_none)] = None
    asn: Annotated[int | None, Field(ge=1, le=4294967295), BeforeValidator(_blank_none)] = None
    description: Text200 = ""
    tags: Tags = Field(default_factory=list)
    custom_fields: CustomFields = Field(default_factory=dict)


class RackIn(Schema):
    id: int | None = None
    site: Name
    name: Name
    location: OptName = Field(default=None, description="Location slug or name in the site.")
    u_height: Annotated[int, Field(ge=1, le=100)] = 42
    status: Literal[RACK_STATUSES] = "active"  # type: ignore[valid-type]
    description: Text200 = ""
    tags: Tags = Field(default_factory=list)
    custom_fields: CustomFields = Field(default_factory=dict)


class ManufacturerIn(Schema):
    id: int | None = None
    name: Name
    slug: Slug | None = None
    description: Text200 = ""


class DeviceModelIn(Schema):
    """A device type; `interfaces`, `power-ports`… are the community library's template lists."""

    id: int | None = None
    manufacturer: Name
    model: Name
    slug: Slug
    part_number: Text100 = ""
    u_height: UHeight = 1.0
    is_full_depth: bool = True
    airflow: Literal[AIRFLOWS] | None = None  # type: ignore[valid-type]
    weight: Annotated[float | None, Field(ge=0), BeforeValidator(_blank_none)] = None
    weight_unit: Literal[WEIGHT_UNITS] | None = None  # type: ignore[valid-type]
    subdevice_role: Literal["parent", "child"] | None = None
    description: Text200 = ""
    comments: str = ""
    tags: Tags = Field(default_factory=list)
    custom_fields: CustomFields = Field(default_factory=dict)
    templates: dict[str, list[dict[str, Any]]] | None = Field(
        default=None,
        description="Component templates by library key (interfaces, console-ports, "
        "power-ports, power-outlets, front-ports, rear-ports, module-bays, device-bays, "
        "inventory-items, console-server-ports). Replaces the model's templates when given.",
    )


class ModuleTypeIn(Schema):
    id: int | None = None
    manufacturer: Name
    model: Name
    part_number: Text100 = ""
    airflow: Literal[AIRFLOWS] | None = None  # type: ignore[valid-type]
    weight: Annotated[float | None, Field(ge=0), BeforeValidator(_blank_none)] = None
    weight_unit: Literal[WEIGHT_UNITS] | None = None  # type: ignore[valid-type]
    description: Text200 = ""
    comments: str = ""
    templates: dict[str, list[dict[str, Any]]] | None = None


class DeviceIn(Schema):
    id: int | None = None
    name: Name
    role: Literal[DEVICE_ROLES]  # type: ignore[valid-type]
    model: Name = Field(description="Device model slug.")
    site: Name = Field(description="Site code.")
    rack: OptName = None
    position: Annotated[float | None, Field(ge=0.5, le=100), BeforeValidator(_blank_none)] = None
    face: Literal["front", "rear"] | None = None
    location: OptName = Field(default=None, description="Location slug or name in the site.")
    serial: OptName = None
    asset_tag: OptName = None
    platform: Text100 = ""
    os_version: Text100 = ""
    primary_ip4: IPv4 = None
    primary_ip6: IPv6 = None
    status: Literal[DEVICE_STATUSES] = "active"  # type: ignore[valid-type]
    throughput_gbps: Gbps = None
    storage_tb: Terabytes = None
    description: Text200 = ""
    comments: str = ""
    tags: Tags = Field(default_factory=list)
    custom_fields: CustomFields = Field(default_factory=dict)


class ComponentIn(Schema):
    id: int | None = None
    device: Name
    name: Name
    kind: Literal[COMPONENT_KINDS] = "other"  # type: ignore[valid-type]
    label: Text100 = ""
    parent: OptName = Field(default=None, description="Name of the enclosing component.")
    bay: OptName = Field(default=None, description="Module bay name (modules only).")
    module_type: OptName = Field(default=None, description="'Manufacturer/model' of a module.")
    manufacturer: OptName = None
    part_number: Text100 = ""
    serial: OptName = None
    firmware: Text100 = ""
    status: Literal[COMPONENT_STATUSES] = "ok"  # type: ignore[valid-type]
    install_date: OptDate = None
    eol_date: OptDate = Field(default=None, description="End of warranty or support.")
    description: Text200 = ""
    custom_fields: CustomFields = Field(default_factory=dict)


class InterfaceIn(Schema):
    id: int | None = None
    device: Name
    name: Name
    label: Text100 = ""
    type: Slug = "other"
    speed: Speed = Field(default=None, description="Kbps, or with a unit: 100G, 25Gbps.")
    mgmt_only: bool = False
    enabled: bool = True
    mac_address: MAC = None
    mtu: Annotated[int | None, Field(ge=1, le=65536), BeforeValidator(_blank_none)] = None
    module: OptName = Field(default=None, description="Name of the module it belongs to.")
    description: Text200 = ""


class PortIn(Schema):
    id: int | None = None
    device: Name
    kind: Literal[PORT_KINDS]  # type: ignore[valid-type]
    name: Name
    label: Text100 = ""
    type: Annotated[Slug | None, BeforeValidator(_blank_none)] = None
    description: Text200 = ""
    maximum_draw: Watts = None
    allocated_draw: Watts = None
    feed_leg: Literal["A", "B", "C"] | None = None
    positions: Annotated[int | None, Field(ge=1, le=1024), BeforeValidator(_blank_none)] = None
    rear_port: OptName = Field(default=None, description="Front ports: the rear port name.")
    rear_port_position: OptInt = None
    power_port: OptName = Field(default=None, description="Power outlets: the power port name.")
    module: OptName = None


class BayIn(Schema):
    id: int | None = None
    device: Name
    kind: Literal[BAY_KINDS] = "module-bay"  # type: ignore[valid-type]
    name: Name
    label: Text100 = ""
    position: Text100 = ""
    description: Text200 = ""
    installed_device: OptName = None


class LinkIn(Schema):
    """A cable: each end is a device and the name of an interface (or port, with its kind)."""

    id: int | None = None
    a_device: Name
    a_name: Name
    a_kind: Literal[("interface", *PORT_KINDS)] = "interface"  # type: ignore[valid-type]
    b_device: Name
    b_name: Name
    b_kind: Literal[("interface", *PORT_KINDS)] = "interface"  # type: ignore[valid-type]
    type: Text100 = ""
    status: Literal[LINK_STATUSES] = "connected"  # type: ignore[valid-type]
    label: Text100 = ""
    color: Annotated[str, StringConstraints(pattern=r"^([0-9a-fA-F]{6})?$")] = ""
    length: Annotated[float | None, Field(gt=0), BeforeValidator(_blank_none)] = None
    length_unit: Literal[LENGTH_UNITS] | None = None  # type: ignore[valid-type]
    description: Text200 = ""


class CustomFieldIn(Schema):
    id: int | None = None
    object_type: Literal[CUSTOM_FIELD_OBJECTS]  # type: ignore[valid-type]
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=50)]
    label: Text100 = ""
    type: Literal[CUSTOM_FIELD_TYPES] = "text"  # type: ignore[valid-type]
    required: bool = False
    choices: list[str] | None = None
    description: Text200 = ""


class StatusChange(Schema):
    status: Literal[DEVICE_STATUSES]  # type: ignore[valid-type]
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class ComponentFailure(Schema):
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class JournalIn(Schema):
    kind: Literal[JOURNAL_KINDS] = "info"  # type: ignore[valid-type]
    comments: Annotated[str, StringConstraints(min_length=1, max_length=10000)]


class AgentHeartbeat(Schema):
    url: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    version: Annotated[str, StringConstraints(max_length=50)] = ""
    actions: list[str] = Field(default_factory=list)


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
