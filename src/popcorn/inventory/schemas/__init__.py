"""Input and output shapes of the inventory, shared by the API, the CLI and imports.

One input schema per object type serves every path in: the API body, a CLI `key=value`
list and each row of a CSV, JSON or YAML import, so a value valid in one is valid in all.
The package keeps them by area: `choices` (closed vocabularies), `values` (field types:
quantities with units, addresses, names), `inputs`, `reads` (read schemas, pages,
reports) and `groups` (regions, site groups, locations); every name is importable
from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    LINK_END_TYPES,
    LINK_STATUSES,
    PORT_KINDS,
    RACK_STATUSES,
    SITE_KINDS,
    SITE_STATUSES,
    TRANSITIONS,
    WEIGHT_UNITS,
)
from popcorn.inventory.schemas.reads import (
    BayRead,
    BulkDeleted,
    BulkResult,
    ComponentRead,
    CustomFieldRead,
    DeviceModelRead,
    DeviceRead,
    EndOfLifeReport,
    ImportResult,
    InterfaceRead,
    JournalPage,
    JournalRead,
    LinkRead,
    ManufacturerRead,
    ModuleTypeRead,
    PortRead,
    RackRead,
    RegionRead,
    ReportPage,
    SiteRead,
    Stamped,
    Trace,
    TraceHop,
    list_page,
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
    OptFloat,
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
)

if TYPE_CHECKING:
    from popcorn.inventory.schemas.inputs import (
        AgentHeartbeat,
        BayIn,
        ComponentFailure,
        ComponentIn,
        CustomFieldIn,
        DeviceIn,
        DeviceModelIn,
        InterfaceIn,
        JournalIn,
        LinkIn,
        ManufacturerIn,
        ModuleTypeIn,
        PortIn,
        RackIn,
        RegionIn,
        SiteIn,
        StatusChange,
    )

# The input schemas load on first use (`__getattr__`): a list reads and prints, and never
# builds what a change or an import validates against.
_INPUTS = frozenset(
    {
        "AgentHeartbeat",
        "BayIn",
        "ComponentFailure",
        "ComponentIn",
        "CustomFieldIn",
        "DeviceIn",
        "DeviceModelIn",
        "InterfaceIn",
        "JournalIn",
        "LinkIn",
        "ManufacturerIn",
        "ModuleTypeIn",
        "PortIn",
        "RackIn",
        "RegionIn",
        "SiteIn",
        "StatusChange",
    }
)


def __getattr__(name: str) -> Any:
    """Load an input schema (`_INPUTS`) from `inputs` when first asked for."""
    if name not in _INPUTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from popcorn.inventory.schemas import inputs

    value = getattr(inputs, name)
    globals()[name] = value
    return value


__all__ = [
    "AIRFLOWS",
    "BAY_KINDS",
    "COMPONENT_KINDS",
    "COMPONENT_STATUSES",
    "CUSTOM_FIELD_OBJECTS",
    "CUSTOM_FIELD_TYPES",
    "DEVICE_ROLES",
    "DEVICE_STATUSES",
    "JOURNAL_KINDS",
    "LENGTH_UNITS",
    "LINK_END_TYPES",
    "LINK_STATUSES",
    "MAC",
    "PORT_KINDS",
    "RACK_STATUSES",
    "SITE_KINDS",
    "SITE_STATUSES",
    "TRANSITIONS",
    "WEIGHT_UNITS",
    "AgentHeartbeat",
    "BayIn",
    "BayRead",
    "BulkDeleted",
    "BulkResult",
    "ComponentFailure",
    "ComponentIn",
    "ComponentRead",
    "Country",
    "CustomFieldIn",
    "CustomFieldRead",
    "CustomFields",
    "DeviceIn",
    "DeviceModelIn",
    "DeviceModelRead",
    "DeviceRead",
    "EndOfLifeReport",
    "Gbps",
    "IPv4",
    "IPv6",
    "ImportResult",
    "InterfaceIn",
    "InterfaceRead",
    "JournalIn",
    "JournalPage",
    "JournalRead",
    "LinkIn",
    "LinkRead",
    "ManufacturerIn",
    "ManufacturerRead",
    "ModuleTypeIn",
    "ModuleTypeRead",
    "Name",
    "OptDate",
    "OptFloat",
    "OptInt",
    "OptName",
    "PortIn",
    "PortRead",
    "RackIn",
    "RackRead",
    "RegionIn",
    "RegionRead",
    "ReportPage",
    "SiteIn",
    "SiteRead",
    "Slug",
    "Speed",
    "Stamped",
    "StatusChange",
    "Tags",
    "Terabytes",
    "Text100",
    "Text200",
    "Trace",
    "TraceHop",
    "UHeight",
    "Watts",
    "list_page",
]
