"""The inventory's behaviour: start here. Objects, lifecycle, traces, history and journal.

Views, the CLI and other domains call these functions; none of them knows
Flask or click. Every change goes through `popcorn.inventory.bulk`, so a
single API create, a CLI update and a 100,000-row import obey the same rules
and leave the same audit records and events. Where to look:

- creating or changing one object: `create_object` / `update_object` here; the
  rules for each type are its planner in `bulk.PLANNERS` (a device:
  `bulk.devices.plan_device`; a site: `bulk.organisation.plan_site`).
- lists and filters: `filters` (`list_objects`, `filtered`, `shape`).
- file imports and exports: `files`; cable traces: `tracing`; reports: `reports`.
  Their public functions are re-exported here, so `service.X` finds them all;
  files, library, reports and tracing load on first use (`_LAZY`), so a list
  command never imports them.

Other domains use the typed facade `popcorn.inventory.api`, built on:

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

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, selectinload

from popcorn.audit import AuditRecord, record_change, records_for
from popcorn.context import current_actor
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.inventory import bulk, serialize
from popcorn.inventory import models as m
from popcorn.inventory import schemas as s
from popcorn.inventory.bulk import TYPES, BatchResult, Row, resolve_type
from popcorn.inventory.filters import READ_SCHEMAS, filtered, list_objects, region_ids, shape
from popcorn.listing import PageResult
from popcorn.lookup import get_by_id, parse_id
from popcorn.outbox import emit

if TYPE_CHECKING:
    from popcorn.inventory.files import export, import_files, import_paths
    from popcorn.inventory.library import LibraryImport, import_library
    from popcorn.inventory.reports import (
        COUNT_BY,
        EXPECTED_LIFE_YEARS,
        capacity,
        device_counts,
        devices_per_rack,
        end_of_life,
        failed_components,
        location_counts,
        rack_devices,
        site_capacity,
        sites_per_group,
    )
    from popcorn.inventory.tracing import trace_from

# Re-exported names whose modules load on first use: a list command never pays for
# the file formats, the device-type library, reports or traces (see `__getattr__`).
_LAZY = {
    "export": "files",
    "import_files": "files",
    "import_paths": "files",
    "LibraryImport": "library",
    "import_library": "library",
    "COUNT_BY": "reports",
    "EXPECTED_LIFE_YEARS": "reports",
    "capacity": "reports",
    "device_counts": "reports",
    "devices_per_rack": "reports",
    "end_of_life": "reports",
    "failed_components": "reports",
    "location_counts": "reports",
    "rack_devices": "reports",
    "site_capacity": "reports",
    "sites_per_group": "reports",
    "trace_from": "tracing",
}

__all__ = [
    "COUNT_BY",
    "EXPECTED_LIFE_YEARS",
    "READ_SCHEMAS",
    "LibraryImport",
    "add_journal",
    "bulk_apply",
    "bulk_change",
    "bulk_delete",
    "capacity",
    "collect_metrics",
    "create_object",
    "delete_object",
    "delete_objects",
    "device_counts",
    "devices_for_scope",
    "devices_per_rack",
    "end_of_life",
    "export",
    "fail_component_by_id",
    "failed_components",
    "filtered",
    "find_component",
    "get_device",
    "get_object",
    "history",
    "import_files",
    "import_library",
    "import_paths",
    "journal",
    "list_objects",
    "location_counts",
    "mark_component_failed",
    "rack_devices",
    "read_one",
    "record_agent_heartbeat",
    "region_ids",
    "scope_list",
    "set_device_status",
    "shape",
    "site_capacity",
    "sites_per_group",
    "trace",
    "trace_from",
    "update_object",
]


def __getattr__(name: str) -> Any:
    """Load a lazily re-exported name (`_LAZY`) from its module on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"popcorn.inventory.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


# --- looking objects up --------------------------------------------------------

