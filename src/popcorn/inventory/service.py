"""The inventory's behaviour: objects, lifecycle, imports and exports, traces, reports.

Views, the CLI and other domains call these functions; none of them knows
Flask or click. Every change goes through `popcorn.inventory.bulk`, so a
single API create, a CLI update and a 100,000-row import obey the same rules
and leave the same audit records and events.

Stable functions for other domains (keep their signatures):

- `devices_for_scope(session=, site=, region=, role=, device=, status=)`: the
  devices behind an alert, a site or a region (regions include sub-regions).
- `get_device(session=, ref=)`: a device by id or name.
- `set_device_status(session=, ref=, status=, reason=)`: a lifecycle move;
  emits `inventory.device.status_changed`.
- `mark_component_failed(session=, device=, component=, reason=)`: emits
  `inventory.component.failed`.
- `site_capacity(session=, site=, region=, status=)`: throughput and storage
  per site over active devices.
- `record_agent_heartbeat(session=, device=, url=, version=, actions=)`: the
  Bolt agent on a device checked in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.orm import Session, selectinload

from popcorn.audit import AuditRecord, record_change, records_for
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.inventory import bulk, formats, search, serialize
from popcorn.inventory import models as m
from popcorn.inventory import schemas as s
from popcorn.inventory.bulk import TYPES, BatchResult, Row, resolve_type
from popcorn.listing import (
    ListParams,
    PageResult,
    encode_cursor,
    filter_clauses,
    paginate,
    parse_list_params,
)
from popcorn.lookup import parse_id
from popcorn.outbox import emit

Progress = Callable[[int, int, str], None]

# --- looking objects up --------------------------------------------------------

_KEY_COLUMNS: dict[str, tuple[Any, ...]] = {
    "region": (m.Region.slug, m.Region.name),
    "site": (m.Site.code,),
    "manufacturer": (m.Manufacturer.slug, m.Manufacturer.name),
    "device_model": (m.DeviceModel.slug,),
    "device": (m.Device.name,),
}


def get_object(*, session: Session, otype: str, ref: int | str) -> Any:
    """An object by id, or (for top-level types) by its natural key."""
    otype = resolve_type(otype)
    model = TYPES[otype].model
    text = str(ref).strip()
    found = None
    if text.isdigit():
        found = session.get(model, int(text))
    elif otype == "module_type":
        maker, _, model_name = text.partition("/")
        found = session.scalar(
            select(m.ModuleType)
            .join(m.Manufacturer, m.Manufacturer.id == m.ModuleType.manufacturer_id)
            .where(or_(m.Manufacturer.name == maker, m.Manufacturer.slug == maker))
            .where(m.ModuleType.model == model_name)
        )
    else:
        for column in _KEY_COLUMNS.get(otype, ()):
            found = session.scalar(select(model).where(column == text))
            if found is not None:
                break
    if found is None:
        raise NotFound(f"no {TYPES[otype].label} {text!r}", details={"ref": text})
    return found


def read_one(*, session: Session, otype: str, obj: Any) -> dict[str, Any]:
    """One object as the API shows it (its `*Read` schema, JSON-ready)."""
    return shape(otype, serialize.read(session, otype, [obj]), {})[0]


def get_device(*, session: Session, ref: int | str) -> m.Device:
    """A device by id or name, with its site and model loaded."""
    text = str(ref).strip()
    stmt = select(m.Device).options(
        selectinload(m.Device.site), selectinload(m.Device.device_model)
    )
    ident = parse_id(ref)
    device = session.scalar(stmt.where(m.Device.name == text)) if ident is None else None
    if ident is not None:
        device = session.scalar(stmt.where(m.Device.id == ident))
    if device is None:
        raise NotFound(f"no device {text!r}", details={"device": text})
    return device


# --- create, update, delete ------------------------------------------------------


def create_object(*, session: Session, otype: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Create one object (a device also gets its model's components)."""
    otype = resolve_type(otype)
    ident = bulk.single(session, otype, {k: v for k, v in data.items() if k != "id"}, mode="create")
    return read_one(session=session, otype=otype, obj=session.get(TYPES[otype].model, ident))


def update_object(
    *, session: Session, otype: str, ref: int | str, data: Mapping[str, Any], reason: str = ""
) -> dict[str, Any]:
    """Change the given fields of one object; the rest stay as they are."""
    otype = resolve_type(otype)
    obj = get_object(session=session, otype=otype, ref=ref)
    ident = bulk.single(session, otype, {**data, "id": obj.id}, mode="update", reason=reason)
    session.expire(obj)
    return read_one(session=session, otype=otype, obj=session.get(TYPES[otype].model, ident))


def bulk_apply(*, session: Session, otype: str, items: Sequence[Any], mode: str) -> BatchResult:
    """Create or update many objects of one type, all or nothing (the API's bulk calls)."""
    otype = resolve_type(otype)
    if not isinstance(items, list) or not items:
        raise InvalidInput("expected a non-empty JSON list of objects")
    rows = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            rows.append(Row({}, None, f"[{index}]", problem="expected an object"))
            continue
        rows.append(Row(dict(item), None, f"[{index}]"))
    return bulk.apply(session, {otype: rows}, mode=mode, source="api bulk")


_BLOCKERS: dict[str, list[tuple[Any, str]]] = {
    "region": [(m.Region.parent_id, "regions"), (m.Site.region_id, "sites")],
    "site": [(m.Device.site_id, "devices"), (m.Rack.site_id, "racks")],
    "rack": [(m.Device.rack_id, "devices")],
    "manufacturer": [
        (m.DeviceModel.manufacturer_id, "device models"),
        (m.ModuleType.manufacturer_id, "module types"),
        (m.Component.manufacturer_id, "components"),
    ],
    "device_model": [(m.Device.device_model_id, "devices")],
    "module_type": [(m.Component.module_type_id, "components")],
}


