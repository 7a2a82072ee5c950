"""IPAM, circuits and power: the behaviour. Views, the CLI and importers call these.

Every function takes plain dicts (as an API body, a CLI `key=value` list or a
NetBox dump row gives them) and returns API-shaped dicts. Each change is checked
by `rules` before anything is written, then recorded like the rest of the
inventory: one audit record (`object_type` is the kind, e.g. "prefix") and one
`inventory.<kind>.created|updated|deleted` event per object.

- objects: `create_object`, `update_object`, `upsert_object` (by natural key, for
  importers), `delete_object`, `get_object`, `read_one`, `list_objects`,
  `bulk_apply` (all or nothing, checked and written as one batch by `batch.write_many`).
- free space: `available_prefixes`, `available_addresses` (optionally creating them).
- cables: `connect` / `disconnect` a circuit termination or power feed to a device's
  interface or power port; `trace` then follows them (see `inventory.tracing`).
- devices: `set_primary_ip`, `device_addresses`, `device_circuits`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError, create_model
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn.audit import AuditRecord, record_change, records_for
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.inventory import models as dcim
from popcorn.inventory.ipam import addressing, reads, rules
from popcorn.inventory.ipam import models as m
from popcorn.inventory.ipam import schemas as s
from popcorn.inventory.ipam.rules import KINDS, Kind, is_kind, kind_of
from popcorn.listing import PageResult, filter_clauses, paginate, parse_list_params
from popcorn.lookup import parse_id
from popcorn.outbox import emit
from popcorn.schemas import Schema

__all__ = [
    "KINDS",
    "available_addresses",
    "available_prefixes",
    "bulk_apply",
    "connect",
    "create_object",
    "delete_object",
    "device_addresses",
    "device_circuits",
    "disconnect",
    "get_object",
    "history",
    "is_kind",
    "kind_of",
    "list_objects",
    "read_one",
    "set_primary_ip",
    "update_object",
    "upsert_object",
]

_PATCHES: dict[str, type[Schema]] = {}


def patch_schema(kind: Kind) -> type[Schema]:
    """The input schema with every field optional: an update changes only what it names."""
    found = _PATCHES.get(kind.name)
    if found is None:
        fields: dict[str, Any] = {
            name: (info.rebuild_annotation() | None, None)
            for name, info in kind.schema.model_fields.items()
        }
        found = _PATCHES[kind.name] = create_model(
            f"{kind.schema.__name__.removesuffix('In')}Patch", __base__=Schema, **fields
        )
    return found


def validate(schema: type[Schema], data: Mapping[str, Any]) -> dict[str, Any]:
    """Check a plain dict against an input schema; a 422 naming every bad field otherwise."""
    if not isinstance(data, Mapping):
        raise InvalidInput("expected an object")
    try:
        return schema.model_validate(dict(data)).model_dump(exclude_unset=True)
    except ValidationError as exc:
        fields: dict[str, list[str]] = {}
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "body"
            text = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            fields.setdefault(name, []).append(str(text).removeprefix("Value error, "))
        message = "; ".join(f"{k}: {', '.join(v)}" for k, v in list(fields.items())[:5])
        raise InvalidInput(message, details={"fields": fields}) from None


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, date | datetime) else v
        for k, v in row.items()
        if k not in reads.HIDDEN
    }


def stored(obj: Any) -> dict[str, Any]:
    """An object's columns as its audit records keep them."""
    return _jsonable({c.key: getattr(obj, c.key) for c in obj.__table__.columns})


def get_object(*, session: Session, otype: str, ref: int | str) -> Any:
    """An object by id or natural key (prefixes and addresses also by their text)."""
    kind = kind_of(otype)
    text = str(ref).strip()
    if kind.name in ("prefix", "ip_address") and parse_id(text) is None:
        return _by_address(session, kind, text)
    return rules.get(session, kind.name, ref)


