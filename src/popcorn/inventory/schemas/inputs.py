"""One input schema per object type: the API body, a CLI `key=value` list and an import row."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
)

from popcorn.inventory.schemas.choices import (
    AIRFLOWS,
    BAY_KINDS,
    COMPONENT_KINDS,
    COMPONENT_STATUSES,
    CUSTOM_FIELD_OBJECTS,
    CUSTOM_FIELD_TYPES,
    DEVICE_ROLES,
    DEVICE_STATUSES,
    JOURNAL_KINDS,
    LENGTH_UNITS,
    LINK_STATUSES,
    PORT_KINDS,
    RACK_STATUSES,
    SITE_KINDS,
    SITE_STATUSES,
    WEIGHT_UNITS,
)
from popcorn.inventory.schemas.values import (
    MAC,
    Country,
    CustomFields,
    Gbps,
    IPv4,
    IPv6,
    Name,
    OptDate,
    OptInt,
    OptName,
    Slug,
    Speed,
    Tags,
    Terabytes,
    Text100,
    Text200,
    UHeight,
    Watts,
    blank_none,
)
from popcorn.schemas import Schema

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
    latitude: Annotated[float | None, Field(ge=-90, le=90), BeforeValidator(blank_none)] = None
    longitude: Annotated[float | None, Field(ge=-180, le=180), BeforeValidator(blank_none)] = None
    asn: Annotated[int | None, Field(ge=1, le=4294967295), BeforeValidator(blank_none)] = None
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
    weight: Annotated[float | None, Field(ge=0), BeforeValidator(blank_none)] = None
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
    weight: Annotated[float | None, Field(ge=0), BeforeValidator(blank_none)] = None
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
    position: Annotated[float | None, Field(ge=0.5, le=100), BeforeValidator(blank_none)] = None
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
    mtu: Annotated[int | None, Field(ge=1, le=65536), BeforeValidator(blank_none)] = None
    module: OptName = Field(default=None, description="Name of the module it belongs to.")
    description: Text200 = ""


class PortIn(Schema):
    id: int | None = None
    device: Name
    kind: Literal[PORT_KINDS]  # type: ignore[valid-type]
    name: Name
    label: Text100 = ""
    type: Annotated[Slug | None, BeforeValidator(blank_none)] = None
    description: Text200 = ""
    maximum_draw: Watts = None
    allocated_draw: Watts = None
    feed_leg: Literal["A", "B", "C"] | None = None
    positions: Annotated[int | None, Field(ge=1, le=1024), BeforeValidator(blank_none)] = None
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
    length: Annotated[float | None, Field(gt=0), BeforeValidator(blank_none)] = None
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
