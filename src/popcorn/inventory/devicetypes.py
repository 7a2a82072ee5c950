"""Component templates in the community device-type library's format.

A device model (device type) or module type lists what every instance gets:
`interfaces`, `console-ports`, `power-ports`… each a list of templates, as in
the NetBox devicetype-library YAML files. This module validates those lists,
stores them as template rows, turns them back into the library format for
export, instantiates them for a new device or module (`{module}` in a module's
names becomes its bay position), and reads a library checkout's directory tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from popcorn.inventory.schemas import COMPONENT_KINDS, Name, Slug, Text100, Text200, Watts

# Library key -> template kind stored in the database.
TEMPLATE_KEYS: dict[str, str] = {
    "interfaces": "interface",
    "console-ports": "console-port",
    "console-server-ports": "console-server-port",
    "power-ports": "power-port",
    "power-outlets": "power-outlet",
    "front-ports": "front-port",
    "rear-ports": "rear-port",
    "module-bays": "module-bay",
    "device-bays": "device-bay",
    "inventory-items": "inventory-item",
}
KIND_KEYS = {kind: key for key, kind in TEMPLATE_KEYS.items()}
MODULE_TEMPLATE_KEYS = (
    "interfaces",
    "console-ports",
    "console-server-ports",
    "power-ports",
    "power-outlets",
    "front-ports",
    "rear-ports",
)
# Keys of a library device-type file that are not templates and Popcorn does not keep.
IGNORED_KEYS = {
    "front_image",
    "rear_image",
    "is_powered",
    "exclude_from_utilization",
    "default_platform",
    "airflow_note",
}


class _Template(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Name
    label: Text100 = ""
    description: Text200 = ""


class InterfaceTemplate(_Template):
    type: Slug
    mgmt_only: bool = False
    enabled: bool = True
    poe_mode: Literal["pd", "pse"] | None = None
    poe_type: Slug | None = None
    bridge: str | None = None
    rf_role: Slug | None = None


class ConsolePortTemplate(_Template):
    type: Slug | None = None


class PowerPortTemplate(_Template):
    type: Slug | None = None
    maximum_draw: Watts = None
    allocated_draw: Watts = None


class PowerOutletTemplate(_Template):
    type: Slug | None = None
    power_port: Name | None = None
    feed_leg: Literal["A", "B", "C"] | None = None


class FrontPortTemplate(_Template):
    type: Slug
    rear_port: Name
    rear_port_position: Annotated[int, Field(ge=1, le=1024)] = 1
    color: str | None = None


class RearPortTemplate(_Template):
    type: Slug
    positions: Annotated[int, Field(ge=1, le=1024)] = 1
    color: str | None = None
    poe: bool | None = None


class ModuleBayTemplate(_Template):
    position: Text100 = ""


class DeviceBayTemplate(_Template):
    pass


class InventoryItemTemplate(_Template):
    manufacturer: str | None = None
    part_id: str | None = None
    role: str | None = None
    component_type: str | None = None
    component_name: str | None = None


SCHEMAS: dict[str, type[_Template]] = {
    "interface": InterfaceTemplate,
    "console-port": ConsolePortTemplate,
    "console-server-port": ConsolePortTemplate,
    "power-port": PowerPortTemplate,
    "power-outlet": PowerOutletTemplate,
    "front-port": FrontPortTemplate,
    "rear-port": RearPortTemplate,
    "module-bay": ModuleBayTemplate,
    "device-bay": DeviceBayTemplate,
    "inventory-item": InventoryItemTemplate,
}
_COLUMNS = ("name", "label", "type", "mgmt_only", "description")


class TemplateError(ValueError):
    """A bad template; `field` is its path, such as `interfaces[3].type`."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_templates(templates: dict[str, Any], *, module: bool = False) -> list[dict[str, Any]]:
    """Validate library-format template lists into template rows; raises every error found."""
    errors: list[TemplateError] = []
    rows: list[dict[str, Any]] = []
    allowed = MODULE_TEMPLATE_KEYS if module else tuple(TEMPLATE_KEYS)
    names: dict[str, set[str]] = {}
    for key, items in templates.items():
        if key not in allowed:
            errors.append(TemplateError(key, f"unknown template list (use {', '.join(allowed)})"))
            continue
        if items is None:
            continue
        if not isinstance(items, list):
            errors.append(TemplateError(key, "must be a list"))
            continue
        kind = TEMPLATE_KEYS[key]
        seen = names.setdefault(kind, set())
        for index, item in enumerate(items):
            where = f"{key}[{index}]"
            if not isinstance(item, dict):
                errors.append(TemplateError(where, "must be a mapping"))
                continue
            item = {k: v for k, v in item.items() if k != "__line__"}
            try:
                parsed = SCHEMAS[kind].model_validate(item)
            except ValidationError as exc:
                for err in exc.errors():
                    field = ".".join(str(p) for p in err["loc"])
                    errors.append(TemplateError(f"{where}.{field}", _message(err)))
                continue
            if parsed.name in seen:
                errors.append(TemplateError(f"{where}.name", f"duplicate name {parsed.name!r}"))
                continue
            seen.add(parsed.name)
            data = parsed.model_dump(exclude_none=True)
            row: dict[str, Any] = {
                "kind": kind,
                "label": "",
                "type": None,
                "mgmt_only": False,
                "description": "",
            }
            for column in _COLUMNS:
                if column in data:
                    row[column] = data.pop(column)
            defaults = {"enabled": True} if kind == "interface" else {}
            extra = {k: v for k, v in data.items() if defaults.get(k, object()) != v}
            row["extra"] = extra or None
            rows.append(row)
    errors.extend(_check_references(rows))
    if errors:
        raise TemplateErrors(errors)
    return rows