def _by_address(session: Session, kind: Kind, text: str) -> Any:
    try:
        value = ipaddress.ip_interface(text)
    except ValueError:
        raise NotFound(f"no {kind.label} {text!r}") from None
    stmt: Any
    if kind.name == "prefix":
        stmt = select(m.Prefix).where(m.Prefix.prefix == str(value.network))
    else:
        stmt = select(m.IpAddress).where(
            m.IpAddress.family == value.version, m.IpAddress.host_key == rules.key(value.ip)
        )
    found = session.scalars(stmt.order_by(kind.model.vrf_id.is_not(None)).limit(2)).all()
    if not found:
        raise NotFound(f"no {kind.label} {text!r}")
    if len(found) > 1 and found[1].vrf_id is None:
        raise InvalidInput(f"{kind.label} {text!r} is ambiguous: give its id")
    return found[0]


def read_one(*, session: Session, otype: str, obj: Any) -> dict[str, Any]:
    kind = kind_of(otype)
    return kind.read.model_validate(reads.read(session, kind.name, [obj])[0]).model_dump(
        mode="json"
    )


def event_payload(obj: Any) -> dict[str, Any]:
    """What an event names an object by: its first two identifying columns."""
    keys = [
        k for k in ("name", "slug", "prefix", "address", "cid", "vid", "asn") if hasattr(obj, k)
    ]
    return {k: getattr(obj, k) for k in keys[:2]}


def _write(session: Session, obj: Any) -> None:
    try:
        with session.begin_nested():
            session.add(obj)
            session.flush()
    except IntegrityError as exc:
        detail = str(exc.orig).splitlines()[0]
        raise Conflict(f"the change conflicts with stored data: {detail}") from None


def create_object(*, session: Session, otype: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Create one object from a plain dict (references by id or natural key)."""
    kind = kind_of(otype)
    cols = rules.columns(session, kind.name, validate(kind.schema, data), None)
    obj = kind.model(**cols)
    _write(session, obj)
    record_change(session, "create", kind.name, obj.id, after=stored(obj))
    emit(session, f"inventory.{kind.name}.created", kind.name, obj.id, event_payload(obj))
    return read_one(session=session, otype=kind.name, obj=obj)


def upsert_object(
    *, session: Session, otype: str, data: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Create an object, or update the stored one with the same natural key (see
    `rules.existing`); returns it and whether it was created. Running the same input
    twice changes nothing the second time (no audit record, no event)."""
    kind = kind_of(otype)
    full = validate(kind.schema, data)
    found = rules.existing(session, kind.name, full)
    if found is None:
        return create_object(session=session, otype=kind.name, data=data), True
    return _update(session, kind, found, data, ""), False


def update_object(
    *, session: Session, otype: str, ref: int | str, data: Mapping[str, Any], reason: str = ""
) -> dict[str, Any]:
    """Change the given fields of one object; the rest stay as they are."""
    kind = kind_of(otype)
    obj = get_object(session=session, otype=kind.name, ref=ref)
    return _update(session, kind, obj, data, reason)


def _update(
    session: Session, kind: Kind, obj: Any, data: Mapping[str, Any], reason: str
) -> dict[str, Any]:
    given = {k: v for k, v in validate(patch_schema(kind), data).items() if k != "id"}
    required = [n for n, f in kind.schema.model_fields.items() if f.is_required()]
    cleared = [n for n in required if n in given and given[n] is None]
    if cleared:
        raise InvalidInput(
            f"{cleared[0]}: cannot be empty", details={"fields": {cleared[0]: ["required"]}}
        )
    before = stored(obj)
    cols = rules.columns(session, kind.name, given, obj)
    if kind.name == "ip_address" and any(
        cols.get(k, before[k]) != before[k] for k in ("address", "interface_id", "vrf_id")
    ):
        release_primary(session, obj)
    for name, value in cols.items():
        setattr(obj, name, value)
    _write(session, obj)
    after = stored(obj)
    changed = sorted(k for k in after if after[k] != before.get(k) and k != "updated_at")
    if changed:
        after_with_reason = {**after, "reason": reason} if reason else after
        record_change(session, "update", kind.name, obj.id, before=before, after=after_with_reason)
        emit(
            session,
            f"inventory.{kind.name}.updated",
            kind.name,
            obj.id,
            {**event_payload(obj), "changed": changed},
        )
    return read_one(session=session, otype=kind.name, obj=obj)


def delete_object(*, session: Session, otype: str, ref: int | str) -> None:
    """Delete one object (and a circuit termination's or feed's cable); 409 while in use."""
    kind = kind_of(otype)
    obj = get_object(session=session, otype=kind.name, ref=ref)
    before = stored(obj)
    if kind.name == "ip_address":
        release_primary(session, obj)
    if kind.name in ("circuit_termination", "power_feed") and obj.link_id is not None:
        disconnect(session=session, otype=kind.name, ref=obj.id)
    if kind.name == "circuit":
        for end in session.scalars(
            select(m.CircuitTermination).where(m.CircuitTermination.circuit_id == obj.id)
        ):
            if end.link_id is not None:
                disconnect(session=session, otype="circuit_termination", ref=end.id)
    try:
        with session.begin_nested():
            session.delete(obj)
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"{kind.label} {ref!r} is still in use by other objects: change or delete them first"
        ) from None
    record_change(session, "delete", kind.name, before["id"], before=before)
    emit(session, f"inventory.{kind.name}.deleted", kind.name, before["id"], event_payload(obj))