def delete_objects(*, session: Session, otype: str, refs: Sequence[int | str]) -> int:
    """Delete objects, all or nothing; parts of a device go with it, cables with their ends."""
    otype = resolve_type(otype)
    if not refs:
        raise InvalidInput("nothing to delete")
    missing, objects = [], []
    for ref in refs:
        try:
            objects.append(get_object(session=session, otype=otype, ref=ref))
        except NotFound:
            missing.append(str(ref))
    if missing:
        raise NotFound(
            f"no {TYPES[otype].label} {', '.join(missing)}", details={"missing": missing}
        )
    ids = [o.id for o in objects]
    for column, what in _BLOCKERS.get(otype, []):
        used = session.scalar(select(func.count()).where(column.in_(ids)))
        if used:
            raise Conflict(
                f"{TYPES[otype].label} still has {used} {what}: delete or move them first",
                details={"in_use_by": what, "count": used},
            )
    table = TYPES[otype].table
    before = [dict(r) for r in session.execute(select(table).where(table.c.id.in_(ids))).mappings()]
    devices = _affected_devices(session, otype, ids)
    sites = dict(session.execute(select(m.Site.id, m.Site.code)).all()) if otype == "device" else {}
    session.execute(delete(table).where(table.c.id.in_(ids)))
    if otype in bulk.TAGGED:
        session.execute(
            delete(m.Tagging).where(m.Tagging.object_type == otype, m.Tagging.object_id.in_(ids))
        )
    if otype in ("interface", "port", "component"):
        _drop_orphan_links(session, devices)
    small = len(before) <= bulk.PER_OBJECT_LIMIT
    for row in before:
        if small:
            record_change(session, "delete", otype, row["id"], before=bulk.jsonable(row))
            emit(
                session,
                f"inventory.{otype}.deleted",
                otype,
                row["id"],
                {k: row[k] for k in ("name", "code", "slug", "model") if k in row},
            )
        if otype == "device":
            emit(
                session,
                "inventory.device.removed_from_site",
                "device",
                row["id"],
                {"device": row["name"], "site": sites.get(row["site_id"])},
            )
    if not small:
        summary = {"deleted": {TYPES[otype].plural: len(before)}}
        record_change(session, "delete", "import", "bulk delete", after=summary)
        emit(session, "inventory.import.completed", "import", "bulk delete", summary)
    return len(before)


def _affected_devices(session: Session, otype: str, ids: list[int]) -> list[int]:
    if otype not in ("interface", "port", "component"):
        return []
    model = TYPES[otype].model
    return list(session.scalars(select(model.device_id).where(model.id.in_(ids)).distinct()))


def _drop_orphan_links(session: Session, device_ids: list[int]) -> None:
    """Cables whose end was deleted (directly or with a module) go too."""
    if not device_ids:
        return
    links = session.execute(
        select(m.Link.id, m.Link.a_type, m.Link.a_id, m.Link.b_type, m.Link.b_id).where(
            or_(m.Link.a_device_id.in_(device_ids), m.Link.b_device_id.in_(device_ids))
        )
    ).all()
    ends: dict[str, set[int]] = {"interface": set(), "port": set()}
    for _, a_type, a_id, b_type, b_id in links:
        ends[a_type].add(a_id)
        ends[b_type].add(b_id)
    alive = {
        end_type: set(
            session.scalars(
                select(TYPES[end_type].model.id).where(TYPES[end_type].model.id.in_(list(found)))
            )
        )
        for end_type, found in ends.items()
    }
    gone = [
        link_id
        for link_id, a_type, a_id, b_type, b_id in links
        if a_id not in alive[a_type] or b_id not in alive[b_type]
    ]
    if gone:
        session.execute(delete(m.Link).where(m.Link.id.in_(gone)))


# --- lists and filters ----------------------------------------------------------

_DIRECT: dict[str, dict[str, Any]] = {
    "custom_field": {
        "id": m.CustomField.id,
        "object_type": m.CustomField.object_type,
        "name": m.CustomField.name,
        "type": m.CustomField.type,
    },
    "region": {
        "id": m.Region.id,
        "slug": m.Region.slug,
        "name": m.Region.name,
        "parent_id": m.Region.parent_id,
    },
    "manufacturer": {
        "id": m.Manufacturer.id,
        "slug": m.Manufacturer.slug,
        "name": m.Manufacturer.name,
    },
    "site": {
        "id": m.Site.id,
        "code": m.Site.code,
        "name": m.Site.name,
        "kind": m.Site.kind,
        "status": m.Site.status,
        "country": m.Site.country,
        "city": m.Site.city,
        "asn": m.Site.asn,
        "latitude": m.Site.latitude,
        "longitude": m.Site.longitude,
        "created_at": m.Site.created_at,
        "updated_at": m.Site.updated_at,
    },
    "rack": {
        "id": m.Rack.id,
        "site_id": m.Rack.site_id,
        "name": m.Rack.name,
        "status": m.Rack.status,
        "u_height": m.Rack.u_height,
    },
    "device_model": {
        "id": m.DeviceModel.id,
        "slug": m.DeviceModel.slug,
        "model": m.DeviceModel.model,
        "manufacturer_id": m.DeviceModel.manufacturer_id,
        "part_number": m.DeviceModel.part_number,
        "u_height": m.DeviceModel.u_height,
        "airflow": m.DeviceModel.airflow,
        "is_full_depth": m.DeviceModel.is_full_depth,
    },
    "module_type": {
        "id": m.ModuleType.id,
        "model": m.ModuleType.model,
        "manufacturer_id": m.ModuleType.manufacturer_id,
        "part_number": m.ModuleType.part_number,
    },
    "device": {
        "id": m.Device.id,
        "name": m.Device.name,
        "role": m.Device.role,
        "status": m.Device.status,
        "serial": m.Device.serial,
        "asset_tag": m.Device.asset_tag,
        "platform": m.Device.platform,
        "os_version": m.Device.os_version,
        "primary_ip4": m.Device.primary_ip4,
        "primary_ip6": m.Device.primary_ip6,
        "site_id": m.Device.site_id,
        "model_id": m.Device.device_model_id,
        "rack_id": m.Device.rack_id,
        "position": m.Device.position,
        "face": m.Device.face,
        "throughput_gbps": m.Device.throughput_gbps,
        "storage_tb": m.Device.storage_tb,
        "agent_url": m.Device.agent_url,
        "agent_last_seen": m.Device.agent_last_seen,
        "created_at": m.Device.created_at,
        "updated_at": m.Device.updated_at,
    },
    "bay": {"id": m.Bay.id, "device_id": m.Bay.device_id, "kind": m.Bay.kind, "name": m.Bay.name},
    "component": {
        "id": m.Component.id,
        "device_id": m.Component.device_id,
        "kind": m.Component.kind,
        "name": m.Component.name,
        "status": m.Component.status,
        "serial": m.Component.serial,
        "part_number": m.Component.part_number,
        "firmware": m.Component.firmware,
        "install_date": m.Component.install_date,
        "eol_date": m.Component.eol_date,
        "parent_id": m.Component.parent_id,
        "bay_id": m.Component.bay_id,
        "updated_at": m.Component.updated_at,
    },
    "interface": {
        "id": m.Interface.id,
        "device_id": m.Interface.device_id,
        "name": m.Interface.name,
        "type": m.Interface.type,
        "speed": m.Interface.speed,
        "mgmt_only": m.Interface.mgmt_only,
        "enabled": m.Interface.enabled,
        "mac_address": m.Interface.mac_address,
        "link_id": m.Interface.link_id,
        "module_id": m.Interface.module_id,
    },
    "port": {
        "id": m.Port.id,
        "device_id": m.Port.device_id,
        "kind": m.Port.kind,
        "name": m.Port.name,
        "type": m.Port.type,
        "link_id": m.Port.link_id,
    },
    "link": {
        "id": m.Link.id,
        "type": m.Link.type,
        "status": m.Link.status,
        "label": m.Link.label,
        "a_device_id": m.Link.a_device_id,
        "b_device_id": m.Link.b_device_id,
    },
}

