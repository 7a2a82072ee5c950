"""Many IPAM, circuit or power objects of one kind at once: checked together, written in bulk.

`write_many` is what an importer or the JSON bulk route calls instead of
`create_object` / `update_object` per row. Every row passes the same rules
(`rules.columns`), but what costs a query per row there is done once for the
batch: the objects rows reference by id (VRFs, sites, interfaces…) are loaded in
one query per table, and "no prefix or address twice in a VRF that enforces
uniqueness" is checked with one query per few thousand keys, against the
database and between the rows themselves. Prefix hierarchy and utilisation are
computed on read from the stored keys, so no row depends on another of its batch.

All or nothing: every problem is returned (row index, message, code) and then
nothing is written. Otherwise new rows are inserted in one flush and changed
ones updated in another; a row whose columns are already stored is left alone.
Addresses that leave their interface stop being their device's primary IP, as
with a single update. Audit and events follow the inventory's bulk rule: one
audit record and one event per object for a batch of at most `PER_OBJECT_LIMIT`
changes; a larger batch writes none per object and the caller records it once
(an import's summary record, see `popcorn.inventory.bulk.apply(then=...)`).
`connect_many` does the same for cables to circuit terminations and power feeds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.inventory import models as dcim
from popcorn.inventory.bulk.types import PER_OBJECT_LIMIT
from popcorn.inventory.ipam import models as m
from popcorn.inventory.ipam import rules, service
from popcorn.inventory.ipam import schemas as s
from popcorn.inventory.ipam.rules import Kind, kind_of
from popcorn.outbox import emit_many

__all__ = ["Connection", "Outcome", "connect_many", "write_many"]

# The references each kind's input may give by id, and the table each one names.
REFS: dict[str, dict[str, Any]] = {
    "asn": {"rir": m.Rir},
    "prefix": {"vrf": m.Vrf, "site": dcim.Site, "vlan": m.Vlan},
    "ip_range": {"vrf": m.Vrf},
    "ip_address": {"vrf": m.Vrf, "interface": dcim.Interface},
    "vlan_group": {"site": dcim.Site},
    "vlan": {"group": m.VlanGroup, "site": dcim.Site},
    "circuit": {"provider": m.Provider, "type": m.CircuitType},
    "circuit_termination": {"circuit": m.Circuit, "site": dcim.Site},
    "power_panel": {"site": dcim.Site, "location": dcim.Location},
    "power_feed": {"power_panel": m.PowerPanel, "rack": dcim.Rack},
}
CHUNK = 2000  # ids or keys per IN (...) query: well inside every database's parameter limit


@dataclass
class Outcome:
    """What a batch did: per row its object's id and verb, or every row's problem."""

    ids: list[int | None] = field(default_factory=list)
    verbs: list[str] = field(default_factory=list)  # "create" | "update" | "unchanged"
    errors: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    per_object: bool = True  # False: too many changes to audit one by one; record the batch


@dataclass
class _Planned:
    index: int
    cols: dict[str, Any]
    obj: Any  # the stored object an update changes; None for a new one
    key: tuple[Any, ...] | None = None


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _load(session: Session, model: Any, ids: set[int]) -> list[Any]:
    """Rows by id, a query per chunk; the caller holds them so `session.get` finds them."""
    found: list[Any] = []
    ordered = sorted(ids)
    for chunk in _chunks(ordered):
        found += session.scalars(select(model).where(model.id.in_(chunk))).all()
    return found


def write_many(
    session: Session,
    otype: str,
    items: Sequence[tuple[int | None, Mapping[str, Any]]],
    *,
    create_missing: bool = False,
) -> Outcome:
    """Create (target None) or update (target id) every item; all or nothing.

    `create_missing` makes an item whose target no longer exists a create (an importer's
    note of an object deleted since); otherwise it is refused as not found.
    """
    kind = kind_of(otype)
    out = Outcome(ids=[None] * len(items), verbs=[""] * len(items))
    targets = {t for t, _ in items if t is not None}
    stored = {obj.id: obj for obj in _load(session, kind.model, targets)}
    given: list[dict[str, Any] | None] = []
    for index, (target, data) in enumerate(items):
        obj = stored.get(target) if target is not None else None
        try:
            if target is not None and obj is None and not create_missing:
                raise NotFound(f"no {kind.label} {target}")
            given.append(_validated(kind, data, obj))
        except (InvalidInput, NotFound, Conflict) as exc:
            given.append(None)
            _refuse(out, index, exc)
    held = _preload(session, kind, given)  # noqa: F841  (kept alive: session.get finds them)
    planned: list[_Planned] = []
    for index, (target, _) in enumerate(items):
        values = given[index]
        if values is None:
            continue
        obj = stored.get(target) if target is not None else None
        try:
            cols = rules.columns(session, kind.name, values, obj, batch=True)
        except (InvalidInput, NotFound, Conflict) as exc:
            _refuse(out, index, exc)
            continue
        if obj is not None and all(getattr(obj, k, v) == v for k, v in cols.items()):
            out.ids[index], out.verbs[index] = obj.id, "unchanged"
            continue
        row = _Planned(index, cols, obj)
        if kind.name in rules.UNIQUE_IN_VRF:
            row.key = rules.unique_key(session, kind.name, cols, obj)
        planned.append(row)
    _check_unique(session, kind, planned, out)
    if out.errors:
        return out
    _write(session, kind, planned, out)
    out.counts.update(v for v in out.verbs if v)
    return out


def _refuse(out: Outcome, index: int, exc: InvalidInput | NotFound | Conflict) -> None:
    out.errors.append({"item": index, "message": exc.message, "code": exc.code})


def _validated(kind: Kind, data: Mapping[str, Any], obj: Any | None) -> dict[str, Any]:
    """The input checked against its schema: complete for a create, any fields for an update."""
    if obj is None:
        return service.validate(kind.schema, data)
    given = {
        k: v for k, v in service.validate(service.patch_schema(kind), data).items() if k != "id"
    }
    required = [n for n, f in kind.schema.model_fields.items() if f.is_required()]
    cleared = [n for n in required if n in given and given[n] is None]
    if cleared:
        raise InvalidInput(
            f"{cleared[0]}: cannot be empty", details={"fields": {cleared[0]: ["required"]}}
        )
    return given


def _preload(session: Session, kind: Kind, given: list[dict[str, Any] | None]) -> list[Any]:
    """Load every object the rows reference by id, one query per table."""
    wanted: dict[Any, set[int]] = {}
    for values in given:
        if values is None:
            continue
        for name, model in REFS.get(kind.name, {}).items():
            ref = values.get(name)
            if isinstance(ref, int) and not (name == "interface" and values.get("device")):
                wanted.setdefault(model, set()).add(ref)
    held: list[Any] = []
    for model, ids in wanted.items():
        held += _load(session, model, ids)
    return held


def _check_unique(session: Session, kind: Kind, planned: list[_Planned], out: Outcome) -> None:
    """No two rows, and no row and a stored object, with one key in a unique VRF."""
    keyed = [row for row in planned if row.key is not None]
    if not keyed:
        return
    names = rules.UNIQUE_IN_VRF[kind.name]
    moving = {row.obj.id for row in planned if row.obj is not None}
    holders: dict[tuple[Any, ...], int] = {}
    keys = sorted({row.key for row in keyed if row.key is not None}, key=repr)
    for vrf_id in {k[0] for k in keys}:
        rest = [k[1:] for k in keys if k[0] == vrf_id]
        space = kind.model.vrf_id
        columns = [getattr(kind.model, name) for name in names[1:]]
        for chunk in _chunks(rest):
            stmt = select(kind.model.id, *columns).where(
                space.is_(None) if vrf_id is None else space == vrf_id,
                tuple_(*columns).in_(list(chunk)),
            )
            for ident, *values in session.execute(stmt):
                if ident not in moving:  # a row of the batch changes its key: its new one counts
                    holders.setdefault((vrf_id, *values), ident)
    first: dict[tuple[Any, ...], _Planned] = {}
    for row in keyed:
        assert row.key is not None
        clash = holders.get(row.key)
        if clash is not None:
            _refuse(out, row.index, rules.duplicate(session, kind.name, row.key, clash))
        elif row.key in first:
            other = first[row.key].index
            _refuse(out, row.index, rules.duplicate(session, kind.name, row.key, 0, item=other))
        else:
            first[row.key] = row


def _write(session: Session, kind: Kind, planned: list[_Planned], out: Outcome) -> None:
    """Insert the new rows and update the changed ones, then audit and announce them."""
    per_object = len(planned) <= PER_OBJECT_LIMIT
    new = [row for row in planned if row.obj is None]
    changed = [row for row in planned if row.obj is not None]
    before = {row.obj.id: service.stored(row.obj) for row in changed}
    for row in changed:
        if kind.name == "ip_address" and any(
            k in row.cols and row.cols[k] != getattr(row.obj, k)
            for k in ("address", "interface_id", "vrf_id")
        ):
            service.release_primary(session, row.obj)
        for name, value in row.cols.items():
            setattr(row.obj, name, value)
    created: list[Any] = []
    try:
        with session.begin_nested():
            if per_object:  # objects, so their audit records show every stored column
                created = [kind.model(**row.cols) for row in new]
                session.add_all(created)
                session.flush()
                idents = [obj.id for obj in created]
            else:
                session.flush()
                idents = _insert(session, kind, [row.cols for row in new])
    except IntegrityError as exc:
        detail = str(exc.orig).splitlines()[0]
        raise Conflict(f"the change conflicts with stored data: {detail}") from None
    for row, ident in zip(new, idents, strict=True):
        out.ids[row.index], out.verbs[row.index] = ident, "create"
    for row in changed:
        out.ids[row.index], out.verbs[row.index] = row.obj.id, "update"
    if not per_object:
        out.per_object = False
        return
    events: list[tuple[str, str, Any, dict[str, Any]]] = []
    for obj in created:
        record_change(session, "create", kind.name, obj.id, after=service.stored(obj))
        events.append(
            (f"inventory.{kind.name}.created", kind.name, obj.id, service.event_payload(obj))
        )
    for row in changed:
        after = service.stored(row.obj)
        old = before[row.obj.id]
        diff = sorted(k for k in after if after[k] != old.get(k) and k != "updated_at")
        record_change(session, "update", kind.name, row.obj.id, before=old, after=after)
        payload = {**service.event_payload(row.obj), "changed": diff}
        events.append((f"inventory.{kind.name}.updated", kind.name, row.obj.id, payload))
    emit_many(session, events)


def _insert(session: Session, kind: Kind, rows: list[dict[str, Any]]) -> list[int]:
    """Insert rows with executemany, a statement per set of columns given (the others take
    their defaults); returns the new ids in the rows' order."""
    table = kind.model.__table__
    idents: list[int] = [0] * len(rows)
    shapes: dict[frozenset[str], list[int]] = {}
    for index, row in enumerate(rows):
        shapes.setdefault(frozenset(row), []).append(index)
    for places in shapes.values():
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        found = session.execute(stmt, [rows[i] for i in places]).scalars().all()
        for index, ident in zip(places, found, strict=True):
            idents[index] = ident
    return idents