def history(*, session: Session, otype: str, ref: int | str) -> list[AuditRecord]:
    """The change history of one object, oldest first."""
    kind = kind_of(otype)
    obj = get_object(session=session, otype=kind.name, ref=ref)
    return records_for(session, kind.name, obj.id)


def list_objects(*, session: Session, otype: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """One page of objects, NetBox-style filters (`field=`, lookups, `q`, references by name)."""
    kind = kind_of(otype)
    params = parse_list_params(args)
    model = kind.model
    stmt = select(model)
    filters = dict(params.filters)
    for name, target in kind.refs.items():
        for key in [k for k in filters if k == name or k == f"{name}_id"]:
            values = [v for raw in filters.pop(key) for v in raw.split(",")]
            ids = [rules.get(session, target, v).id for v in values if v.lower() != "null"]
            column = getattr(model, f"{name}_id")
            clause = column.in_(ids)
            if any(v.lower() == "null" for v in values):
                clause = or_(clause, column.is_(None))
            stmt = stmt.where(clause)
    if kind.name == "prefix" and "within" in filters:
        raw = filters.pop("within")[-1].strip()
        try:
            parent = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise InvalidInput(
                f"within: {raw!r} is not a prefix", details={"within": raw}
            ) from None
        stmt = stmt.where(
            m.Prefix.family == parent.version,
            m.Prefix.start_key >= rules.key(parent.network_address),
            m.Prefix.end_key <= rules.key(parent.broadcast_address),
        )
    if kind.name == "power_feed" and "site" in filters:
        sites = [
            rules.get(session, "site", v).id for raw in filters.pop("site") for v in raw.split(",")
        ]
        stmt = stmt.where(
            m.PowerFeed.power_panel_id.in_(
                select(m.PowerPanel.id).where(m.PowerPanel.site_id.in_(sites))
            )
        )
    if kind.name == "ip_address" and "device" in filters:
        names = [v for raw in filters.pop("device") for v in raw.split(",")]
        stmt = stmt.where(
            m.IpAddress.interface_id.in_(
                select(dcim.Interface.id)
                .join(dcim.Device, dcim.Device.id == dcim.Interface.device_id)
                .where(dcim.Device.name.in_(names))
            )
        )
    allowed = {"id": model.id, **{f: getattr(model, f) for f in kind.filters}}
    clauses = filter_clauses(filters, allowed)
    if clauses:
        stmt = stmt.where(and_(*clauses))
    if params.q:
        needle = f"%{params.q.lower()}%"
        stmt = stmt.where(or_(*[getattr(model, c).ilike(needle) for c in kind.search]))
    page: PageResult = paginate(session, stmt, params, key=model.id)
    items = [
        kind.read.model_validate(row).model_dump(mode="json")
        for row in reads.read(session, kind.name, list(page.items))
    ]
    return {"items": items, "count": page.count, "next": page.next}


def bulk_apply(
    *, session: Session, otype: str, items: Sequence[Any], mode: str = "create"
) -> dict[str, Any]:
    """Create (or, with `id`, update) many objects, all or nothing, every error reported.

    `mode="upsert"` updates the stored object with the same natural key instead of
    refusing a duplicate. The rows are checked and written together (`batch.write_many`).
    """
    from popcorn.inventory.ipam import batch

    kind = kind_of(otype)
    if not isinstance(items, list) or not items:
        raise InvalidInput("expected a non-empty JSON list of objects")
    errors: list[dict[str, Any]] = []
    planned: list[tuple[int | None, Mapping[str, Any]]] = []
    places: list[int] = []  # the index in `items` of each planned row
    for index, item in enumerate(items):
        try:
            planned.append(_bulk_target(session, kind, item, mode))
            places.append(index)
        except (InvalidInput, NotFound, Conflict) as exc:
            errors.append({"item": index, "message": exc.message, "code": exc.code})
    done = batch.write_many(session, kind.name, planned)
    errors += [{**e, "item": places[e["item"]]} for e in done.errors]
    if errors:
        errors.sort(key=lambda e: e["item"])
        raise InvalidInput(
            f"{len(errors)} of {len(items)} {kind.path} refused; nothing was written",
            details={"errors": errors[:100], "count": len(errors)},
        )
    if not done.per_object:
        source = f"api {kind.path}"
        payload = {"source": source, "counts": {kind.path: dict(done.counts)}}
        record_change(session, "import", "import", source, after=payload)
        emit(session, "inventory.import.completed", "import", source, payload)
    ids = [ident for ident in done.ids if ident is not None]
    return {"count": len(ids), "ids": ids}


def _bulk_target(
    session: Session, kind: Kind, item: Any, mode: str
) -> tuple[int | None, Mapping[str, Any]]:
    """The stored object a bulk item changes (None: a new one) and the fields it gives."""
    if not isinstance(item, dict):
        raise InvalidInput("expected an object")
    if mode == "upsert" and "id" not in item:
        found = rules.existing(session, kind.name, validate(kind.schema, item))
        return (None if found is None else found.id), item
    if mode == "update" or "id" in item:
        if "id" not in item:
            raise InvalidInput("id: required to update")
        obj = get_object(session=session, otype=kind.name, ref=item["id"])
        return obj.id, {k: v for k, v in item.items() if k != "id"}
    return None, item


# --- free space -----------------------------------------------------------------------------


def _prefix(session: Session, ref: int | str) -> m.Prefix:
    found: m.Prefix = get_object(session=session, otype="prefix", ref=ref)
    return found


def _vrf_name(session: Session, vrf_id: int | None) -> str | None:
    vrf = session.get(m.Vrf, vrf_id) if vrf_id is not None else None
    return None if vrf is None else vrf.name


def available_prefixes(
    *, session: Session, ref: int | str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The first free prefixes of a length inside a prefix; created when `create` is set."""
    parent = _prefix(session, ref)
    asked = validate(s.NextPrefixIn, data)
    wanted = {**s.NextPrefixIn.model_validate(asked).model_dump(), **asked}
    found = addressing.next_prefixes(session, parent, wanted["prefix_length"], wanted["count"])
    if len(found) < wanted["count"]:
        raise Conflict(
            f"prefix {parent.prefix} has {len(found)} free /{wanted['prefix_length']} "
            f"of the {wanted['count']} asked for",
            details={"free": [str(n) for n in found]},
        )
    created: list[int] = []
    if wanted["create"]:
        for network in found:
            row = {
                "prefix": str(network),
                "vrf": parent.vrf_id,
                "site": parent.site_id,
                "status": wanted["status"],
                "description": wanted["description"],
            }
            created.append(create_object(session=session, otype="prefix", data=row)["id"])
    return {
        "parent": parent.prefix,
        "vrf": _vrf_name(session, parent.vrf_id),
        "items": [str(n) for n in found],
        "created": created,
    }


def available_addresses(
    *, session: Session, ref: int | str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The first free addresses of a prefix (outside its ranges); created when `create` is set."""
    parent = _prefix(session, ref)
    asked = validate(s.NextAddressIn, data)
    wanted = {**s.NextAddressIn.model_validate(asked).model_dump(), **asked}
    found = addressing.next_addresses(session, parent, wanted["count"])
    if len(found) < wanted["count"]:
        raise Conflict(
            f"prefix {parent.prefix} has {len(found)} free addresses of the "
            f"{wanted['count']} asked for",
            details={"free": found},
        )
    created = []
    if wanted["create"]:
        for address in found:
            row = {
                "address": address,
                "vrf": parent.vrf_id,
                "status": wanted["status"],
                "description": wanted["description"],
            }
            created.append(create_object(session=session, otype="ip_address", data=row)["id"])
    return {
        "parent": parent.prefix,
        "vrf": _vrf_name(session, parent.vrf_id),
        "items": found,
        "created": created,
    }


# --- cables to circuits and power feeds ---------------------------------------------------


def _cable_end(session: Session, otype: str, ref: int | str) -> Any:
    kind = kind_of(otype)
    if kind.name not in ("circuit_termination", "power_feed"):
        raise InvalidInput("only circuit terminations and power feeds are connected here")
    return get_object(session=session, otype=kind.name, ref=ref)


def _near_end(session: Session, kind: str, device: Any, given: Mapping[str, Any]) -> Any:
    """The device end a cable to `kind` may take: for a circuit termination an interface or
    a front/rear port (patch panel), for a power feed a power port."""
    if kind == "circuit_termination" and given.get("interface") is not None:
        return session.get(
            dcim.Interface, rules.interface_id(session, device.id, given["interface"])
        )
    if given.get("port") is None:
        field = "interface" if kind == "circuit_termination" else "port"
        raise InvalidInput(f"{field}: required", details={"fields": {field: ["required"]}})
    kinds = ("front-port", "rear-port") if kind == "circuit_termination" else ("power-port",)
    text = str(given["port"]).strip()
    ident = parse_id(text)
    found = session.scalars(
        select(dcim.Port).where(
            dcim.Port.device_id == device.id,
            dcim.Port.kind.in_(kinds),
            or_(dcim.Port.name == text, dcim.Port.id == (ident or 0)),
        )
    ).first()
    if found is None:
        raise NotFound(f"device {device.name!r} has no {' or '.join(kinds)} {text!r}")
    return found


def connect(
    *, session: Session, otype: str, ref: int | str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """Cable a circuit termination to a device's interface (or patch panel port), or a power
    feed to a power port. Cabling the same two ends again changes nothing."""
    end = _cable_end(session, otype, ref)
    kind = kind_of(otype).name
    given = validate(s.ConnectIn, data)
    device = rules.get(session, "device", given["device"])
    near = _near_end(session, kind, device, given)
    near_type = "interface" if isinstance(near, dcim.Interface) else "port"
    if end.link_id is not None and end.link_id == near.link_id:
        return read_one(session=session, otype=kind, obj=end)
    if end.link_id is not None:
        raise Conflict(f"this {kind.replace('_', ' ')} is already connected (link {end.link_id})")
    if near.link_id is not None:
        raise Conflict(
            f"{near.name!r} on {device.name!r} is already connected (link {near.link_id})"
        )
    link = dcim.Link(
        a_type=near_type,
        a_id=near.id,
        a_device_id=device.id,
        b_type=kind,
        b_id=end.id,
        b_device_id=None,
        type=given.get("type", ""),
        label=given.get("label", ""),
        description=given.get("description", ""),
        status="connected",
    )
    _write(session, link)
    near.link_id = end.link_id = link.id
    session.flush()
    record_change(session, "create", "link", link.id, after=stored(link))
    emit(
        session,
        "inventory.link.created",
        "link",
        link.id,
        {"a_device": device.name, "a_name": near.name, "b_type": kind, "b_id": end.id},
    )
    return read_one(session=session, otype=kind, obj=end)


def disconnect(*, session: Session, otype: str, ref: int | str) -> dict[str, Any]:
    """Remove the cable of a circuit termination or power feed."""
    end = _cable_end(session, otype, ref)
    kind = kind_of(otype).name
    if end.link_id is None:
        raise Conflict(f"this {kind.replace('_', ' ')} is not connected")
    link = session.get(dcim.Link, end.link_id)
    assert link is not None
    before = stored(link)
    for end_type, end_id in ((link.a_type, link.a_id), (link.b_type, link.b_id)):
        model: Any = {
            "interface": dcim.Interface,
            "port": dcim.Port,
            "circuit_termination": m.CircuitTermination,
            "power_feed": m.PowerFeed,
        }[end_type]
        held = session.get(model, end_id)
        if held is not None:
            held.link_id = None
    session.flush()
    session.delete(link)
    session.flush()
    record_change(session, "delete", "link", before["id"], before=before)
    emit(session, "inventory.link.deleted", "link", before["id"], {"b_type": kind, "b_id": end.id})
    return read_one(session=session, otype=kind, obj=end)


# --- devices' addresses ----------------------------------------------------------------------


def set_primary_ip(*, session: Session, ref: int | str) -> dict[str, Any]:
    """Make an address its device's primary IPv4 or IPv6 (it must sit on one of its interfaces)."""
    address: m.IpAddress = get_object(session=session, otype="ip_address", ref=ref)
    if address.interface_id is None:
        raise InvalidInput("this address is on no interface, so on no device")
    interface = session.get(dcim.Interface, address.interface_id)
    assert interface is not None
    device = session.get(dcim.Device, interface.device_id)
    assert device is not None
    host = str(ipaddress.ip_interface(address.address).ip)
    column = "primary_ip4" if address.family == 4 else "primary_ip6"
    if getattr(device, column) != host:
        _set_primary(session, device, column, host)
    return read_one(session=session, otype="ip_address", obj=address)


def _set_primary(session: Session, device: dcim.Device, column: str, value: str | None) -> None:
    """Change a device's primary address column, audited and announced like any change."""
    before = getattr(device, column)
    setattr(device, column, value)
    session.flush()
    record_change(
        session, "update", "device", device.id, before={column: before}, after={column: value}
    )
    emit(
        session,
        "inventory.device.updated",
        "device",
        device.id,
        {"name": device.name, "changed": [column]},
    )


def release_primary(session: Session, address: m.IpAddress) -> None:
    """An address leaving its interface (moved, changed, deleted) stops being the primary."""
    if address.interface_id is None:
        return
    interface = session.get(dcim.Interface, address.interface_id)
    device = session.get(dcim.Device, interface.device_id) if interface is not None else None
    if device is None:
        return
    host = str(ipaddress.ip_interface(address.address).ip)
    column = "primary_ip4" if address.family == 4 else "primary_ip6"
    if getattr(device, column) == host:
        _set_primary(session, device, column, None)


def device_addresses(*, session: Session, device: int | str) -> list[dict[str, Any]]:
    """Every address on a device's interfaces, primary ones marked."""
    owner = rules.get(session, "device", device)
    rows = session.scalars(
        select(m.IpAddress)
        .join(dcim.Interface, dcim.Interface.id == m.IpAddress.interface_id)
        .where(dcim.Interface.device_id == owner.id)
        .order_by(m.IpAddress.family, m.IpAddress.host_key)
    ).all()
    return [
        s.IpAddressRead.model_validate(r).model_dump(mode="json")
        for r in reads.read(session, "ip_address", list(rows))
    ]


def device_circuits(*, session: Session, device: int | str) -> list[dict[str, Any]]:
    """The circuits cabled to a device's interfaces, with the interface and the far side."""
    owner = rules.get(session, "device", device)
    links = session.execute(
        select(dcim.Link.a_type, dcim.Link.a_id, dcim.Link.b_type, dcim.Link.b_id).where(
            or_(
                and_(dcim.Link.a_device_id == owner.id, dcim.Link.b_type == "circuit_termination"),
                and_(dcim.Link.b_device_id == owner.id, dcim.Link.a_type == "circuit_termination"),
            )
        )
    ).all()
    ends = {
        (b_id if b_type == "circuit_termination" else a_id): (
            a_id if b_type == "circuit_termination" else b_id
        )
        for a_type, a_id, b_type, b_id in links
    }
    out: list[dict[str, Any]] = []
    for term in session.scalars(
        select(m.CircuitTermination)
        .where(m.CircuitTermination.id.in_(list(ends)))
        .order_by(m.CircuitTermination.id)
    ):
        circuit = session.get(m.Circuit, term.circuit_id)
        interface = session.get(dcim.Interface, ends[term.id])
        far = reads.other_termination(session, term.id)
        far_end = reads.cable_end(session, "circuit_termination", far) if far else None
        row = read_one(session=session, otype="circuit", obj=circuit)
        row.update(
            interface=interface.name if interface is not None else None,
            term_side=term.term_side,
            far_site=far_end["site"] if far_end else None,
        )
        out.append(row)
    return out