class TemplateErrors(ValueError):
    def __init__(self, errors: list[TemplateError]):
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required"
    return str(err["msg"]).removeprefix("Value error, ")


def _check_references(rows: list[dict[str, Any]]) -> list[TemplateError]:
    rear = {
        r["name"]: (r["extra"] or {}).get("positions", 1) for r in rows if r["kind"] == "rear-port"
    }
    power = {r["name"] for r in rows if r["kind"] == "power-port"}
    errors = []
    for row in rows:
        extra = row["extra"] or {}
        if row["kind"] == "front-port":
            target = extra.get("rear_port")
            if target not in rear:
                errors.append(
                    TemplateError(
                        f"front-ports[{row['name']}].rear_port", f"no rear port {target!r}"
                    )
                )
            elif extra.get("rear_port_position", 1) > rear[target]:
                errors.append(
                    TemplateError(
                        f"front-ports[{row['name']}].rear_port_position",
                        f"rear port {target!r} has only {rear[target]} positions",
                    )
                )
        if row["kind"] == "power-outlet" and extra.get("power_port") not in (None, *power):
            errors.append(
                TemplateError(
                    f"power-outlets[{row['name']}].power_port",
                    f"no power port {extra['power_port']!r}",
                )
            )
    return errors


def templates_to_library(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Template rows back into the library's lists (the export format)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        item: dict[str, Any] = {"name": row["name"]}
        if row.get("label"):
            item["label"] = row["label"]
        if row.get("type") is not None:
            item["type"] = row["type"]
        if row.get("mgmt_only"):
            item["mgmt_only"] = True
        item.update(row.get("extra") or {})
        if row.get("description"):
            item["description"] = row["description"]
        out.setdefault(KIND_KEYS[row["kind"]], []).append(item)
    return out


def split_library_document(doc: dict[str, Any]) -> dict[str, Any]:
    """Move a library file's template lists under `templates` and drop keys Popcorn ignores."""
    data = {k: v for k, v in doc.items() if k not in TEMPLATE_KEYS and k not in IGNORED_KEYS}
    templates = {k: v for k, v in doc.items() if k in TEMPLATE_KEYS}
    if templates:
        data["templates"] = {**(data.get("templates") or {}), **templates}
    return data


_SPEED = re.compile(r"^(\d+(?:\.\d+)?)(g|m)base", re.IGNORECASE)


def speed_from_type(interface_type: str | None) -> int | None:
    """Kbps implied by an interface type such as 100gbase-x-qsfp28 (NetBox's type names)."""
    if not interface_type:
        return None
    match = _SPEED.match(interface_type)
    if not match:
        return None
    number, unit = float(match.group(1)), match.group(2).lower()
    return round(number * (1_000_000 if unit == "g" else 1_000))


def instantiate(
    templates: list[dict[str, Any]], *, module_position: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Input rows (without `device`) for the components a template list creates.

    Returns {"bay": [...], "component": [...], "interface": [...], "port": [...]}
    in the inventory's own input shapes.
    """
    out: dict[str, list[dict[str, Any]]] = {"bay": [], "component": [], "interface": [], "port": []}

    def name(value: str) -> str:
        return value.replace("{module}", module_position) if module_position else value

    for tpl in templates:
        kind, extra = tpl["kind"], tpl.get("extra") or {}
        base = {
            "name": name(tpl["name"]),
            "label": tpl.get("label") or "",
            "description": tpl.get("description") or "",
        }
        if kind == "interface":
            out["interface"].append(
                {
                    **base,
                    "type": tpl.get("type") or "other",
                    "mgmt_only": bool(tpl.get("mgmt_only")),
                    "enabled": extra.get("enabled", True),
                    "speed": speed_from_type(tpl.get("type")),
                }
            )
        elif kind in ("module-bay", "device-bay"):
            bay = {**base, "kind": kind}
            if kind == "module-bay":
                bay["position"] = extra.get("position") or ""
            out["bay"].append(bay)
        elif kind == "inventory-item":
            role = extra.get("role")
            item = {
                **base,
                "kind": role if role in COMPONENT_KINDS else "other",
                "part_number": extra.get("part_id") or "",
            }
            if extra.get("manufacturer"):
                item["manufacturer"] = extra["manufacturer"]
            out["component"].append(item)
        else:
            port: dict[str, Any] = {**base, "kind": kind, "type": tpl.get("type")}
            for key in ("maximum_draw", "allocated_draw", "feed_leg", "positions"):
                if extra.get(key) is not None:
                    port[key] = extra[key]
            if kind == "front-port":
                port["rear_port"] = name(extra["rear_port"])
                port["rear_port_position"] = extra.get("rear_port_position", 1)
            if kind == "power-outlet" and extra.get("power_port"):
                port["power_port"] = name(extra["power_port"])
            out["port"].append(port)
    return out


def iter_library(root: Path) -> Iterator[tuple[str, Path]]:
    """("device_model" | "module_type", file) for every YAML file under a library checkout.

    Files under a `module-types` directory are module types; everything else is
    read as a device type. Hidden directories and non-YAML files are skipped.
    """
    if root.is_file():
        yield _library_kind(root), root
        return
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
            continue
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        yield _library_kind(path), path


def _library_kind(path: Path) -> str:
    return "module_type" if "module-types" in path.parts else "device_model"