# Filters through a join: name -> (column, joins as (entity, on-clause) in order).
_SITE_OF_DEVICE = (m.Site, m.Site.id == m.Device.site_id)
_MODEL_OF_DEVICE = (m.DeviceModel, m.DeviceModel.id == m.Device.device_model_id)
_JOINED: dict[str, dict[str, tuple[Any, list[tuple[Any, Any]]]]] = {
    "rack": {"site": (m.Site.code, [(m.Site, m.Site.id == m.Rack.site_id)])},
    "device_model": {
        "manufacturer": (
            m.Manufacturer.slug,
            [(m.Manufacturer, m.Manufacturer.id == m.DeviceModel.manufacturer_id)],
        )
    },
    "module_type": {
        "manufacturer": (
            m.Manufacturer.slug,
            [(m.Manufacturer, m.Manufacturer.id == m.ModuleType.manufacturer_id)],
        )
    },
    "device": {
        "site": (m.Site.code, [_SITE_OF_DEVICE]),
        "model": (m.DeviceModel.slug, [_MODEL_OF_DEVICE]),
        "manufacturer": (
            m.Manufacturer.slug,
            [
                _MODEL_OF_DEVICE,
                (m.Manufacturer, m.Manufacturer.id == m.DeviceModel.manufacturer_id),
            ],
        ),
        "rack": (m.Rack.name, [(m.Rack, m.Rack.id == m.Device.rack_id)]),
    },
}
for _child in ("bay", "component", "interface", "port"):
    _model = TYPES[_child].model
    _on_device = (m.Device, m.Device.id == _model.device_id)
    _JOINED[_child] = {
        "device": (m.Device.name, [_on_device]),
        "site": (m.Site.code, [_on_device, (m.Site, m.Site.id == m.Device.site_id)]),
        "role": (m.Device.role, [_on_device]),
    }
for _child in ("interface", "port"):
    _model = TYPES[_child].model
    _JOINED[_child]["module"] = (
        m.Component.name,
        [(m.Component, m.Component.id == _model.module_id)],
    )
_JOINED["component"]["manufacturer"] = (
    m.Manufacturer.slug,
    [(m.Manufacturer, m.Manufacturer.id == m.Component.manufacturer_id)],
)

_SEARCH: dict[str, tuple[Any, ...]] = {
    "custom_field": (m.CustomField.name, m.CustomField.label),
    "region": (m.Region.slug, m.Region.name),
    "manufacturer": (m.Manufacturer.name, m.Manufacturer.slug),
    "site": (m.Site.code, m.Site.name, m.Site.city, m.Site.description),
    "rack": (m.Rack.name, m.Rack.description),
    "device_model": (m.DeviceModel.model, m.DeviceModel.slug, m.DeviceModel.part_number),
    "module_type": (m.ModuleType.model, m.ModuleType.part_number),
    "device": (
        m.Device.name,
        m.Device.serial,
        m.Device.asset_tag,
        m.Device.primary_ip4,
        m.Device.description,
    ),
    "bay": (m.Bay.name, m.Bay.label),
    "component": (
        m.Component.name,
        m.Component.serial,
        m.Component.part_number,
        m.Component.description,
    ),
    "interface": (
        m.Interface.name,
        m.Interface.label,
        m.Interface.mac_address,
        m.Interface.description,
    ),
    "port": (m.Port.name, m.Port.label),
    "link": (m.Link.label, m.Link.description),
}


def region_ids(session: Session, refs: Iterable[str | int]) -> set[int]:
    """Ids of the given regions (by id, slug or name) and all regions below them."""
    rows = session.execute(select(m.Region.id, m.Region.slug, m.Region.name, m.Region.parent_id))
    children: dict[int | None, list[int]] = defaultdict(list)
    by_key: dict[str, int] = {}
    for ident, slug, name, parent in rows:
        children[parent].append(ident)
        by_key[str(ident)] = by_key[slug] = ident
        by_key.setdefault(name.lower(), ident)
    out: set[int] = set()
    for ref in refs:
        text = str(ref).strip()
        found = by_key.get(text) or by_key.get(text.lower())
        if found is None:
            raise NotFound(f"no region {text!r}", details={"region": text})
        stack = [found]
        while stack:
            current = stack.pop()
            if current not in out:
                out.add(current)
                stack.extend(children.get(current, []))
    return out