_KEY_COLUMNS: dict[str, tuple[Any, ...]] = {
    "region": (m.Region.slug, m.Region.name),
    "site_group": (m.SiteGroup.slug, m.SiteGroup.name),
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
    ident = parse_id(text)
    if ident is not None:
        found = session.get(model, ident)
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
    """Create one object (a device also gets its model's components).

    The rules it must pass are its type's planner, `bulk.PLANNERS[otype]`: a
    device's are `bulk.devices.plan_device`, a site's `bulk.organisation.plan_site`.
    """
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


def bulk_change(*, session: Session, otype: str, items: Sequence[Any], mode: str) -> dict[str, Any]:
    """`bulk_apply`, answered with the counts and every created or updated object."""
    otype = resolve_type(otype)
    result = bulk_apply(session=session, otype=otype, items=items, mode=mode)
    model = TYPES[otype].model
    ids = result.ids.get(otype, [])
    objects = session.scalars(select(model).where(model.id.in_(ids)).order_by(model.id))
    return {**result.as_dict(), "items": shape(otype, serialize.read(session, otype, objects), {})}


def bulk_delete(*, session: Session, otype: str, items: Sequence[Any]) -> int:
    """Delete the objects a bulk call names, each by `{"id": …}`, id or natural key."""
    refs = [str(i.get("id")) if isinstance(i, dict) else str(i) for i in items]
    return delete_objects(session=session, otype=otype, refs=refs)


_BLOCKERS: dict[str, list[tuple[Any, str]]] = {
    "region": [(m.Region.parent_id, "regions"), (m.Site.region_id, "sites")],
    "site_group": [(m.SiteGroup.parent_id, "site groups"), (m.Site.group_id, "sites")],
    "site": [
        (m.Device.site_id, "devices"),
        (m.Rack.site_id, "racks"),
        (m.Location.site_id, "locations"),
    ],
    "location": [
        (m.Location.parent_id, "locations"),
        (m.Rack.location_id, "racks"),
        (m.Device.location_id, "devices"),
    ],
    "rack": [(m.Device.rack_id, "devices")],
    "manufacturer": [
        (m.DeviceModel.manufacturer_id, "device models"),
        (m.ModuleType.manufacturer_id, "module types"),
        (m.Component.manufacturer_id, "components"),
    ],
    "device_model": [(m.Device.device_model_id, "devices")],
    "module_type": [(m.Component.module_type_id, "components")],
}


def delete_object(*, session: Session, otype: str, ref: int | str) -> None:
    """Delete one object (the API's DELETE of one path): `delete_objects` of one ref."""
    delete_objects(session=session, otype=otype, refs=[ref])


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
        for end_type, end_id in ((a_type, a_id), (b_type, b_id)):
            if end_type in ends:  # circuit terminations and feeds outlive a device
                ends[end_type].add(end_id)
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
        if a_id not in alive.get(a_type, {a_id}) or b_id not in alive.get(b_type, {b_id})
    ]
    if gone:
        session.execute(delete(m.Link).where(m.Link.id.in_(gone)))


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
    ident = parse_id(text)
    if ident is not None:
        clauses.append(m.Component.id == ident)
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


def fail_component_by_id(*, session: Session, ident: int | str, reason: str = "") -> dict[str, Any]:
    """`mark_component_failed` for a component known only by its id, as the API shows it."""
    part = get_by_id(session, m.Component, ident, label="component")
    found = mark_component_failed(
        session=session, device=part.device_id, component=part.id, reason=reason
    )
    return read_one(session=session, otype="component", obj=found)


def devices_for_scope(
    *,
    session: Session,
    site: str | int | Sequence[str | int] | None = None,
    region: str | int | Sequence[str | int] | None = None,
    role: str | Sequence[str] | None = None,
    device: str | int | Sequence[str | int] | None = None,
    status: str | Sequence[str] | None = None,
    model: str | Sequence[str] | None = None,
    tag: str | Sequence[str] | None = None,
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
            ident = parse_id(text)
            found = session.scalar(
                select(m.Site.id).where(
                    m.Site.id == ident if ident is not None else m.Site.code == text
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
    if model is not None:
        slugs = [str(s) for s in many(model)]
        known = set(
            session.scalars(select(m.DeviceModel.slug).where(m.DeviceModel.slug.in_(slugs)))
        )
        for slug in slugs:
            if slug not in known:
                raise NotFound(f"no device model {slug!r}", details={"model": slug})
        stmt = stmt.where(
            m.Device.device_model_id.in_(
                select(m.DeviceModel.id).where(m.DeviceModel.slug.in_(slugs))
            )
        )
    if tag is not None:
        for value in many(tag):  # every tag given must be on the device
            stmt = stmt.where(
                m.Device.id.in_(
                    select(m.Tagging.object_id).where(
                        m.Tagging.object_type == "device", m.Tagging.tag == str(value)
                    )
                )
            )
    return list(session.scalars(stmt.order_by(m.Device.id)))


def scope_list(
    *,
    session: Session,
    args: Mapping[str, Any],
    site: Sequence[str] | None = None,
    region: Sequence[str] | None = None,
    role: Sequence[str] | None = None,
    device: Sequence[str] | None = None,
    status: Sequence[str] | None = None,
) -> dict[str, Any]:
    """`devices_for_scope` as a list answer, in the shapes `args` asks for (`fields`, `brief`)."""
    devices = devices_for_scope(
        session=session, site=site, region=region, role=role, device=device, status=status
    )
    items = shape("device", serialize.read(session, "device", devices), args)
    return PageResult.whole(items).serialize()


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


# --- traces --------------------------------------------------------------------


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
    from popcorn.inventory.tracing import trace_from

    return trace_from(session=session, end_type=end_type, end_id=end_id)


# --- history and journal ------------------------------------------------------------


def history(*, session: Session, otype: str, ref: int | str) -> list[AuditRecord]:
    from popcorn.inventory.ipam import service as ipam_service

    if ipam_service.is_kind(otype):
        return ipam_service.history(session=session, otype=otype, ref=ref)
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


# --- metrics ----------------------------------------------------------------------------


def collect_metrics() -> Iterator[Any]:
    """Scrape-time gauge: devices per lifecycle status."""
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(
        "popcorn_inventory_devices", "Devices by lifecycle status", labels=["status"]
    )
    with session_scope(readonly=True) as session:
        for status, count in session.execute(
            select(m.Device.status, func.count()).group_by(m.Device.status)
        ):
            family.add_metric([status], count)
    yield family
