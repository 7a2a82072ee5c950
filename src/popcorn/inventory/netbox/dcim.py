"""NetBox DCIM, tenancy and extras models onto Popcorn's inventory.

Field names of NetBox 3.x and 4.x are both read (`device_role` and `role`,
cables with `termination_a_*` and `dcim.cabletermination` rows, custom fields'
`content_types` and `object_types`, an interface's `mac_address` and 4.2's
`primary_mac_address`). What Popcorn has no column for goes where it can be
seen: a device's NetBox role and any tenant become text custom fields.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from popcorn.inventory import schemas as s
from popcorn.inventory.netbox.registry import (
    LATE_ENDS,
    Dump,
    Plan,
    Record,
    choice,
    compact,
    mapper,
    number,
    text,
    uses,
)
from popcorn.inventory.schemas import groups as gs

# NetBox object types whose custom fields Popcorn can hold, by Popcorn type.
CUSTOM_TARGETS = {
    "dcim.site": "site",
    "dcim.rack": "rack",
    "dcim.devicetype": "device_model",
    "dcim.device": "device",
    "dcim.module": "component",
    "dcim.inventoryitem": "component",
}
CUSTOM_TYPES = {
    "text": "text",
    "longtext": "text",
    "integer": "integer",
    "decimal": "decimal",
    "boolean": "boolean",
    "date": "date",
    "datetime": "text",
    "url": "url",
    "json": "json",
    "select": "select",
    "multiselect": "json",
    "object": "json",
    "multiobject": "json",
}
PORT_MODELS = {
    "dcim.consoleport": "console-port",
    "dcim.consoleserverport": "console-server-port",
    "dcim.powerport": "power-port",
    "dcim.poweroutlet": "power-outlet",
    "dcim.frontport": "front-port",
    "dcim.rearport": "rear-port",
}
TEMPLATE_MODELS = {
    "dcim.interfacetemplate": "interfaces",
    "dcim.consoleporttemplate": "console-ports",
    "dcim.consoleserverporttemplate": "console-server-ports",
    "dcim.powerporttemplate": "power-ports",
    "dcim.poweroutlettemplate": "power-outlets",
    "dcim.frontporttemplate": "front-ports",
    "dcim.rearporttemplate": "rear-ports",
    "dcim.modulebaytemplate": "module-bays",
    "dcim.devicebaytemplate": "device-bays",
    "dcim.inventoryitemtemplate": "inventory-items",
}
# Device statuses NetBox has and Popcorn has not.
DEVICE_STATUS = {
    "offline": "maintenance",
    "inventory": "planned",
    "decommissioning": "decommissioned",
}
RACK_STATUS = {"reserved": "active", "available": "active"}
ROLE_HINTS = (
    ("flash", "flash-appliance"),
    ("storage", "storage-appliance"),
    ("oca", "storage-appliance"),
    ("appliance", "storage-appliance"),
    ("cache", "storage-appliance"),
    ("router", "router"),
    ("switch", "switch"),
    ("console", "console-server"),
    ("pdu", "pdu"),
    ("patch", "patch-panel"),
    ("panel", "patch-panel"),
)
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")

uses(
    *TEMPLATE_MODELS,
    "dcim.cabletermination",
    "dcim.devicerole",
    "dcim.platform",
    "dcim.rackrole",
    "dcim.macaddress",
    "tenancy.tenant",
    "extras.tag",
    "extras.taggeditem",
    "extras.customfieldchoiceset",
    "core.objecttype",
)


# --- lookups built once per dump ------------------------------------------------------


def _tags(dump: Dump) -> dict[tuple[str, Any], list[str]]:
    out: dict[tuple[str, Any], list[str]] = defaultdict(list)
    for item in dump.all("extras.taggeditem").values():
        model = dump.content_type(item.get("content_type"))
        slug = dump.field("extras.tag", item.get("tag"), "slug")
        if model and slug:
            out[(model, item.get("object_id"))].append(slug)
    return out


def tags(dump: Dump, model: str, pk: Any, fields: Record) -> list[str]:
    found = list(dump.derived("tags", _tags).get((model, pk), []))
    for tag in fields.get("tags") or []:  # a dump made with the tags inline
        slug = dump.field("extras.tag", tag, "slug") if not isinstance(tag, str) else tag
        if slug and slug not in found:
            found.append(slug)
    return sorted(found)


def _declared(dump: Dump) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for fields in dump.all("extras.customfield").values():
        for target in _custom_targets(dump, fields):
            out[target].add(fields.get("name", ""))
    return out


def custom_values(dump: Dump, model: str, fields: Record, plan: Plan) -> Record:
    """NetBox's `custom_field_data` for the fields declared on this Popcorn type, plus tenant."""
    otype = CUSTOM_TARGETS[model]
    declared = dump.derived("declared", _declared)[otype]
    data = fields.get("custom_field_data") or {}
    out = {k: v for k, v in data.items() if k in declared and v not in (None, "", [])}
    tenant = dump.field("tenancy.tenant", fields.get("tenant"))
    if tenant:
        plan.declare(otype, "tenant", "Tenant")
        out["tenant"] = tenant
    return out