def _custom_columns(session: Session, otype: str) -> dict[str, Any]:
    if otype not in bulk.CUSTOM:
        return {}
    column = TYPES[otype].model.custom_fields
    out: dict[str, Any] = {}
    for decl in session.scalars(select(m.CustomField).where(m.CustomField.object_type == otype)):
        value = column[decl.name]
        if decl.type in ("integer", "decimal"):
            out[f"cf_{decl.name}"] = value.as_float()
        elif decl.type == "boolean":
            out[f"cf_{decl.name}"] = value.as_boolean()
        else:
            out[f"cf_{decl.name}"] = value.as_string()
    return out


def filtered(session: Session, otype: str, params: ListParams) -> Select[Any]:
    """The list query for a type with NetBox-style filters, `tag`, `region` and `q`."""
    model = TYPES[otype].model
    stmt: Select[Any] = select(model)
    filters = dict(params.filters)
    for key in [k for k in filters if k.partition("__")[0] == "tag"]:
        values = filters.pop(key)
        lookup = key.partition("__")[2]
        if otype not in bulk.TAGGED or lookup not in ("", "n"):
            raise InvalidInput(f"unknown filter {key!r}", details={"filter": key})
        for value in (v for raw in values for v in raw.split(",") if v):
            tagged = select(m.Tagging.object_id).where(
                m.Tagging.object_type == otype, m.Tagging.tag == value
            )
            stmt = stmt.where(model.id.not_in(tagged) if lookup else model.id.in_(tagged))
    for key in [k for k in filters if k in ("region", "region_id")]:
        ids = region_ids(session, [v for raw in filters.pop(key) for v in raw.split(",")])
        if otype == "site":
            stmt = stmt.where(m.Site.region_id.in_(ids))
        elif otype in ("device", "rack"):
            stmt = stmt.where(model.site_id.in_(select(m.Site.id).where(m.Site.region_id.in_(ids))))
        else:
            raise InvalidInput(f"unknown filter {key!r}", details={"filter": key})
    if otype == "link" and "device" in filters:
        names = [v for raw in filters.pop("device") for v in raw.split(",")]
        ids_stmt = select(m.Device.id).where(m.Device.name.in_(names))
        stmt = stmt.where(or_(m.Link.a_device_id.in_(ids_stmt), m.Link.b_device_id.in_(ids_stmt)))
    joined = _JOINED.get(otype, {})
    allowed = {**_DIRECT[otype], **{k: v[0] for k, v in joined.items()}}
    if any(k.startswith("cf_") for k in filters):
        allowed.update(_custom_columns(session, otype))
    done: set[Any] = set()
    for key in filters:
        for entity, on in joined.get(key.partition("__")[0], (None, []))[1]:
            if entity not in done:
                stmt = stmt.join(entity, on)
                done.add(entity)
    stmt = stmt.where(*filter_clauses(filters, allowed))
    if params.q:
        indexed = (
            search.device_clause(session.connection(), params.q) if otype == "device" else None
        )
        if indexed is not None:
            stmt = stmt.where(indexed)
        else:
            pattern = f"%{params.q.strip()}%"
            stmt = stmt.where(or_(*[column.ilike(pattern) for column in _SEARCH[otype]]))
    return stmt