# --- cables to circuit terminations and power feeds -------------------------------------------

# The device ports a cable to each kind may take (`service._near_end`); interfaces go to circuits.
NEAR_PORTS = {"circuit_termination": ("front-port", "rear-port"), "power_feed": ("power-port",)}
ENDS: dict[str, Any] = {
    "interface": dcim.Interface,
    "port": dcim.Port,
    "circuit_termination": m.CircuitTermination,
    "power_feed": m.PowerFeed,
}


@dataclass(frozen=True)
class Connection:
    """One cable to make: circuit termination or power feed `end` (of `kind`) to a device's
    interface or port (`near_type` "interface" or "port", id `near`), with the cable's
    `type`, `label` and `description` in `data`."""

    kind: str
    end: int
    near_type: str
    near: int
    data: Mapping[str, Any] = field(default_factory=dict)


def connect_many(session: Session, items: Sequence[Connection]) -> Outcome:
    """`service.connect` for many cables at once (an importer's): all or nothing.

    The same rules as one connect, but the ends are loaded with a query per table and the
    new links written in one flush. A cable already made is `unchanged`; an end cabled
    elsewhere is cabled again (its old cable removed, as `service.disconnect` would); a
    device end already connected, or taken twice in the batch, is refused. Audit records
    and events per cable for at most `PER_OBJECT_LIMIT` changes; the caller records a larger
    batch once, as with `write_many`."""
    out = Outcome(ids=[None] * len(items), verbs=[""] * len(items))
    wanted: dict[str, set[int]] = {}
    for item in items:
        wanted.setdefault(item.kind, set()).add(item.end)
        wanted.setdefault(item.near_type, set()).add(item.near)
    loaded = {
        name: {o.id: o for o in _load(session, ENDS[name], ids)} for name, ids in wanted.items()
    }
    planned: list[tuple[int, Connection, Any, Any, dict[str, Any]]] = []
    for index, item in enumerate(items):
        try:
            end, part, cols = _checked(session, item, loaded)
        except (InvalidInput, NotFound, Conflict) as exc:
            _refuse(out, index, exc)
            continue
        if end.link_id is not None and end.link_id == part.link_id:
            out.ids[index], out.verbs[index] = end.link_id, "unchanged"
            continue
        planned.append((index, item, end, part, cols))
    replaced = {end.link_id for _, _, end, _, _ in planned if end.link_id is not None}
    seen: set[tuple[str, int]] = set()
    for index, item, end, part, _ in planned:
        twice = [k for k in ((item.kind, end.id), (item.near_type, part.id)) if k in seen]
        seen.update(((item.kind, end.id), (item.near_type, part.id)))
        if twice:
            what = f"{twice[0][0].replace('_', ' ')} {twice[0][1]}"
            _refuse(out, index, Conflict(f"{what} is cabled twice in this batch"))
        elif part.link_id is not None and part.link_id not in replaced:
            where = _label(session, part)
            _refuse(out, index, Conflict(f"{where} is already connected (link {part.link_id})"))
    if out.errors:
        return out
    per_object = len(planned) + len(replaced) <= PER_OBJECT_LIMIT
    _drop_links(session, replaced, per_object)
    links = [
        dcim.Link(
            a_type=item.near_type,
            a_id=part.id,
            a_device_id=part.device_id,
            b_type=item.kind,
            b_id=end.id,
            b_device_id=None,
            status="connected",
            type=cols.get("type", ""),
            label=cols.get("label", ""),
            description=cols.get("description", ""),
        )
        for _, item, end, part, cols in planned
    ]
    try:
        with session.begin_nested():
            session.add_all(links)
            session.flush()
            for (_, _, end, part, _), link in zip(planned, links, strict=True):
                end.link_id = part.link_id = link.id
            session.flush()
    except IntegrityError as exc:
        detail = str(exc.orig).splitlines()[0]
        raise Conflict(f"the change conflicts with stored data: {detail}") from None
    for (index, _, _, _, _), link in zip(planned, links, strict=True):
        out.ids[index], out.verbs[index] = link.id, "create"
    out.counts.update(v for v in out.verbs if v)
    if not per_object:
        out.per_object = False
        return out
    names = dict(
        session.execute(
            select(dcim.Device.id, dcim.Device.name).where(
                dcim.Device.id.in_({part.device_id for _, _, _, part, _ in planned})
            )
        ).all()
    )
    events: list[tuple[str, str, Any, dict[str, Any]]] = []
    for (_, item, end, part, _), link in zip(planned, links, strict=True):
        record_change(session, "create", "link", link.id, after=service.stored(link))
        payload = {
            "a_device": names.get(part.device_id),
            "a_name": part.name,
            "b_type": item.kind,
            "b_id": end.id,
        }
        events.append(("inventory.link.created", "link", link.id, payload))
    emit_many(session, events)
    return out