def _device_names(dump: Dump) -> dict[Any, str]:
    """Popcorn names devices uniquely; NetBox only per site and tenant, and may leave them out."""
    devices = dump.all("dcim.device")
    names = {}
    for pk, fields in devices.items():
        slug = dump.field("dcim.devicetype", fields.get("device_type"), "slug") or "device"
        names[pk] = text(fields.get("name"), 100) or f"{slug}-{pk}"
    seen = Counter(names.values())
    for pk, name in names.items():
        if seen[name] > 1:
            site = dump.field("dcim.site", devices[pk].get("site"), "slug") or "site"
            names[pk] = f"{name}.{site}"[:90] + ("" if seen[f"{name}.{site}"] == 0 else f"-{pk}")
            seen[f"{name}.{site}"] += 1
    return names


def device_name(dump: Dump, pk: Any) -> str | None:
    return dump.derived("device_names", _device_names).get(pk)


def _templates(dump: Dump) -> dict[tuple[str, Any], dict[str, list[Record]]]:
    out: dict[tuple[str, Any], dict[str, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for model, key in TEMPLATE_MODELS.items():
        for fields in dump.all(model).values():
            item = _template_item(dump, model, fields)
            if fields.get("device_type") is not None:
                out[("dcim.devicetype", fields["device_type"])][key].append(item)
            elif fields.get("module_type") is not None:
                out[("dcim.moduletype", fields["module_type"])][key].append(item)
    return out


def _template_item(dump: Dump, model: str, fields: Record) -> Record:
    item: Record = {
        "name": text(fields.get("name"), 100),
        "label": text(fields.get("label"), 100),
        "description": text(fields.get("description")),
    }
    if model == "dcim.interfacetemplate":
        item.update(
            type=fields.get("type"),
            mgmt_only=bool(fields.get("mgmt_only")),
            enabled=fields.get("enabled", True),
            poe_mode=fields.get("poe_mode") or None,
            poe_type=fields.get("poe_type") or None,
        )
    elif model in ("dcim.modulebaytemplate",):
        item["position"] = text(fields.get("position"), 30)
    elif model == "dcim.inventoryitemtemplate":
        item["manufacturer"] = dump.field("dcim.manufacturer", fields.get("manufacturer"))
        item["part_id"] = fields.get("part_id") or None
    elif model != "dcim.devicebaytemplate":
        item["type"] = fields.get("type") or None
    if model == "dcim.powerporttemplate":
        item.update(
            maximum_draw=fields.get("maximum_draw"), allocated_draw=fields.get("allocated_draw")
        )
    if model == "dcim.poweroutlettemplate":
        item["power_port"] = dump.field("dcim.powerporttemplate", fields.get("power_port"))
        item["feed_leg"] = fields.get("feed_leg") or None
    if model == "dcim.frontporttemplate":
        item["rear_port"] = dump.field("dcim.rearporttemplate", fields.get("rear_port"))
        item["rear_port_position"] = fields.get("rear_port_position") or 1
    if model in ("dcim.frontporttemplate", "dcim.rearporttemplate"):
        item["color"] = fields.get("color") or None
    if model == "dcim.rearporttemplate":
        item["positions"] = fields.get("positions") or 1
    return {k: v for k, v in item.items() if v not in (None, "")}


def templates(dump: Dump, model: str, pk: Any) -> dict[str, list[Record]]:
    found = dump.derived("templates", _templates).get((model, pk), {})
    return {key: sorted(items, key=lambda i: i["name"]) for key, items in found.items()}


# --- organisation ------------------------------------------------------------------------


def _nested(dump: Dump, pk: Any, fields: Record, plan: Plan, model: str, otype: str) -> None:
    """A region or site group: a tree of slugs, each naming its parent by slug."""
    data = {
        "slug": fields.get("slug"),
        "name": text(fields.get("name"), 100),
        "parent": dump.field(model, fields.get("parent"), "slug"),
        "description": text(fields.get("description")),
    }
    plan.add(otype, data, model, pk, (fields.get("slug"),))


@mapper("dcim.region")
def region(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    _nested(dump, pk, fields, plan, "dcim.region", "region")


@mapper("dcim.sitegroup")
def site_group(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    _nested(dump, pk, fields, plan, "dcim.sitegroup", "site_group")


@mapper("dcim.site")
def site(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    data = {
        "code": fields.get("slug"),
        "name": text(fields.get("name"), 100),
        "region": dump.field("dcim.region", fields.get("region"), "slug"),
        "group": dump.field("dcim.sitegroup", fields.get("group"), "slug"),
        "status": choice(fields.get("status"), s.SITE_STATUSES, "active"),
        "latitude": number(fields.get("latitude")),
        "longitude": number(fields.get("longitude")),
        "description": text(fields.get("description")),
        "tags": tags(dump, "dcim.site", pk, fields),
        "custom_fields": custom_values(dump, "dcim.site", fields, plan),
    }
    if fields.get("asn"):  # NetBox 3.x before ASNs became objects
        data["asn"] = fields["asn"]
    plan.add("site", compact(data), "dcim.site", pk, (fields.get("slug"),))


@mapper("dcim.location")
def location(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    site_code = dump.field("dcim.site", fields.get("site"), "slug")
    data = {
        "site": site_code,
        "slug": fields.get("slug"),
        "name": text(fields.get("name"), 100),
        "parent": dump.field("dcim.location", fields.get("parent"), "slug"),
        "status": choice(fields.get("status"), gs.LOCATION_STATUSES, "active"),
        "description": text(fields.get("description")),
    }
    plan.add("location", data, "dcim.location", pk, (site_code, fields.get("slug")))


@mapper("dcim.rack")
def rack(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    status = str(fields.get("status") or "")
    custom = custom_values(dump, "dcim.rack", fields, plan)
    role = dump.field("dcim.rackrole", fields.get("role"))
    if role:
        plan.declare("rack", "rack_role", "Rack role")
        custom["rack_role"] = role
    site_code = dump.field("dcim.site", fields.get("site"), "slug")
    data = {
        "site": site_code,
        "location": dump.field("dcim.location", fields.get("location"), "slug"),
        "name": text(fields.get("name"), 100),
        "u_height": fields.get("u_height") or 42,
        "status": RACK_STATUS.get(status, choice(status, s.RACK_STATUSES, "active")),
        "description": text(fields.get("description")),
        "tags": tags(dump, "dcim.rack", pk, fields),
        "custom_fields": custom,
    }
    plan.add("rack", compact(data), "dcim.rack", pk, (site_code, data["name"]))


@mapper("dcim.manufacturer")
def manufacturer(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    data = {
        "name": text(fields.get("name"), 100),
        "slug": fields.get("slug"),
        "description": text(fields.get("description")),
    }
    plan.add("manufacturer", compact(data), "dcim.manufacturer", pk, (data["name"],))


def _kind_fields(fields: Record) -> Record:
    weight_unit = fields.get("weight_unit") or None
    return {
        "part_number": text(fields.get("part_number"), 100),
        "airflow": choice(fields.get("airflow"), s.AIRFLOWS),
        "weight": number(fields.get("weight")),
        "weight_unit": choice(weight_unit, s.WEIGHT_UNITS),
        "description": text(fields.get("description")),
        "comments": text(fields.get("comments"), 100_000),
    }


@mapper("dcim.devicetype")
def device_type(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    data = {
        "manufacturer": dump.field("dcim.manufacturer", fields.get("manufacturer")),
        "model": text(fields.get("model"), 100),
        "slug": fields.get("slug"),
        "u_height": number(fields.get("u_height")),
        "is_full_depth": fields.get("is_full_depth", True),
        "subdevice_role": fields.get("subdevice_role") or None,
        **_kind_fields(fields),
        "tags": tags(dump, "dcim.devicetype", pk, fields),
        "custom_fields": custom_values(dump, "dcim.devicetype", fields, plan),
    }
    data = compact(data)
    data["is_full_depth"] = bool(fields.get("is_full_depth", True))
    data["templates"] = templates(dump, "dcim.devicetype", pk)
    plan.add("device_model", data, "dcim.devicetype", pk, (fields.get("slug"),))


@mapper("dcim.moduletype")
def module_type(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    maker = dump.field("dcim.manufacturer", fields.get("manufacturer"))
    data = compact(
        {"manufacturer": maker, "model": text(fields.get("model"), 100), **_kind_fields(fields)}
    )
    found = templates(dump, "dcim.moduletype", pk)
    if found.pop("module-bays", None):
        plan.drop("dcim.moduletype: module bays inside modules")
    data["templates"] = found
    plan.add("module_type", data, "dcim.moduletype", pk, (maker, data["model"]))


@mapper("extras.customfield")
def custom_field(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    name = fields.get("name") or ""
    kind = CUSTOM_TYPES.get(fields.get("type") or "text")
    if not _FIELD_NAME.match(name) or kind is None:
        plan.drop(f"extras.customfield: a {fields.get('type')} field or a name Popcorn refuses")
        return
    choices = fields.get("choices")
    if not choices and fields.get("choice_set") is not None:  # NetBox 3.7 and 4.x
        extra = dump.field("extras.customfieldchoiceset", fields["choice_set"], "extra_choices")
        choices = [c[0] if isinstance(c, list) else c for c in extra or []]
    for target in _custom_targets(dump, fields):
        data = {
            "object_type": target,
            "name": name,
            "label": text(fields.get("label"), 100),
            "type": kind,
            "choices": [str(c) for c in choices] if kind == "select" and choices else None,
            "description": text(fields.get("description")),
        }
        plan.add("custom_field", compact(data), "extras.customfield", pk, (target, name))


def _custom_targets(dump: Dump, fields: Record) -> list[str]:
    types = fields.get("object_types") or fields.get("content_types") or []
    found = {CUSTOM_TARGETS.get(dump.content_type(t) or "") for t in types}
    return sorted(t for t in found if t is not None)


# --- devices and their parts -----------------------------------------------------------


def _role(slug: str | None) -> str:
    """One of Popcorn's device roles for a NetBox role slug (the slug itself is kept beside)."""
    if slug in s.DEVICE_ROLES:
        return slug
    for hint, role in ROLE_HINTS:
        if slug and hint in slug:
            return role
    return "server"


def _serials(dump: Dump) -> Counter[str]:
    devices = dump.all("dcim.device").values()
    return Counter(str(f["serial"]) for f in devices if f.get("serial"))


def _address(dump: Dump, pk: Any) -> str | None:
    address = dump.field("ipam.ipaddress", pk, "address")
    return str(address).split("/")[0] if address else None


@mapper("dcim.device")
def device(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    name = device_name(dump, pk)
    role_pk = fields.get("role", fields.get("device_role"))  # 4.x, 3.x
    role_slug = dump.field("dcim.devicerole", role_pk, "slug")
    custom = custom_values(dump, "dcim.device", fields, plan)
    if role_slug and role_slug != _role(role_slug):
        plan.declare("device", "netbox_role", "NetBox role")
        custom["netbox_role"] = role_slug
    serial = fields.get("serial") or None
    if serial and dump.derived("serials", _serials)[serial] > 1:
        plan.drop("dcim.device: a serial shared by several devices (left empty)")
        serial = None
    status = str(fields.get("status") or "")
    data = {
        "name": name,
        "role": _role(role_slug),
        "model": dump.field("dcim.devicetype", fields.get("device_type"), "slug"),
        "site": dump.field("dcim.site", fields.get("site"), "slug"),
        "location": dump.field("dcim.location", fields.get("location"), "slug"),
        "rack": dump.field("dcim.rack", fields.get("rack")),
        "position": number(fields.get("position")),
        "face": fields.get("face") or None,
        "serial": serial,
        "asset_tag": fields.get("asset_tag") or None,
        "platform": text(dump.field("dcim.platform", fields.get("platform")), 100),
        "primary_ip4": _address(dump, fields.get("primary_ip4")),
        "primary_ip6": _address(dump, fields.get("primary_ip6")),
        "status": DEVICE_STATUS.get(status, choice(status, s.DEVICE_STATUSES, "active")),
        "description": text(fields.get("description")),
        "comments": text(fields.get("comments"), 100_000),
        "tags": tags(dump, "dcim.device", pk, fields),
        "custom_fields": custom,
    }
    if data["position"] is not None and data["rack"] is None:
        data["position"] = None
    plan.add("device", compact(data), "dcim.device", pk, (name,))


def _module_name(dump: Dump, pk: Any) -> str | None:
    module = dump.get("dcim.module", pk)
    if module is None:
        return None
    return text(dump.field("dcim.modulebay", module.get("module_bay")), 100) or f"module-{pk}"


@mapper("dcim.modulebay")
def module_bay(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    _bay(dump, pk, fields, plan, "dcim.modulebay")


@mapper("dcim.devicebay")
def device_bay(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    _bay(dump, pk, fields, plan, "dcim.devicebay")


def _bay(dump: Dump, pk: Any, fields: Record, plan: Plan, model: str) -> None:
    kind = "module-bay" if model == "dcim.modulebay" else "device-bay"
    owner = device_name(dump, fields.get("device"))
    data = {
        "device": owner,
        "kind": kind,
        "name": text(fields.get("name"), 100),
        "label": text(fields.get("label"), 100),
        "position": text(fields.get("position"), 30),
        "description": text(fields.get("description")),
        "installed_device": device_name(dump, fields.get("installed_device")),
    }
    plan.add("bay", compact(data), model, pk, (owner, kind, data["name"]))


@mapper("dcim.module")
def module(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    owner = device_name(dump, fields.get("device"))
    mtype = dump.get("dcim.moduletype", fields.get("module_type")) or {}
    maker = dump.field("dcim.manufacturer", mtype.get("manufacturer"))
    name = _module_name(dump, pk)
    data = {
        "device": owner,
        "name": name,
        "kind": "module",
        "bay": dump.field("dcim.modulebay", fields.get("module_bay")),
        "module_type": f"{maker}/{mtype.get('model')}" if mtype else None,
        "manufacturer": maker,
        "part_number": text(mtype.get("part_number"), 100),
        "serial": fields.get("serial") or None,
        "status": "failed" if fields.get("status") == "failed" else "ok",
        "description": text(fields.get("description")),
        "custom_fields": custom_values(dump, "dcim.module", fields, plan),
    }
    plan.add("component", compact(data), "dcim.module", pk, (owner, name))


@mapper("dcim.inventoryitem")
def inventory_item(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    owner = device_name(dump, fields.get("device"))
    role = dump.field("dcim.inventoryitemrole", fields.get("role"), "slug")
    data = {
        "device": owner,
        "name": text(fields.get("name"), 100),
        "label": text(fields.get("label"), 100),
        "kind": choice(role, s.COMPONENT_KINDS, "other"),
        "parent": dump.field("dcim.inventoryitem", fields.get("parent")),
        "manufacturer": dump.field("dcim.manufacturer", fields.get("manufacturer")),
        "part_number": text(fields.get("part_id"), 100),
        "serial": fields.get("serial") or None,
        "description": text(fields.get("description")),
        "custom_fields": custom_values(dump, "dcim.inventoryitem", fields, plan),
    }
    plan.add("component", compact(data), "dcim.inventoryitem", pk, (owner, data["name"]))


uses("dcim.inventoryitemrole")


@mapper("dcim.interface")
def interface(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    owner = device_name(dump, fields.get("device"))
    mac = fields.get("mac_address")
    if mac is None and fields.get("primary_mac_address") is not None:  # NetBox 4.2+
        mac = dump.field("dcim.macaddress", fields["primary_mac_address"], "mac_address")
    data = {
        "device": owner,
        "name": text(fields.get("name"), 100),
        "label": text(fields.get("label"), 100),
        "type": fields.get("type") or "other",
        "speed": fields.get("speed"),
        "mgmt_only": bool(fields.get("mgmt_only")),
        "enabled": fields.get("enabled", True),
        "mac_address": mac,
        "mtu": fields.get("mtu"),
        "module": _module_name(dump, fields.get("module")),
        "description": text(fields.get("description")),
    }
    data = compact(data)
    data["mgmt_only"], data["enabled"] = bool(fields.get("mgmt_only")), fields.get("enabled", True)
    plan.add("interface", data, "dcim.interface", pk, (owner, data["name"]))


def _port(dump: Dump, pk: Any, fields: Record, plan: Plan, model: str) -> None:
    kind = PORT_MODELS[model]
    owner = device_name(dump, fields.get("device"))
    data = {
        "device": owner,
        "kind": kind,
        "name": text(fields.get("name"), 100),
        "label": text(fields.get("label"), 100),
        "type": fields.get("type") or None,
        "description": text(fields.get("description")),
        "maximum_draw": fields.get("maximum_draw"),
        "allocated_draw": fields.get("allocated_draw"),
        "feed_leg": fields.get("feed_leg") or None,
        "positions": fields.get("positions") if kind == "rear-port" else None,
        "module": _module_name(dump, fields.get("module")),
    }
    if kind == "front-port":
        data["rear_port"] = dump.field("dcim.rearport", fields.get("rear_port"))
        data["rear_port_position"] = fields.get("rear_port_position")
    if kind == "power-outlet":
        data["power_port"] = dump.field("dcim.powerport", fields.get("power_port"))
    plan.add("port", compact(data), model, pk, (owner, kind, data["name"]))


def _port_mapper(model: str) -> None:
    @mapper(model)
    def port(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
        _port(dump, pk, fields, plan, model)


for _model in PORT_MODELS:
    _port_mapper(_model)


# --- cables ------------------------------------------------------------------------------


def _terminations(dump: Dump) -> dict[Any, dict[str, list[tuple[str, Any]]]]:
    out: dict[Any, dict[str, list[tuple[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for pk in sorted(dump.all("dcim.cabletermination"), key=lambda p: (p is None, str(p))):
        fields = dump.all("dcim.cabletermination")[pk]
        model = dump.content_type(fields.get("termination_type"))
        if model:
            out[fields.get("cable")][str(fields.get("cable_end", "")).upper()].append(
                (model, fields.get("termination_id"))
            )
    return out


def cable_end(dump: Dump, model: str, pk: Any) -> Record | None:
    """A cable end as LinkIn fields (`device`, `name`, `kind`); None if Popcorn has no such end."""
    if model == "dcim.interface" or model in PORT_MODELS:
        record = dump.get(model, pk)
        if record is None:
            return None
        kind = "interface" if model == "dcim.interface" else PORT_MODELS[model]
        return {
            "device": device_name(dump, record.get("device")),
            "name": text(record.get("name"), 100),
            "kind": kind,
        }
    return None


@mapper("dcim.cable")
def cable(dump: Dump, pk: Any, fields: Record, plan: Plan) -> None:
    if "termination_a_type" in fields:  # NetBox before 3.3: one end each on the cable
        ends = {
            "A": [
                (dump.content_type(fields["termination_a_type"]), fields.get("termination_a_id"))
            ],
            "B": [
                (
                    dump.content_type(fields.get("termination_b_type")),
                    fields.get("termination_b_id"),
                )
            ],
        }
    else:
        ends = dump.derived("terminations", _terminations).get(pk, {})
    firsts = {side: terms[0] for side, terms in ends.items() if terms and terms[0][0]}
    if len(firsts) == 2 and any(model in LATE_ENDS for model, _ in firsts.values()):
        plan.late_cables.append((pk, fields, firsts))  # type: ignore[arg-type]
        plan.mapped["dcim.cable"] += 1
        return
    found: dict[str, Record] = {}
    for side in ("A", "B"):
        terms = ends.get(side) or []
        if len(terms) > 1:
            plan.drop("dcim.cable: ends beyond the first on a side")
        end = cable_end(dump, terms[0][0] or "", terms[0][1]) if terms else None
        if end is None:
            plan.drop("dcim.cable: an end Popcorn cannot hold (or none)")
            return
        found[side] = end
    a, b = found["A"], found["B"]
    data = {
        **{f"a_{k}": v for k, v in a.items()},
        **{f"b_{k}": v for k, v in b.items()},
        "type": text(fields.get("type"), 100),
        "status": choice(fields.get("status"), s.LINK_STATUSES, "connected"),
        "label": text(fields.get("label"), 100),
        "color": fields.get("color") or "",
        "length": number(fields.get("length")),
        "length_unit": choice(fields.get("length_unit"), s.LENGTH_UNITS),
        "description": text(fields.get("description")),
    }
    key = (a.get("device"), a.get("kind"), a.get("name"))
    plan.add("link", compact(data), "dcim.cable", pk, key)
