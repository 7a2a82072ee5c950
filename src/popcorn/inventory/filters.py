"""Lists of inventory objects: NetBox-style filters, joins, search and the shapes of answers.

Every list (API, CLI, export, console) builds its query with `filtered` and
answers with `shape`, so a filter means the same thing everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput, NotFound
from popcorn.inventory import bulk, search, serialize
from popcorn.inventory import models as m
from popcorn.inventory import schemas as s
from popcorn.inventory.bulk import TYPES, resolve_type
from popcorn.inventory.schemas import groups as gs
from popcorn.listing import (
    ListParams,
    PageResult,
    encode_cursor,
    filter_clauses,
    paginate,
    parse_list_params,
)
from popcorn.lookup import MAX_ID
from popcorn.schemas import ReadSchema

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
    "site_group": {
        "id": m.SiteGroup.id,
        "slug": m.SiteGroup.slug,
        "name": m.SiteGroup.name,
        "parent_id": m.SiteGroup.parent_id,
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
        "group_id": m.Site.group_id,
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
    "location": {
        "id": m.Location.id,
        "site_id": m.Location.site_id,
        "slug": m.Location.slug,
        "name": m.Location.name,
        "parent_id": m.Location.parent_id,
        "status": m.Location.status,
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
    "location": {"site": (m.Site.code, [(m.Site, m.Site.id == m.Location.site_id)])},
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
    "site_group": (m.SiteGroup.slug, m.SiteGroup.name),
    "location": (m.Location.slug, m.Location.name, m.Location.description),
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
    return _nested_ids(session, m.Region, "region", refs)


def site_group_ids(session: Session, refs: Iterable[str | int]) -> set[int]:
    """Ids of the given site groups (by id, slug or name) and all groups below them."""
    return _nested_ids(session, m.SiteGroup, "site_group", refs)


def _nested_ids(session: Session, model: Any, key: str, refs: Iterable[str | int]) -> set[int]:
    rows = session.execute(select(model.id, model.slug, model.name, model.parent_id))
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
            label = key.replace("_", " ")
            raise NotFound(f"no {label} {text!r}", details={key: text})
        _add_subtree(out, [found], children)
    return out


def _add_subtree(out: set[int], roots: list[int], children: dict[int | None, list[int]]) -> None:
    """Add `roots` and every node below them to `out` (a tree kept as parent -> children)."""
    stack = list(roots)
    while stack:
        current = stack.pop()
        if current not in out:
            out.add(current)
            stack.extend(children.get(current, []))


def location_ids(session: Session, refs: Iterable[str | int]) -> set[int]:
    """Ids of the given locations (by id, slug or name, in any site) and all below them."""
    rows = session.execute(
        select(m.Location.id, m.Location.slug, m.Location.name, m.Location.parent_id)
    )
    children: dict[int | None, list[int]] = defaultdict(list)
    by_key: dict[str, list[int]] = defaultdict(list)
    for ident, slug, name, parent in rows:
        children[parent].append(ident)
        for key in {str(ident), slug, name.lower()}:
            by_key[key].append(ident)
    out: set[int] = set()
    for ref in refs:
        text = str(ref).strip()
        roots = by_key.get(text) or by_key.get(text.lower()) or []
        if not roots:
            raise NotFound(f"no location {text!r}", details={"location": text})
        _add_subtree(out, roots, children)
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


def _check_ranges(
    filters: Mapping[str, list[str]], allowed: Mapping[str, Any], params: ListParams
) -> None:
    """Whole numbers a database cannot hold (2**63 and above) are a 422, not an overflow."""
    if params.offset is not None and params.offset > MAX_ID:
        raise InvalidInput(f"offset must be at most {MAX_ID}", details={"offset": params.offset})
    for key, values in filters.items():
        name, _, lookup = key.partition("__")
        column = allowed.get(name)
        if column is None or lookup in ("isnull", "ic", "isw", "ie"):
            continue
        try:
            numeric = column.type.python_type is int
        except NotImplementedError:
            continue
        if not numeric:
            continue
        for raw in (part for value in values for part in value.split(",")):
            try:
                number = int(raw)
            except ValueError:
                continue  # not a number at all: the filter itself answers 422
            if abs(number) > MAX_ID:
                raise InvalidInput(
                    f"filter {key}: {raw} is out of range (at most {MAX_ID})",
                    details={key: raw},
                )


# Filters on a site's region or group, by id, slug or name, including everything below it.
_NESTED: dict[str, tuple[Any, Any]] = {
    "region": (region_ids, m.Site.region_id),
    "region_id": (region_ids, m.Site.region_id),
    "site_group": (site_group_ids, m.Site.group_id),
    "site_group_id": (site_group_ids, m.Site.group_id),
}


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
    for key in [k for k in filters if k in _NESTED]:
        find, column = _NESTED[key]
        ids = find(session, [v for raw in filters.pop(key) for v in raw.split(",")])
        if otype == "site":
            stmt = stmt.where(column.in_(ids))
        elif otype in ("device", "rack"):
            stmt = stmt.where(model.site_id.in_(select(m.Site.id).where(column.in_(ids))))
        else:
            raise InvalidInput(f"unknown filter {key!r}", details={"filter": key})
    for key in [k for k in filters if k in ("location", "location_id")]:
        if otype not in ("device", "rack"):
            raise InvalidInput(f"unknown filter {key!r}", details={"filter": key})
        ids = location_ids(session, [v for raw in filters.pop(key) for v in raw.split(",")])
        stmt = stmt.where(model.location_id.in_(ids))
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
    _check_ranges(filters, allowed, params)
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


READ_SCHEMAS: dict[str, type[ReadSchema]] = {
    "custom_field": s.CustomFieldRead,
    "region": s.RegionRead,
    "site_group": gs.SiteGroupRead,
    "location": gs.LocationRead,
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
