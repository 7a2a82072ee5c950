"""The object types a batch knows, their fields, and the small helpers every planner uses."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter
from sqlalchemy import Table, select
from typing_extensions import TypedDict

from popcorn.errors import InvalidInput
from popcorn.inventory import models as m
from popcorn.inventory import schemas as s
from popcorn.inventory.schemas import groups as gs

# Per-object audit records and events are written when a batch changes at most
# this many objects; larger batches get one summary record and event instead.
PER_OBJECT_LIMIT = 1000
CHUNK = 5000


@dataclass(frozen=True)
class ObjectType:
    name: str
    plural: str
    model: Any
    schema_name: str  # its input schema, in `schemas` (or `schemas.groups`)
    label: str

    @property
    def table(self) -> Table:
        table: Table = self.model.__table__
        return table

    @property
    def schema(self) -> type[BaseModel]:
        """The input schema, looked up when first wanted: the input schemas load with the
        first change or import, not with a list."""
        found: type[BaseModel] = getattr(gs, self.schema_name, None) or getattr(s, self.schema_name)
        return found


TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType("custom_field", "custom_fields", m.CustomField, "CustomFieldIn", "custom field"),
        ObjectType("region", "regions", m.Region, "RegionIn", "region"),
        ObjectType(
            "manufacturer", "manufacturers", m.Manufacturer, "ManufacturerIn", "manufacturer"
        ),
        ObjectType("site_group", "site_groups", m.SiteGroup, "SiteGroupIn", "site group"),
        ObjectType("site", "sites", m.Site, "SiteIn", "site"),
        ObjectType("location", "locations", m.Location, "LocationIn", "location"),
        ObjectType("rack", "racks", m.Rack, "RackIn", "rack"),
        ObjectType("device_model", "device_models", m.DeviceModel, "DeviceModelIn", "device model"),
        ObjectType("module_type", "module_types", m.ModuleType, "ModuleTypeIn", "module type"),
        ObjectType("device", "devices", m.Device, "DeviceIn", "device"),
        ObjectType("bay", "bays", m.Bay, "BayIn", "bay"),
        ObjectType("component", "components", m.Component, "ComponentIn", "component"),
        ObjectType("interface", "interfaces", m.Interface, "InterfaceIn", "interface"),
        ObjectType("port", "ports", m.Port, "PortIn", "port"),
        ObjectType("link", "links", m.Link, "LinkIn", "link"),
    )
}
ORDER = list(TYPES)
BY_PLURAL = {t.plural: t.name for t in TYPES.values()}
SECTION_ALIASES = {
    "device_types": "device_model",
    "device-types": "device_model",
    "module-types": "module_type",
    "cables": "link",
    "custom-fields": "custom_field",
    "device-models": "device_model",
}
TAGGED = ("site", "rack", "device_model", "device")
CUSTOM = ("site", "rack", "device_model", "device", "component")
TIMESTAMPED = {
    "region",
    "site_group",
    "location",
    "manufacturer",
    "site",
    "rack",
    "device_model",
    "module_type",
    "device",
    "component",
    "link",
}
CHILDREN = ("bay", "component", "interface", "port")
# Foreign keys that may point at objects created in the same batch.
FKS: dict[str, dict[str, str]] = {
    "region": {"parent_id": "region"},
    "site_group": {"parent_id": "site_group"},
    "site": {"region_id": "region", "group_id": "site_group"},
    "location": {"site_id": "site", "parent_id": "location"},
    "rack": {"site_id": "site", "location_id": "location"},
    "device_model": {"manufacturer_id": "manufacturer"},
    "module_type": {"manufacturer_id": "manufacturer"},
    "device": {
        "device_model_id": "device_model",
        "site_id": "site",
        "location_id": "location",
        "rack_id": "rack",
    },
    "bay": {"device_id": "device", "installed_device_id": "device"},
    "component": {
        "device_id": "device",
        "parent_id": "component",
        "bay_id": "bay",
        "module_type_id": "module_type",
        "manufacturer_id": "manufacturer",
    },
    "interface": {"device_id": "device", "module_id": "component"},
    "port": {"device_id": "device", "module_id": "component", "peer_id": "port"},
    "link": {"a_device_id": "device", "b_device_id": "device"},
}
SELF_FK = {
    "region": "parent_id",
    "site_group": "parent_id",
    "location": "parent_id",
    "component": "parent_id",
    "port": "peer_id",
}
# Fields whose values repeat across rows (part numbers, firmware, dates, kinds): one copy
# each per batch instead of one per row, which matters with a million components.
SHARED: dict[str, frozenset[str]] = {
    "device": frozenset(("role", "model", "site", "rack", "platform", "os_version", "status")),
    "component": frozenset(
        (
            "kind",
            "name",
            "part_number",
            "firmware",
            "status",
            "install_date",
            "eol_date",
            "label",
            "description",
            "manufacturer",
            "parent",
            "bay",
            "module_type",
        )
    ),
    "interface": frozenset(("name", "type", "label", "description", "module")),
    "port": frozenset(("kind", "name", "type", "label", "description")),
    "bay": frozenset(("kind", "name", "label", "position")),
}
# Besides their key, some objects are found by a second name ("Cisco", "Europe", a model name).
ALIAS_FIELD = {
    "region": "name",
    "site_group": "name",
    "manufacturer": "name",
    "device_model": "model",
}
AMBIGUOUS = 0
SIMPLE: dict[str, tuple[str, ...]] = {
    "custom_field": ("object_type", "name", "label", "type", "required", "choices", "description"),
    "region": ("slug", "name", "description"),
    "site_group": ("slug", "name", "description"),
    "location": ("slug", "name", "status", "description"),
    "manufacturer": ("name", "slug", "description"),
    "site": (
        "code",
        "name",
        "kind",
        "status",
        "country",
        "city",
        "latitude",
        "longitude",
        "asn",
        "description",
    ),
    "rack": ("name", "u_height", "status", "description"),
    "device_model": (
        "model",
        "slug",
        "part_number",
        "u_height",
        "is_full_depth",
        "airflow",
        "weight",
        "weight_unit",
        "subdevice_role",
        "description",
        "comments",
    ),
    "module_type": (
        "model",
        "part_number",
        "airflow",
        "weight",
        "weight_unit",
        "description",
        "comments",
    ),
    "device": (
        "name",
        "role",
        "position",
        "face",
        "serial",
        "asset_tag",
        "platform",
        "os_version",
        "primary_ip4",
        "primary_ip6",
        "status",
        "throughput_gbps",
        "storage_tb",
        "description",
        "comments",
    ),
    "bay": ("kind", "name", "label", "position", "description"),
    "component": (
        "kind",
        "name",
        "label",
        "part_number",
        "serial",
        "firmware",
        "status",
        "install_date",
        "eol_date",
        "description",
    ),
    "interface": (
        "name",
        "label",
        "type",
        "speed",
        "mgmt_only",
        "enabled",
        "mac_address",
        "mtu",
        "description",
    ),
    "port": (
        "kind",
        "name",
        "label",
        "type",
        "description",
        "maximum_draw",
        "allocated_draw",
        "feed_leg",
        "positions",
    ),
    "link": ("type", "status", "label", "color", "length", "length_unit", "description"),
}


def resolve_type(name: str) -> str:
    """An object type from its name, plural or alias ("devices", "device-types"…)."""
    key = name.strip().lower().replace(" ", "_")
    if key in TYPES:
        return key
    if key in BY_PLURAL:
        return BY_PLURAL[key]
    if name in SECTION_ALIASES:
        return SECTION_ALIASES[name]
    if key.replace("-", "_") in TYPES:
        return key.replace("-", "_")
    if key.replace("-", "_") in BY_PLURAL:
        return BY_PLURAL[key.replace("-", "_")]
    raise InvalidInput(
        f"unknown object type {name!r}",
        details={"type": name, "allowed": [t.plural for t in TYPES.values()]},
    )


_adapters: dict[str, TypeAdapter[Any]] = {}


def adapter(otype: str) -> TypeAdapter[Any]:
    """A TypedDict validator with the input schema's fields, all optional, no defaults filled."""
    found = _adapters.get(otype)
    if found is None:
        schema = TYPES[otype].schema
        fields = {n: f.rebuild_annotation() for n, f in schema.model_fields.items()}
        row_type = TypedDict(f"{schema.__name__}Row", fields, total=False)  # type: ignore[misc]
        row_type.__pydantic_config__ = ConfigDict(extra="forbid", str_strip_whitespace=True)  # type: ignore[attr-defined]
        found = _adapters[otype] = TypeAdapter(row_type)
    return found


_required: dict[str, list[str]] = {}


def required_fields(otype: str) -> list[str]:
    found = _required.get(otype)
    if found is None:
        schema = TYPES[otype].schema
        found = _required[otype] = [n for n, f in schema.model_fields.items() if f.is_required()]
    return found


_defaults: dict[str, dict[str, Any]] = {}


def input_defaults(otype: str) -> dict[str, Any]:
    """Defaults of a type's optional inputs; shared, so callers must not mutate the values."""
    found = _defaults.get(otype)
    if found is None:
        found = _defaults[otype] = {
            n: f.get_default(call_default_factory=True)
            for n, f in TYPES[otype].schema.model_fields.items()
            if not f.is_required() and n != "id"
        }
    return found


def slugify(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "x"


def jsonable(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, datetime | date):
            value = value.isoformat()
        out[key] = value
    return out


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def stored(table: Any) -> Any:
    """Stored rows as planning compares them: every column but the timestamps."""
    return select(*[c for c in table.c if c.name not in ("created_at", "updated_at")])
