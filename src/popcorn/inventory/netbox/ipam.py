"""NetBox IPAM, circuits and power models onto `popcorn.inventory.ipam`.

These objects are written after the DCIM batch, through the IPAM service (its
rules: no duplicate address in a VRF that enforces uniqueness, prefixes
normalised…), one checked batch per NetBox model in dependency order
(`ipam.batch.write_many`). References are given
as Popcorn ids, found through the NetBox ids noted for every record already
written, so a NetBox address lands on the very interface its record named.
Re-importing updates the object a NetBox record became, or leaves it as it is.
Cables from a device to a circuit termination or a power feed are made last, all
together (`batch.connect_many`), as the DCIM batch makes the others.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput
from popcorn.inventory.ipam import batch, service
from popcorn.inventory.ipam import schemas as s
from popcorn.inventory.ipam.rules import KINDS
from popcorn.inventory.netbox.registry import (
    LATE,
    LATE_ENDS,
    LATE_ORDER,
    Dump,
    Record,
    choice,
    compact,
    late,
    text,
)

Ids = dict[tuple[str, Any], int]
LATE_ENDS.update(
    {"circuits.circuittermination": "circuit_termination", "dcim.powerfeed": "power_feed"}
)


def _scope(dump: Dump, fields: Record, model: str) -> Any:
    """A NetBox 4.2 scope (`scope_type`, `scope_id`) or the older direct field, if it names one."""
    if dump.content_type(fields.get("scope_type")) == model:
        return fields.get("scope_id")
    return None


def _id(ids: Ids, model: str, pk: Any) -> int | None:
    return None if pk is None else ids.get((model, pk))


@late("ipam.rir")
def rir(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    return "rir", compact(
        {
            "name": text(fields.get("name"), 100),
            "slug": fields.get("slug"),
            "is_private": bool(fields.get("is_private")),
            "description": text(fields.get("description")),
        }
    )


@late("ipam.asn")
def asn(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {"asn": fields.get("asn"), "rir": _id(ids, "ipam.rir", fields.get("rir"))}
    return "asn", compact({**data, "description": text(fields.get("description"))})


@late("ipam.vrf")
def vrf(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "name": text(fields.get("name"), 100),
        "rd": fields.get("rd") or None,
        "enforce_unique": fields.get("enforce_unique", True),
        "description": text(fields.get("description")),
    }
    return "vrf", compact(data) | {"enforce_unique": bool(data["enforce_unique"])}


@late("ipam.vlangroup")
def vlan_group(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "name": text(fields.get("name"), 100),
        "slug": fields.get("slug"),
        "site": _id(ids, "dcim.site", _scope(dump, fields, "dcim.site")),
        "min_vid": fields.get("min_vid"),
        "max_vid": fields.get("max_vid"),
        "description": text(fields.get("description")),
    }
    return "vlan_group", compact(data)


@late("ipam.vlan")
def vlan(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "vid": fields.get("vid"),
        "name": text(fields.get("name"), 64),
        "group": _id(ids, "ipam.vlangroup", fields.get("group")),
        "site": _id(ids, "dcim.site", fields.get("site")),
        "status": choice(fields.get("status"), s.VLAN_STATUSES, "active"),
        "description": text(fields.get("description")),
    }
    return "vlan", compact(data)


@late("ipam.prefix")
def prefix(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    site = fields.get("site", _scope(dump, fields, "dcim.site"))  # 3.x/4.1, 4.2
    data = {
        "prefix": fields.get("prefix"),
        "vrf": _id(ids, "ipam.vrf", fields.get("vrf")),
        "site": _id(ids, "dcim.site", site),
        "vlan": _id(ids, "ipam.vlan", fields.get("vlan")),
        "status": choice(fields.get("status"), s.PREFIX_STATUSES, "active"),
        "is_pool": bool(fields.get("is_pool")),
        "mark_utilized": bool(fields.get("mark_utilized")),
        "description": text(fields.get("description")),
    }
    return "prefix", compact(data) | {k: data[k] for k in ("is_pool", "mark_utilized")}


@late("ipam.iprange")
def ip_range(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "start_address": fields.get("start_address"),
        "end_address": fields.get("end_address"),
        "vrf": _id(ids, "ipam.vrf", fields.get("vrf")),
        "status": choice(fields.get("status"), s.RANGE_STATUSES, "active"),
        "mark_utilized": bool(fields.get("mark_utilized")),
        "description": text(fields.get("description")),
    }
    return "ip_range", compact(data) | {"mark_utilized": data["mark_utilized"]}


@late("ipam.ipaddress")
def ip_address(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    owner = dump.content_type(fields.get("assigned_object_type"))
    interface = None
    if owner == "dcim.interface":
        interface = _id(ids, "dcim.interface", fields.get("assigned_object_id"))
    data = {
        "address": fields.get("address"),
        "vrf": _id(ids, "ipam.vrf", fields.get("vrf")),
        "status": choice(fields.get("status"), s.IP_STATUSES, "active"),
        "role": choice(fields.get("role"), s.IP_ROLES),
        "interface": interface,
        "dns_name": text(fields.get("dns_name"), 255),
        "description": text(fields.get("description")),
    }
    return "ip_address", compact(data)


@late("circuits.provider")
def provider(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "name": text(fields.get("name"), 100),
        "slug": fields.get("slug"),
        "asn": fields.get("asn"),  # NetBox 3.x; later ASNs are objects
        "description": text(fields.get("description")),
        "comments": text(fields.get("comments"), 100_000),
    }
    return "provider", compact(data)


@late("circuits.circuittype")
def circuit_type(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "name": text(fields.get("name"), 100),
        "slug": fields.get("slug"),
        "description": text(fields.get("description")),
    }
    return "circuit_type", compact(data)


@late("circuits.circuit")
def circuit(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "cid": text(fields.get("cid"), 100),
        "provider": _id(ids, "circuits.provider", fields.get("provider")),
        "type": _id(ids, "circuits.circuittype", fields.get("type")),
        "status": choice(fields.get("status"), s.CIRCUIT_STATUSES, "active"),
        "install_date": fields.get("install_date"),
        "termination_date": fields.get("termination_date"),
        "commit_rate": fields.get("commit_rate"),
        "description": text(fields.get("description")),
        "comments": text(fields.get("comments"), 100_000),
    }
    return "circuit", compact(data)


@late("circuits.circuittermination")
def circuit_termination(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    site = fields.get("site")  # 3.x to 4.1
    if dump.content_type(fields.get("termination_type")) == "dcim.site":  # 4.2
        site = fields.get("termination_id")
    data = {
        "circuit": _id(ids, "circuits.circuit", fields.get("circuit")),
        "term_side": fields.get("term_side"),
        "site": _id(ids, "dcim.site", site),
        "port_speed": fields.get("port_speed"),
        "upstream_speed": fields.get("upstream_speed"),
        "xconnect_id": text(fields.get("xconnect_id"), 50),
        "pp_info": text(fields.get("pp_info"), 100),
        "description": text(fields.get("description")),
    }
    return "circuit_termination", compact(data)


@late("dcim.powerpanel")
def power_panel(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "site": _id(ids, "dcim.site", fields.get("site")),
        "name": text(fields.get("name"), 100),
        "location": _id(ids, "dcim.location", fields.get("location")),
        "description": text(fields.get("description")),
    }
    return "power_panel", compact(data)


@late("dcim.powerfeed")
def power_feed(dump: Dump, pk: Any, fields: Record, ids: Ids) -> tuple[str, Record]:
    data = {
        "power_panel": _id(ids, "dcim.powerpanel", fields.get("power_panel")),
        "rack": _id(ids, "dcim.rack", fields.get("rack")),
        "name": text(fields.get("name"), 100),
        "status": choice(fields.get("status"), s.FEED_STATUSES, "active"),
        "type": choice(fields.get("type"), s.FEED_TYPES, "primary"),
        "supply": choice(fields.get("supply"), s.FEED_SUPPLIES, "ac"),
        "phase": choice(fields.get("phase"), s.FEED_PHASES, "single-phase"),
        "voltage": fields.get("voltage"),
        "amperage": fields.get("amperage"),
        "max_utilization": fields.get("max_utilization"),
        "description": text(fields.get("description")),
    }
    return "power_feed", compact(data)


# --- writing ----------------------------------------------------------------------------


class _Assumed(dict[tuple[str, Any], int]):
    """Ids for a dry run: every named record counts as found (the DCIM batch was not written)."""

    def get(self, key: tuple[str, Any], default: Any = None) -> Any:
        return super().get(key, 0)


@dataclass
class Written:
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    # NetBox (model, pk) -> (Popcorn kind, id) of every object written here.
    notes: dict[tuple[str, Any], tuple[str, int]] = field(default_factory=dict)

    def count(self, kind: str, what: str) -> None:
        self.counts.setdefault(KINDS[kind].path.replace("-", "_"), Counter())[what] += 1


def write(
    session: Session,
    dump: Dump,
    ids: Ids,
    cables: list[tuple[Any, Record, dict[str, tuple[str, Any]]]],
    *,
    dry_run: bool,
) -> Written:
    """Create or update every IPAM, circuit and power record, then their cables.

    Raises InvalidInput with every problem (each named by NetBox model and id);
    the caller's transaction then writes nothing at all.
    """
    done = Written()
    if dry_run:  # nothing before was written: references are taken as found, checked on a write
        ids = _Assumed(ids)
    for model in LATE_ORDER:
        mapped = [(pk, *LATE[model](dump, pk, f, ids)) for pk, f in dump.all(model).items()]
        if dry_run:
            for pk, kind, data in mapped:
                try:
                    service.validate(KINDS[kind].schema, data)
                    done.count(kind, "create")
                except InvalidInput as exc:
                    done.errors.append(
                        {"where": f"{model} {pk}", "field": "", "message": exc.message}
                    )
        elif mapped:
            _write_model(session, done, ids, model, mapped)
    if not dry_run and cables:
        _cables(session, done, ids, cables)
    if done.errors:
        raise InvalidInput(
            f"{len(done.errors)} NetBox record(s) refused; nothing was written",
            details={"errors": done.errors[:1000], "count": len(done.errors)},
        )
    return done


def _write_model(
    session: Session, done: Written, ids: Ids, model: str, mapped: list[tuple[Any, str, Record]]
) -> None:
    """Every record of one NetBox model as one checked batch: created, updated or unchanged."""
    kind = mapped[0][1]
    items = [(ids.get((model, pk)), data) for pk, _, data in mapped]
    outcome = batch.write_many(session, kind, items, create_missing=True)
    for error in outcome.errors:
        where = f"{model} {mapped[error['item']][0]}"
        done.errors.append({"where": where, "field": "", "message": error["message"]})
    for (pk, _, _), ident, verb in zip(mapped, outcome.ids, outcome.verbs, strict=True):
        if ident is not None:
            ids[(model, pk)] = ident
            done.notes[(model, pk)] = (kind, ident)
            done.count(kind, verb)


def _cables(
    session: Session,
    done: Written,
    ids: Ids,
    cables: list[tuple[Any, Record, dict[str, tuple[str, Any]]]],
) -> None:
    """Cables between a device's interface (or port) and a circuit termination or power
    feed, made together by `batch.connect_many` (the other cables went in the DCIM batch)."""
    items: list[batch.Connection] = []
    pks: list[Any] = []
    for pk, fields, ends in cables:
        far = next(e for e in ends.values() if e[0] in LATE_ENDS)
        near = next(e for e in ends.values() if e[0] not in LATE_ENDS)
        end_id, near_id = ids.get(far), ids.get(near)
        if end_id is None or near_id is None:
            message = "a cable end that was not imported"
            done.errors.append({"where": f"dcim.cable {pk}", "field": "", "message": message})
            continue
        data = {
            "type": text(fields.get("type"), 20),
            "label": text(fields.get("label"), 100),
            "description": text(fields.get("description")),
        }
        near_type = "interface" if near[0] == "dcim.interface" else "port"
        items.append(batch.Connection(LATE_ENDS[far[0]], end_id, near_type, near_id, data))
        pks.append(pk)
    outcome = batch.connect_many(session, items)
    for error in outcome.errors:
        where = f"dcim.cable {pks[error['item']]}"
        done.errors.append({"where": where, "field": "", "message": error["message"]})
    for pk, ident, verb in zip(pks, outcome.ids, outcome.verbs, strict=True):
        if ident is not None:
            done.notes[("dcim.cable", pk)] = ("link", ident)
            done.counts.setdefault("links", Counter())[verb] += 1