def _checked(
    session: Session, item: Connection, loaded: dict[str, dict[int, Any]]
) -> tuple[Any, Any, dict[str, Any]]:
    """The cable's two ends and its validated fields, or the error one connect would give."""
    if item.kind not in NEAR_PORTS or item.near_type not in ("interface", "port"):
        raise InvalidInput("only circuit terminations and power feeds are connected here")
    end = loaded[item.kind].get(item.end)
    if end is None:
        raise NotFound(f"no {kind_of(item.kind).label} {item.end}")
    part = loaded[item.near_type].get(item.near)
    if part is None:
        raise NotFound(f"no {item.near_type} {item.near}")
    if item.near_type == "interface" and item.kind != "circuit_termination":
        raise InvalidInput("port: required", details={"fields": {"port": ["required"]}})
    kinds = NEAR_PORTS[item.kind]
    if item.near_type == "port" and part.kind not in kinds:
        raise NotFound(f"{_label(session, part)} is not a {' or '.join(kinds)}")
    given = {"device": part.device_id, item.near_type: part.id, **item.data}
    cols = service.validate(s.ConnectIn, given)
    return end, part, cols


def _label(session: Session, part: Any) -> str:
    """A device end as an error names it ("'PSU1' on 'mx1'"); read only for an error."""
    device = session.get(dcim.Device, part.device_id)
    return f"{part.name!r} on {device.name if device else part.device_id!r}"


def _drop_links(session: Session, ids: set[int], per_object: bool) -> None:
    """Remove the cables of ends cabled again: their ends are freed, then the links go."""
    if not ids:
        return
    links = _load(session, dcim.Link, ids)
    for link in links:
        for end_type, end_id in ((link.a_type, link.a_id), (link.b_type, link.b_id)):
            held = session.get(ENDS[end_type], end_id)
            if held is not None:
                held.link_id = None
    session.flush()
    before = [service.stored(link) for link in links]
    for link in links:
        session.delete(link)
    session.flush()
    if not per_object:
        return
    events: list[tuple[str, str, Any, dict[str, Any]]] = []
    for row in before:
        record_change(session, "delete", "link", row["id"], before=row)
        payload = {"b_type": row["b_type"], "b_id": row["b_id"]}
        events.append(("inventory.link.deleted", "link", row["id"], payload))
    emit_many(session, events)
