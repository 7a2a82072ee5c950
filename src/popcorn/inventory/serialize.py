"""Inventory objects as the API returns them and as exports write them.

References are shown by natural key (site code, model slug, device name)
beside their ids, resolved with one query per referenced table for a whole
page or export chunk. The export shape is exactly the import shape, so an
exported file re-imports with nothing changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.inventory import models as m
from popcorn.inventory.bulk import TYPES

LABELS: dict[str, Any] = {
    "region": m.Region.slug,
    "site_group": m.SiteGroup.slug,
    "site": m.Site.code,
    "location": m.Location.slug,
    "rack": m.Rack.name,
    "manufacturer": m.Manufacturer.name,
    "device_model": m.DeviceModel.slug,
    "device": m.Device.name,
    "component": m.Component.name,
    "bay": m.Bay.name,
    "port": m.Port.name,
    "interface": m.Interface.name,
}


class Names:
    """id -> natural key, loaded on demand for the ids a page or export needs."""

    def __init__(self, session: Session):
        self.session = session
        self.cache: dict[str, dict[int, Any]] = {}

    def load(self, otype: str, ids: Iterable[int | None]) -> dict[int, Any]:
        cache = self.cache.setdefault(otype, {})
        wanted = list({i for i in ids if i is not None and i not in cache})
        for start in range(0, len(wanted), 5000):
            chunk = wanted[start : start + 5000]
            if otype == "module_type":
                stmt: Any = (
                    select(m.ModuleType.id, m.Manufacturer.name, m.ModuleType.model)
                    .join(m.Manufacturer, m.Manufacturer.id == m.ModuleType.manufacturer_id)
                    .where(m.ModuleType.id.in_(chunk))
                )
                for ident, maker, model in self.session.execute(stmt):
                    cache[ident] = f"{maker}/{model}"
                continue
            if otype in ("interface", "port"):
                model = TYPES[otype].model
                kind = model.kind if otype == "port" else None
                columns = [model.id, m.Device.name, model.name]
                if kind is not None:
                    columns.append(kind)
                stmt = (
                    select(*columns)
                    .join(m.Device, m.Device.id == model.device_id)
                    .where(model.id.in_(chunk))
                )
                for found in self.session.execute(stmt):
                    cache[found[0]] = (found[1], found[2], found[3] if kind is not None else otype)
                continue
            column = LABELS[otype]
            table = column.class_
            for ident, label in self.session.execute(
                select(table.id, column).where(table.id.in_(chunk))
            ):
                cache[ident] = label
        return cache

    def preload(self, otype: str) -> None:
        """Every row of a table at once, for exports that touch most of it."""
        column = LABELS[otype]
        table = column.class_
        cache = self.cache.setdefault(otype, {})
        for ident, label in self.session.execute(select(table.id, column)):
            cache[ident] = label


def _columns(obj: Any, otype: str) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    return {c.key: getattr(obj, c.key) for c in TYPES[otype].table.columns}


def read(
    session: Session, otype: str, objects: Iterable[Any], names: Names | None = None
) -> list[dict[str, Any]]:
    """API dicts (the `*Read` schemas) for a list of ORM objects or row mappings."""
    rows = [_columns(o, otype) for o in objects]
    names = names or Names(session)
    shape = _SHAPES[otype]
    return shape(session, rows, names)


def _ref(rows: list[dict[str, Any]], names: Names, column: str, otype: str, out: str) -> None:
    found = names.load(otype, (r[column] for r in rows))
    for row in rows:
        value = row[column]
        row[out] = None if value is None else found.get(value)


def _region(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "parent_id", "region", "parent")
    return rows


def _site_group(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "parent_id", "site_group", "parent")
    return rows


def _site(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "region_id", "region", "region")
    _ref(rows, names, "group_id", "site_group", "group")
    for row in rows:
        row["custom_fields"] = row["custom_fields"] or {}
    return rows


def _location(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "site_id", "site", "site")
    _ref(rows, names, "parent_id", "location", "parent")
    return rows


def _rack(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "site_id", "site", "site")
    _ref(rows, names, "location_id", "location", "location")
    for row in rows:
        row["custom_fields"] = row["custom_fields"] or {}
    return rows


def _plain(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    return rows


def _templates(session: Session, otype: str, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    table = m.ComponentTemplate.__table__
    column = table.c[f"{otype}_id"]
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        stmt = (
            select(
                column.label("owner"),
                table.c.kind,
                table.c.name,
                table.c.label,
                table.c.type,
                table.c.mgmt_only,
                table.c.description,
                table.c.extra,
            )
            .where(column.in_(chunk))
            .order_by(table.c.id)
        )
        for found in session.execute(stmt).mappings():
            row = dict(found)
            out[row.pop("owner")].append(row)
    return out


def _device_model(
    session: Session, rows: list[dict[str, Any]], names: Names
) -> list[dict[str, Any]]:
    from popcorn.inventory import devicetypes  # its template schemas: only types' rows use them

    _ref(rows, names, "manufacturer_id", "manufacturer", "manufacturer")
    templates = _templates(session, "device_model", [r["id"] for r in rows])
    for row in rows:
        row["custom_fields"] = row["custom_fields"] or {}
        row["templates"] = devicetypes.templates_to_library(templates[row["id"]])
    return rows


def _module_type(
    session: Session, rows: list[dict[str, Any]], names: Names
) -> list[dict[str, Any]]:
    from popcorn.inventory import devicetypes

    _ref(rows, names, "manufacturer_id", "manufacturer", "manufacturer")
    templates = _templates(session, "module_type", [r["id"] for r in rows])
    for row in rows:
        row["templates"] = devicetypes.templates_to_library(templates[row["id"]])
    return rows


def _device(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "device_model_id", "device_model", "model")
    _ref(rows, names, "site_id", "site", "site")
    _ref(rows, names, "location_id", "location", "location")
    _ref(rows, names, "rack_id", "rack", "rack")
    for row in rows:
        row["model_id"] = row["device_model_id"]
        row["custom_fields"] = row["custom_fields"] or {}
    return rows


def _component(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "device_id", "device", "device")
    _ref(rows, names, "parent_id", "component", "parent")
    _ref(rows, names, "bay_id", "bay", "bay")
    _ref(rows, names, "module_type_id", "module_type", "module_type")
    _ref(rows, names, "manufacturer_id", "manufacturer", "manufacturer")
    for row in rows:
        row["custom_fields"] = row["custom_fields"] or {}
    return rows


def _bay(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "device_id", "device", "device")
    _ref(rows, names, "installed_device_id", "device", "installed_device")
    return rows


def _interface(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "device_id", "device", "device")
    _ref(rows, names, "module_id", "component", "module")
    return rows


def _port(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    _ref(rows, names, "device_id", "device", "device")
    _ref(rows, names, "module_id", "component", "module")
    peers = names.load("port", (r["peer_id"] for r in rows))
    for row in rows:
        peer = peers.get(row["peer_id"]) if row["peer_id"] is not None else None
        row["rear_port"] = peer[1] if peer and row["kind"] == "front-port" else None
        row["rear_port_position"] = row["peer_position"] if row["kind"] == "front-port" else None
        row["power_port"] = peer[1] if peer and row["kind"] == "power-outlet" else None
    return rows


def _link(session: Session, rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    # a cable may end on a circuit termination or a power feed: IPAM's tables load here,
    # not with every list
    from popcorn.inventory.ipam import reads as ipam_reads

    for side in ("a", "b"):
        for end_type in ("interface", "port"):
            ends = names.load(
                end_type, (r[f"{side}_id"] for r in rows if r[f"{side}_type"] == end_type)
            )
            for row in rows:
                if row[f"{side}_type"] == end_type:
                    device, name, kind = ends.get(row[f"{side}_id"], (None, None, end_type))
                    row[f"{side}_device"], row[f"{side}_name"], row[f"{side}_kind"] = (
                        device,
                        name,
                        kind,
                    )
        for end_type in ("circuit_termination", "power_feed"):
            labels = ipam_reads.end_names(
                session, end_type, (r[f"{side}_id"] for r in rows if r[f"{side}_type"] == end_type)
            )
            for row in rows:
                if row[f"{side}_type"] == end_type:
                    row[f"{side}_device"] = None
                    row[f"{side}_name"] = labels.get(row[f"{side}_id"])
                    row[f"{side}_kind"] = end_type
    return rows


_SHAPES = {
    "custom_field": _plain,
    "region": _region,
    "site_group": _site_group,
    "manufacturer": _plain,
    "site": _site,
    "location": _location,
    "rack": _rack,
    "device_model": _device_model,
    "module_type": _module_type,
    "device": _device,
    "bay": _bay,
    "component": _component,
    "interface": _interface,
    "port": _port,
    "link": _link,
}


def export_row(otype: str, row: dict[str, Any], *, compact: bool) -> dict[str, Any]:
    """An API dict cut down to the import shape; `compact` drops empty values."""
    fields = [f for f in TYPES[otype].schema.model_fields if f != "id"]
    out = {f: row.get(f) for f in fields}
    if compact:
        out = {k: v for k, v in out.items() if v not in (None, "", [], {})}
        if otype == "interface" and out.get("enabled") is True:
            del out["enabled"]
        for flag in ("mgmt_only", "required"):
            if out.get(flag) is False:
                del out[flag]
    if otype in ("device_model", "module_type"):
        templates = out.pop("templates", None) or {}
        out.update(templates)
    return out


def brief(otype: str, row: dict[str, Any]) -> dict[str, Any]:
    keys = BRIEF[otype]
    return {k: row.get(k) for k in keys}


BRIEF: dict[str, tuple[str, ...]] = {
    "custom_field": ("id", "object_type", "name"),
    "region": ("id", "slug", "name"),
    "site_group": ("id", "slug", "name"),
    "manufacturer": ("id", "slug", "name"),
    "site": ("id", "code", "name", "status"),
    "location": ("id", "site", "slug", "name"),
    "rack": ("id", "site", "name"),
    "device_model": ("id", "slug", "manufacturer", "model"),
    "module_type": ("id", "manufacturer", "model"),
    "device": ("id", "name", "status", "site"),
    "bay": ("id", "device", "kind", "name"),
    "component": ("id", "device", "name", "kind", "status"),
    "interface": ("id", "device", "name"),
    "port": ("id", "device", "kind", "name"),
    "link": ("id", "a_device", "a_name", "b_device", "b_name"),
}
