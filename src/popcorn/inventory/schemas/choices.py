"""The closed vocabularies of the inventory: statuses, kinds, roles, units."""

from __future__ import annotations

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