def list_objects(*, session: Session, otype: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """One page: `{"items", "count", "next"}`, with `?fields=a,b` or `?brief=1` shapes."""
    otype = resolve_type(otype)
    params = parse_list_params(args)
    result = _page(session, filtered(session, otype, params), params, TYPES[otype].model.id)
    items = serialize.read(session, otype, result.items)
    return {"items": shape(otype, items, args), "count": result.count, "next": result.next}


def _page(session: Session, stmt: Select[Any], params: ListParams, key: Any) -> PageResult:
    """The core's paging, without the count query when the first page is not full."""
    if params.after is not None or params.offset:
        return paginate(session, stmt, params, key=key)
    rows = list(session.scalars(stmt.order_by(key).limit(params.limit + 1)))
    if len(rows) <= params.limit:
        return PageResult(items=rows, count=len(rows), next=None)
    count = int(
        session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    )
    rows = rows[: params.limit]
    return PageResult(items=rows, count=count, next=encode_cursor(rows[-1].id))


def shape(otype: str, items: list[dict[str, Any]], args: Mapping[str, Any]) -> list[dict[str, Any]]:
    brief = str(args.get("brief", "")).lower() in ("1", "true", "yes")
    fields = [f.strip() for f in str(args.get("fields") or "").split(",") if f.strip()]
    read_schema = READ_SCHEMAS[otype]
    if fields:
        unknown = [f for f in fields if f not in read_schema.model_fields]
        if unknown:
            raise InvalidInput(
                f"unknown field(s) {', '.join(unknown)}",
                details={"fields": unknown, "allowed": list(read_schema.model_fields)},
            )
        return [{f: item.get(f) for f in fields} for item in items]
    if brief:
        return [serialize.brief(otype, item) for item in items]
    return [read_schema.model_validate(item).model_dump(mode="json") for item in items]


READ_SCHEMAS: dict[str, type[s.ReadSchema]] = {
    "custom_field": s.CustomFieldRead,
    "region": s.RegionRead,
    "manufacturer": s.ManufacturerRead,
    "site": s.SiteRead,
    "rack": s.RackRead,
    "device_model": s.DeviceModelRead,
    "module_type": s.ModuleTypeRead,
    "device": s.DeviceRead,
    "bay": s.BayRead,
    "component": s.ComponentRead,
    "interface": s.InterfaceRead,
    "port": s.PortRead,
    "link": s.LinkRead,
}


# --- device lifecycle and the functions other domains call -------------------------


def set_device_status(
    *, session: Session, ref: int | str, status: str, reason: str = ""
) -> m.Device:
    """Move a device along its lifecycle; an invalid move is an error naming the allowed ones."""
    device = get_device(session=session, ref=ref)
    if status not in s.DEVICE_STATUSES:
        raise InvalidInput(
            f"status: unknown status {status!r}", details={"allowed": list(s.DEVICE_STATUSES)}
        )
    if device.status != status:
        bulk.single(
            session, "device", {"id": device.id, "status": status}, mode="update", reason=reason
        )
        session.expire(device)
    return get_device(session=session, ref=device.id)


def find_component(*, session: Session, device: int | str, component: int | str) -> m.Component:
    """A component of a device by id, name or serial."""
    owner = get_device(session=session, ref=device)
    text = str(component).strip()
    clauses = [m.Component.name == text, m.Component.serial == text]
    if text.isdigit():
        clauses.append(m.Component.id == int(text))
    found = session.scalars(
        select(m.Component).where(m.Component.device_id == owner.id, or_(*clauses))
    ).all()
    if not found:
        raise NotFound(
            f"device {owner.name!r} has no component {text!r}",
            details={"device": owner.name, "component": text},
        )
    exact = [c for c in found if str(c.id) == text or c.name == text]
    return (exact or found)[0]


def mark_component_failed(
    *, session: Session, device: int | str, component: int | str, reason: str = ""
) -> m.Component:
    """Mark a disk, optic, PSU… failed; emits `inventory.component.failed` once."""
    part = find_component(session=session, device=device, component=component)
    if part.status != "failed":
        bulk.single(
            session, "component", {"id": part.id, "status": "failed"}, mode="update", reason=reason
        )
        session.expire(part)
    found = session.get(m.Component, part.id)
    assert found is not None
    return found


def devices_for_scope(
    *,
    session: Session,
    site: str | int | Sequence[str | int] | None = None,
    region: str | int | Sequence[str | int] | None = None,
    role: str | Sequence[str] | None = None,
    device: str | int | Sequence[str | int] | None = None,
    status: str | Sequence[str] | None = None,
) -> list[m.Device]:
    """Devices matching every given scope (each may be one value or several).

    Sites and devices are given by id or by code/name, regions by id, slug or
    name and include their sub-regions. Unknown sites, regions or devices raise
    NotFound, so a typo in an alert label is not mistaken for "no devices".
    """

    def many(value: Any) -> list[Any]:
        if value is None:
            return []
        return [value] if isinstance(value, str | int) else list(value)

    stmt = select(m.Device).options(
        selectinload(m.Device.site), selectinload(m.Device.device_model)
    )
    if site is not None:
        ids = []
        for ref in many(site):
            text = str(ref)
            found = session.scalar(
                select(m.Site.id).where(
                    m.Site.id == int(text) if text.isdigit() else m.Site.code == text
                )
            )
            if found is None:
                raise NotFound(f"no site {text!r}", details={"site": text})
            ids.append(found)
        stmt = stmt.where(m.Device.site_id.in_(ids))
    if region is not None:
        regions = region_ids(session, many(region))
        stmt = stmt.where(
            m.Device.site_id.in_(select(m.Site.id).where(m.Site.region_id.in_(regions)))
        )
    if device is not None:
        ids = [get_device(session=session, ref=ref).id for ref in many(device)]
        stmt = stmt.where(m.Device.id.in_(ids))
    if role is not None:
        stmt = stmt.where(m.Device.role.in_(many(role)))
    if status is not None:
        stmt = stmt.where(m.Device.status.in_(many(status)))
    return list(session.scalars(stmt.order_by(m.Device.id)))


def site_capacity(
    *,
    session: Session,
    site: str | Sequence[str] | None = None,
    region: str | Sequence[str] | None = None,
    status: str | Sequence[str] = "active",
) -> list[dict[str, Any]]:
    """Per site: device count, throughput (Gbps) and storage (TB), summed over `status` devices."""
    statuses = [status] if isinstance(status, str) else list(status)
    stmt = (
        select(
            m.Site.id,
            m.Site.code,
            m.Site.region_id,
            func.count(m.Device.id),
            func.coalesce(func.sum(m.Device.throughput_gbps), 0.0),
            func.coalesce(func.sum(m.Device.storage_tb), 0.0),
        )
        .select_from(m.Site)
        .outerjoin(m.Device, and_(m.Device.site_id == m.Site.id, m.Device.status.in_(statuses)))
        .group_by(m.Site.id, m.Site.code, m.Site.region_id)
        .order_by(m.Site.code)
    )
    if site is not None:
        codes = [site] if isinstance(site, str) else list(site)
        stmt = stmt.where(m.Site.code.in_(codes))
    if region is not None:
        stmt = stmt.where(
            m.Site.region_id.in_(
                region_ids(session, [region] if isinstance(region, str) else region)
            )
        )
    slugs = dict(session.execute(select(m.Region.id, m.Region.slug)).all())
    return [
        {
            "site": code,
            "site_id": ident,
            "region": slugs.get(region_id) if region_id is not None else None,
            "devices": count,
            "throughput_gbps": round(float(gbps or 0), 3),
            "storage_tb": round(float(tb or 0), 3),
        }
        for ident, code, region_id, count, gbps, tb in session.execute(stmt)
    ]


def record_agent_heartbeat(
    *,
    session: Session,
    device: int | str,
    url: str,
    version: str = "",
    actions: Sequence[str] = (),
) -> m.Device:
    """A Bolt agent on `device` checked in: remember where it listens and when it was seen.

    `agent_last_seen` moves on every beat without an audit record; a new URL,
    version or action list is audited and emits `inventory.device.agent_changed`.
    """
    found = get_device(session=session, ref=device)
    if not url or len(url) > 300:
        raise InvalidInput("url: required, at most 300 characters")
    actions = sorted(set(actions))
    before = {
        "agent_url": found.agent_url,
        "agent_version": found.agent_version,
        "agent_actions": found.agent_actions,
    }
    after = {"agent_url": url, "agent_version": version or None, "agent_actions": actions}
    found.agent_last_seen = utcnow()
    if before != after:
        found.agent_url, found.agent_version, found.agent_actions = url, version or None, actions
        record_change(session, "agent", "device", found.id, before=before, after=after)
        emit(
            session,
            "inventory.device.agent_changed",
            "device",
            found.id,
            {"device": found.name, **after},
        )
    session.flush()
    return found


# --- imports and exports --------------------------------------------------------------


def import_files(
    *,
    session: Session,
    files: Sequence[tuple[str, bytes | str]],
    fmt: str | None = None,
    otype: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Import CSV, JSON or YAML files as one all-or-nothing batch, idempotent on natural keys."""
    sections: dict[str, list[Row]] = {}
    for name, content in files:
        parsed = formats.parse(content, filename=name, fmt=fmt, otype=otype)
        if len(files) > 1:
            formats.mark_source(parsed, name)
        for key in list(parsed):
            _merge(sections, key, parsed.pop(key))
    source = ", ".join(Path(name).name for name, _ in files)[:80] or "import"
    return bulk.apply(
        session, sections, dry_run=dry_run, source=source, summary=True, progress=progress
    )


def _merge(sections: dict[str, list[Row]], key: str, rows: list[Row]) -> None:
    """Add a file's rows to a batch's sections without copying the first file's list."""
    if key in sections:
        sections[key].extend(rows)
    else:
        sections[key] = rows


def import_paths(
    *,
    session: Session,
    paths: Sequence[Path],
    fmt: str | None = None,
    otype: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Import files and device-type library directories together, as one all-or-nothing batch.

    A directory is read as a library checkout: YAML files under `module-types/`
    are module types, the others device types.
    """
    sections: dict[str, list[Row]] = {}
    for path in paths:
        if not path.exists():
            raise NotFound(f"no such file or directory: {path}")
        if path.is_dir():
            parts: Iterable[dict[str, list[Row]]] = (p for _, p in formats.parse_library(path))
            found = False
            for part in parts:
                found = True
                for key in list(part):
                    _merge(sections, key, part.pop(key))
            if not found:
                raise InvalidInput(f"no device-type YAML files under {path}")
            continue
        parsed = formats.parse_path(path, fmt=fmt, otype=otype)
        if len(paths) > 1:
            formats.mark_source(parsed, str(path))
        for key in list(parsed):
            _merge(sections, key, parsed.pop(key))
    source = ", ".join(p.name for p in paths)[:80] or "import"
    return bulk.apply(
        session, sections, dry_run=dry_run, source=source, summary=True, progress=progress
    )


def import_library(
    *, session: Session, root: Path, dry_run: bool = False, progress: Progress | None = None
) -> BatchResult:
    """Import a device-type library checkout (device-types/ and module-types/ trees) at once."""
    return import_paths(session=session, paths=[root], dry_run=dry_run, progress=progress)


def export(
    *,
    session: Session,
    out: TextIO,
    fmt: str,
    otypes: Sequence[str] | None = None,
    args: Mapping[str, Any] | None = None,
) -> int:
    """Write objects in the import shape; returns how many. Filters apply to a single type."""
    fmt = formats.detect_format("", fmt)
    types = [resolve_type(t) for t in otypes] if otypes else list(bulk.ORDER)
    if fmt == "csv" and len(types) != 1:
        raise InvalidInput("a CSV export holds one object type: give the type")
    params = parse_list_params({k: v for k, v in (args or {}).items() if k not in ("limit",)})
    names = serialize.Names(session)
    total = 0
    single = len(types) == 1 and otypes is not None
    if fmt == "json":
        out.write("[" if single else "{")
    for position, otype in enumerate(types):
        custom = sorted(
            session.scalars(select(m.CustomField.name).where(m.CustomField.object_type == otype))
        )
        header = formats.csv_header(otype, custom) if fmt == "csv" else []
        if fmt == "csv":
            import csv

            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
        elif fmt == "json" and not single:
            out.write(("," if position else "") + f"\n{_json(TYPES[otype].plural)}: [")
        wrote_section = False
        first = True
        for chunk in _export_chunks(session, otype, params if len(types) == 1 else None, names):
            if fmt == "yaml" and not single and not wrote_section:
                out.write(f"{TYPES[otype].plural}:\n")
                wrote_section = True
            rows = [serialize.export_row(otype, r, compact=fmt != "csv") for r in chunk]
            total += len(rows)
            if fmt == "csv":
                writer.writerows(formats.csv_line(header, r) for r in rows)
            elif fmt == "json":
                for row in rows:
                    out.write(("\n  " if first else ",\n  ") + _json(row))
                    first = False
            else:
                out.write(formats.yaml_dump([bulk.jsonable(r) for r in rows]))
        if fmt == "json" and not single:
            out.write("\n]")
    if fmt == "json":
        out.write("\n]\n" if single else "\n}\n")
    if fmt == "yaml" and single and total == 0:
        out.write("[]\n")
    return total


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str, ensure_ascii=False)


def _export_chunks(
    session: Session, otype: str, params: ListParams | None, names: serialize.Names
) -> Iterable[list[dict[str, Any]]]:
    model = TYPES[otype].model
    stmt = filtered(session, otype, params) if params is not None else select(model)
    if (
        otype in bulk.CHILDREN
        and (session.scalar(select(func.count()).select_from(m.Device)) or 0) > 20000
    ):
        names.preload("device")
    after = 0
    while True:
        batch = list(session.scalars(stmt.where(model.id > after).order_by(model.id).limit(5000)))
        if not batch:
            return
        after = batch[-1].id
        yield serialize.read(session, otype, batch, names)
        session.expunge_all()


# --- traces ----------------------------------------------------------------------------


def _end(session: Session, end_type: str, end_id: int) -> dict[str, Any]:
    model = TYPES[end_type].model
    row = session.execute(
        select(model, m.Device.name)
        .join(m.Device, m.Device.id == model.device_id)
        .where(model.id == end_id)
    ).first()
    if row is None:
        raise NotFound(f"no {end_type} {end_id}")
    obj, device = row
    kind = obj.kind if end_type == "port" else "interface"
    return {
        "type": end_type,
        "id": obj.id,
        "kind": kind,
        "device": device,
        "device_id": obj.device_id,
        "name": obj.name,
        "link_id": obj.link_id,
        "peer_id": getattr(obj, "peer_id", None),
        "peer_position": getattr(obj, "peer_position", None),
        "positions": getattr(obj, "positions", None),
    }


def _public(end: dict[str, Any]) -> dict[str, Any]:
    return {k: end[k] for k in ("type", "id", "kind", "device", "device_id", "name")}


def trace(
    *, session: Session, device: int | str, name: str, kind: str = "interface"
) -> dict[str, Any]:
    """Follow cables from an interface (or port) to the far end, through patch panels.

    A cable reaching a front port continues from its rear port (keeping the
    position), and one reaching a rear port continues from the front port at
    that position, as NetBox traces do. Ends at an interface, an unconnected
    port, or after 64 hops.
    """
    owner = get_device(session=session, ref=device)
    if kind == "interface":
        end_id = session.scalar(
            select(m.Interface.id).where(
                m.Interface.device_id == owner.id, m.Interface.name == name
            )
        )
        end_type = "interface"
    else:
        end_id = session.scalar(
            select(m.Port.id).where(
                m.Port.device_id == owner.id, m.Port.kind == kind, m.Port.name == name
            )
        )
        end_type = "port"
    if end_id is None:
        raise NotFound(f"device {owner.name!r} has no {kind} {name!r}")
    return trace_from(session=session, end_type=end_type, end_id=end_id)


def trace_from(*, session: Session, end_type: str, end_id: int) -> dict[str, Any]:
    current = _end(session, end_type, end_id)
    origin = _public(current)
    hops: list[dict[str, Any]] = []
    seen = {(end_type, end_id)}
    position: int | None = None
    far: dict[str, Any] | None = None
    for _ in range(64):
        if current["link_id"] is None:
            hops.append({"near": _public(current), "link": None, "far": None})
            far = None
            break
        link = session.get(m.Link, current["link_id"])
        assert link is not None
        mine = (current["type"], current["id"])
        far_type, far_id = (
            (link.b_type, link.b_id)
            if (link.a_type, link.a_id) == mine
            else (link.a_type, link.a_id)
        )
        far = _end(session, far_type, far_id)
        hops.append(
            {
                "near": _public(current),
                "far": _public(far),
                "link": {
                    "id": link.id,
                    "type": link.type,
                    "status": link.status,
                    "label": link.label,
                },
            }
        )
        following = _pass_through(session, far, position)
        if following is None:
            break
        current, position = following
        if (current["type"], current["id"]) in seen:
            break
        seen.add((current["type"], current["id"]))
    destination = (
        _public(far) if far is not None and _pass_through(session, far, position) is None else None
    )
    return {
        "origin": origin,
        "hops": hops,
        "destination": destination,
        "complete": destination is not None,
    }


def _pass_through(
    session: Session, end: dict[str, Any], position: int | None
) -> tuple[dict[str, Any], int | None] | None:
    """The port a signal continues from after reaching `end` (patch panels), if any."""
    if end["kind"] == "front-port" and end["peer_id"] is not None:
        return _end(session, "port", end["peer_id"]), end["peer_position"] or 1
    if end["kind"] == "rear-port":
        if position is None and (end["positions"] or 1) > 1:
            return None  # which strand is unknown: the trace ends at this rear port
        wanted = position or 1
        front = session.scalar(
            select(m.Port.id).where(
                m.Port.kind == "front-port",
                m.Port.peer_id == end["id"],
                func.coalesce(m.Port.peer_position, 1) == wanted,
            )
        )
        if front is not None:
            return _end(session, "port", front), None
    return None


# --- history and journal ------------------------------------------------------------


def history(*, session: Session, otype: str, ref: int | str) -> list[AuditRecord]:
    otype = resolve_type(otype)
    obj = get_object(session=session, otype=otype, ref=ref)
    return records_for(session, otype, obj.id)


def add_journal(
    *, session: Session, otype: str, ref: int | str, comments: str, kind: str = "info"
) -> m.JournalEntry:
    """A note on any object ("replaced PSU-2, RMA 4411"), audited and announced."""
    otype = resolve_type(otype)
    obj = get_object(session=session, otype=otype, ref=ref)
    spec = s.JournalIn(kind=kind, comments=comments)
    entry = m.JournalEntry(
        object_type=otype,
        object_id=obj.id,
        kind=spec.kind,
        comments=spec.comments,
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    session.add(entry)
    session.flush()
    record_change(
        session,
        "create",
        "journal",
        entry.id,
        after={
            "object_type": otype,
            "object_id": obj.id,
            "kind": spec.kind,
            "comments": spec.comments,
        },
    )
    emit(
        session,
        "inventory.journal.created",
        otype,
        obj.id,
        {"kind": spec.kind, "comments": spec.comments, "entry_id": entry.id},
    )
    return entry


def journal(*, session: Session, otype: str, ref: int | str) -> list[m.JournalEntry]:
    otype = resolve_type(otype)
    obj = get_object(session=session, otype=otype, ref=ref)
    stmt = select(m.JournalEntry).where(
        m.JournalEntry.object_type == otype, m.JournalEntry.object_id == obj.id
    )
    return list(session.scalars(stmt.order_by(m.JournalEntry.id)))


# --- reports ------------------------------------------------------------------------

COUNT_BY = ("site", "region", "model", "manufacturer", "status", "role")
# Expected service life in years when a component has an install date but no EOL date.
EXPECTED_LIFE_YEARS: dict[str, float] = {
    "disk": 5,
    "optic": 6,
    "psu": 7,
    "fan": 5,
    "dimm": 8,
    "nic": 7,
    "cpu": 8,
    "gpu": 5,
    "module": 7,
    "other": 7,
}


def device_counts(*, session: Session, by: str, status: str | None = None) -> list[dict[str, Any]]:
    """How many devices per site, region (with sub-regions), model, manufacturer, status or role."""
    if by not in COUNT_BY:
        raise InvalidInput(f"by: one of {', '.join(COUNT_BY)}", details={"by": by})
    where = [m.Device.status == status] if status else []
    if by in ("status", "role"):
        column = getattr(m.Device, by)
        rows = session.execute(select(column, func.count()).where(*where).group_by(column)).all()
        return _counted(rows, by)
    if by == "model":
        stmt = (
            select(m.DeviceModel.slug, func.count())
            .select_from(m.Device)
            .join(m.DeviceModel, m.DeviceModel.id == m.Device.device_model_id)
            .group_by(m.DeviceModel.slug)
        )
        return _counted(session.execute(stmt.where(*where)).all(), by)
    if by == "manufacturer":
        stmt = (
            select(m.Manufacturer.slug, func.count())
            .select_from(m.Device)
            .join(m.DeviceModel, m.DeviceModel.id == m.Device.device_model_id)
            .join(m.Manufacturer, m.Manufacturer.id == m.DeviceModel.manufacturer_id)
            .group_by(m.Manufacturer.slug)
        )
        return _counted(session.execute(stmt.where(*where)).all(), by)
    per_site = session.execute(
        select(m.Device.site_id, func.count()).where(*where).group_by(m.Device.site_id)
    ).all()
    sites = {
        i: (code, region)
        for i, code, region in session.execute(select(m.Site.id, m.Site.code, m.Site.region_id))
    }
    if by == "site":
        return _counted([(sites[i][0], n) for i, n in per_site], by)
    direct: dict[int, int] = defaultdict(int)
    for site_id, n in per_site:
        region = sites[site_id][1]
        if region is not None:
            direct[region] += n
    totals = _roll_up(
        session,
        direct,
        lambda a, b: a + b,
        0,
    )
    return _counted(list(totals.items()), by)


def _counted(rows: Iterable[tuple[Any, int]], by: str) -> list[dict[str, Any]]:
    out = [{by: key, "devices": int(n)} for key, n in rows if n]
    return sorted(out, key=lambda r: (-r["devices"], str(r[by])))


def _roll_up(
    session: Session, direct: dict[int, Any], add: Callable[[Any, Any], Any], zero: Any
) -> dict[str, Any]:
    """Per region slug: its own figure plus all its sub-regions'."""
    regions = session.execute(select(m.Region.id, m.Region.slug, m.Region.parent_id)).all()
    parent = {i: p for i, _, p in regions}
    totals: dict[int, Any] = {}
    for region_id, value in direct.items():
        current: int | None = region_id
        while current is not None:
            totals[current] = add(totals.get(current, zero), value)
            current = parent.get(current)
    slugs = {i: slug for i, slug, _ in regions}
    return {slugs[i]: v for i, v in totals.items()}


def capacity(*, session: Session, by: str = "site", status: str = "active") -> list[dict[str, Any]]:
    """Throughput and storage of `status` devices per site, or per region with sub-regions."""
    per_site = site_capacity(session=session, status=status)
    if by == "site":
        return per_site
    if by != "region":
        raise InvalidInput("by: site or region", details={"by": by})
    region_of = dict(session.execute(select(m.Site.id, m.Site.region_id)).all())
    direct: dict[int, tuple[int, float, float]] = {}
    for row in per_site:
        region = region_of.get(row["site_id"])
        if region is None:
            continue
        old = direct.get(region, (0, 0.0, 0.0))
        direct[region] = (
            old[0] + row["devices"],
            old[1] + row["throughput_gbps"],
            old[2] + row["storage_tb"],
        )
    totals = _roll_up(
        session, direct, lambda a, b: (a[0] + b[0], a[1] + b[1], a[2] + b[2]), (0, 0.0, 0.0)
    )
    return sorted(
        (
            {
                "region": slug,
                "devices": n,
                "throughput_gbps": round(gbps, 3),
                "storage_tb": round(tb, 3),
            }
            for slug, (n, gbps, tb) in totals.items()
        ),
        key=lambda r: str(r["region"]),
    )


@dataclass(frozen=True)
class EndOfLife:
    component: dict[str, Any]
    eol: date
    basis: str


def end_of_life(
    *,
    session: Session,
    within_days: int = 180,
    life_years: Mapping[str, float] | None = None,
    limit: int = 1000,
    today: date | None = None,
) -> dict[str, Any]:
    """Components whose end of life (EOL date, or install date + expected life) is near or past."""
    if within_days < 0 or within_days > 36500:
        raise InvalidInput("within_days: between 0 and 36500")
    life = {**EXPECTED_LIFE_YEARS, **(life_years or {})}
    today = today or date.today()
    cutoff = today + timedelta(days=within_days)
    by_install = [
        and_(
            m.Component.kind == kind,
            m.Component.install_date <= cutoff - timedelta(days=round(years * 365.25)),
        )
        for kind, years in life.items()
    ]
    condition = and_(
        m.Component.status != "replaced",
        or_(
            and_(m.Component.eol_date.is_not(None), m.Component.eol_date <= cutoff),
            and_(m.Component.eol_date.is_(None), or_(*by_install)),
        ),
    )
    count = session.scalar(select(func.count()).select_from(m.Component).where(condition)) or 0
    parts = list(
        session.scalars(
            select(m.Component)
            .where(condition)
            .order_by(func.coalesce(m.Component.eol_date, m.Component.install_date), m.Component.id)
            .limit(limit)
        )
    )
    items = serialize.read(session, "component", parts)
    out = []
    for item in items:
        if item["eol_date"] is not None:
            eol, basis = item["eol_date"], "eol_date"
        else:
            years = life.get(item["kind"], life["other"])
            eol = item["install_date"] + timedelta(days=round(years * 365.25))
            basis = f"install_date + {years:g} years"
        out.append(
            {
                **s.ComponentRead.model_validate(item).model_dump(mode="json"),
                "end_of_life": eol.isoformat(),
                "basis": basis,
                "overdue": eol < today,
            }
        )
    out.sort(key=lambda r: (r["end_of_life"], r["id"]))
    return {"items": out, "count": count, "cutoff": cutoff.isoformat()}


def failed_components(*, session: Session, limit: int = 1000) -> list[dict[str, Any]]:
    """Devices with failed components, and those components."""
    parts = list(
        session.scalars(
            select(m.Component)
            # the second term lets SQLite use the partial index of unhealthy parts
            .where(m.Component.status == "failed", m.Component.status != "ok")
            .order_by(m.Component.device_id, m.Component.id)
            .limit(limit * 10)
        )
    )
    items = serialize.read(session, "component", parts)
    by_device: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        by_device[item["device_id"]].append(
            {k: item[k] for k in ("id", "name", "kind", "serial", "part_number", "updated_at")}
        )
    devices = serialize.read(
        session,
        "device",
        session.scalars(
            select(m.Device)
            .where(m.Device.id.in_(list(by_device)))
            .order_by(m.Device.id)
            .limit(limit)
        ),
    )
    return [
        {
            "device": d["name"],
            "device_id": d["id"],
            "site": d["site"],
            "status": d["status"],
            "role": d["role"],
            "failed": by_device[d["id"]],
        }
        for d in devices
    ]
