"""What each IPAM, circuit and power object type is, and the rules a change must pass.

`KINDS` names every type (with its API path, table, schemas, natural keys and
filters). `columns()` turns a validated input dict into table columns:
references resolved (id or natural key), addresses normalised, and every rule
NetBox applies checked (duplicate addresses in a VRF, VLAN ids in their group,
a feed's rack at its panel's site…). A broken rule raises InvalidInput (422),
a duplicate Conflict (409), an unknown reference NotFound (404), before anything
is written.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.inventory import models as dcim
from popcorn.inventory.ipam import models as m
from popcorn.inventory.ipam import schemas as s
from popcorn.lookup import parse_id
from popcorn.schemas import ReadSchema, Schema


@dataclass(frozen=True)
class Kind:
    name: str
    path: str
    label: str
    model: Any
    schema: type[Schema]
    read: type[ReadSchema]
    keys: tuple[str, ...] = ()  # columns a text reference may name
    filters: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    refs: dict[str, str] = field(default_factory=dict)  # filter name -> reference kind


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("rir", "rirs", "RIR", m.Rir, s.RirIn, s.RirRead, ("slug", "name"),
             ("name", "slug", "is_private"), ("name",)),
        Kind("asn", "asns", "ASN", m.Asn, s.AsnIn, s.AsnRead, ("asn",), ("asn",),
             refs={"rir": "rir"}),
        Kind("vrf", "vrfs", "VRF", m.Vrf, s.VrfIn, s.VrfRead, ("rd", "name"),
             ("name", "rd", "enforce_unique"), ("name", "rd")),
        Kind("prefix", "prefixes", "prefix", m.Prefix, s.PrefixIn, s.PrefixRead, ("prefix",),
             ("prefix", "family", "status", "is_pool"), ("prefix", "description"),
             {"vrf": "vrf", "site": "site"}),
        Kind("ip_range", "ip-ranges", "IP range", m.IpRange, s.IpRangeIn, s.IpRangeRead, (),
             ("family", "status"), ("start_address", "description"), {"vrf": "vrf"}),
        Kind("ip_address", "ip-addresses", "IP address", m.IpAddress, s.IpAddressIn,
             s.IpAddressRead, ("address",), ("address", "family", "status", "role",
             "interface_id", "dns_name"), ("address", "dns_name", "description"),
             {"vrf": "vrf"}),
        Kind("vlan_group", "vlan-groups", "VLAN group", m.VlanGroup, s.VlanGroupIn,
             s.VlanGroupRead, ("slug", "name"), ("name", "slug"), ("name",), {"site": "site"}),
        Kind("vlan", "vlans", "VLAN", m.Vlan, s.VlanIn, s.VlanRead, (), ("vid", "name", "status"),
             ("name",), {"group": "vlan_group", "site": "site"}),
        Kind("provider", "providers", "provider", m.Provider, s.ProviderIn, s.ProviderRead,
             ("slug", "name"), ("name", "slug", "asn"), ("name",)),
        Kind("circuit_type", "circuit-types", "circuit type", m.CircuitType, s.CircuitTypeIn,
             s.CircuitTypeRead, ("slug", "name"), ("name", "slug"), ("name",)),
        Kind("circuit", "circuits", "circuit", m.Circuit, s.CircuitIn, s.CircuitRead, ("cid",),
             ("cid", "status", "commit_rate"), ("cid", "description"),
             {"provider": "provider", "type": "circuit_type"}),
        Kind("circuit_termination", "circuit-terminations", "circuit termination",
             m.CircuitTermination, s.CircuitTerminationIn, s.CircuitTerminationRead, (),
             ("term_side", "xconnect_id"), ("xconnect_id", "description"),
             {"circuit": "circuit", "site": "site"}),
        Kind("power_panel", "power-panels", "power panel", m.PowerPanel, s.PowerPanelIn,
             s.PowerPanelRead, ("name",), ("name", "location_note"), ("name", "location_note"),
             {"site": "site", "location": "location"}),
        Kind("power_feed", "power-feeds", "power feed", m.PowerFeed, s.PowerFeedIn,
             s.PowerFeedRead, ("name",), ("name", "status", "type", "supply", "phase",
             "voltage", "amperage"), ("name", "description"),
             {"power_panel": "power_panel", "rack": "rack"}),
    )
}  # fmt: skip
BY_PATH = {k.path: k.name for k in KINDS.values()}


def is_kind(name: str) -> bool:
    """Whether `name` (e.g. "prefix", "prefixes", "ip-addresses") is an IPAM, circuit or
    power type."""
    key = name.strip().lower()
    return key.replace("-", "_") in KINDS or key.replace("_", "-") in BY_PATH


def kind_of(name: str) -> Kind:
    key = name.strip().lower()
    found = KINDS.get(key.replace("-", "_")) or KINDS.get(BY_PATH.get(key, ""))
    if found is None:
        raise InvalidInput(f"unknown object type {name!r}", details={"allowed": list(BY_PATH)})
    return found


# --- references ----------------------------------------------------------------------------

_DCIM_KEYS: dict[str, tuple[Any, tuple[str, ...], str]] = {
    "site": (dcim.Site, ("code", "name"), "site"),
    "rack": (dcim.Rack, ("name",), "rack"),
    "device": (dcim.Device, ("name",), "device"),
    "location": (dcim.Location, ("slug", "name"), "location"),
}


def get(session: Session, kind: str, ref: Any, *, where: Mapping[str, Any] | None = None) -> Any:
    """The object `ref` names: an id, or a natural key (unique once `where` narrows it)."""
    if kind in _DCIM_KEYS:
        model, keys, label = _DCIM_KEYS[kind]
    else:
        model, keys, label = KINDS[kind].model, KINDS[kind].keys, KINDS[kind].label
    text = str(ref).strip()
    ident = parse_id(ref) if isinstance(ref, int) or text.isdigit() else None
    if ident is not None:
        found = session.get(model, ident)
        if found is not None and all(getattr(found, k) == v for k, v in (where or {}).items()):
            return found
    for key in keys:
        value: Any = text
        if key == "asn":
            if not (text.isascii() and text.isdigit() and int(text) <= 4294967295):
                continue
            value = int(text)
        stmt = select(model).where(getattr(model, key) == value)
        for column, value in (where or {}).items():
            stmt = stmt.where(getattr(model, column) == value)
        rows = session.scalars(stmt.limit(2)).all()
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise InvalidInput(f"{label} {text!r} is ambiguous: give its id", details={kind: text})
    raise NotFound(f"no {label} {text!r}", details={kind: text})


def _ref(session: Session, kind: str, value: Any, **where: Any) -> int | None:
    return None if value is None else int(get(session, kind, value, where=where or None).id)


def key(address: ipaddress.IPv4Address | ipaddress.IPv6Address | int) -> str:
    """The sort key of an address: 32 hex digits, ordered as the addresses are."""
    return f"{int(address):032x}"


def slugify(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:100] or "x"


# --- per-kind rules ----------------------------------------------------------------------


def columns(
    session: Session, kind: str, data: dict[str, Any], existing: Any | None, *, batch: bool = False
) -> dict[str, Any]:
    """Table columns for `data` (a validated input, partial on update), every rule checked.

    `batch=True` leaves out the one check a batch makes for all its rows at once: no
    prefix or address twice in a VRF that enforces uniqueness (see `unique_key`)."""
    cols = dict(data)
    rule = _RULES.get(kind)
    if rule is not None:
        rule(session, cols, existing)
    if not batch and kind in UNIQUE_IN_VRF:
        found = unique_key(session, kind, cols, existing)
        if found is not None:
            _check_unique(session, kind, found, existing)
    return cols


# Kinds whose key may appear once per VRF that enforces uniqueness: kind -> key columns.
UNIQUE_IN_VRF: dict[str, tuple[str, ...]] = {
    "prefix": ("vrf_id", "prefix"),
    "ip_address": ("vrf_id", "family", "host_key"),
}


def unique_key(
    session: Session, kind: str, cols: dict[str, Any], existing: Any | None
) -> tuple[Any, ...] | None:
    """The key (values of `UNIQUE_IN_VRF[kind]`) no other object may share; None when the
    object's VRF does not enforce uniqueness (or an address's role allows sharing)."""
    vrf_id = _merged(cols, existing, "vrf_id")
    vrf = None if vrf_id is None else session.get(m.Vrf, vrf_id)
    if not _unique_here(vrf):
        return None
    if kind == "ip_address" and _merged(cols, existing, "role") in s.SHARED_ROLES:
        return None
    return tuple(_merged(cols, existing, name) for name in UNIQUE_IN_VRF[kind])


def duplicate(
    session: Session, kind: str, key: tuple[Any, ...], clash: int, *, item: int | None = None
) -> Conflict:
    """The error for an object whose unique key object `clash` (or row `item` of the same
    batch, not yet written) already holds."""
    vrf = None if key[0] is None else session.get(m.Vrf, key[0])
    if kind == "prefix":
        what, field, details = f"{key[1]} already exists in", "prefix", {"prefix": clash}
        held = f"prefix {clash}"
    else:
        family = ipaddress.IPv4Address if key[1] == 4 else ipaddress.IPv6Address
        what, field, details = f"{family(int(key[2], 16))} is already in", "address", {}
        found = session.get(m.IpAddress, clash)
        held = f"IP address {clash}" + ("" if found is None else f", {found.address}")
        details = {"ip_address": clash}
    if item is not None:
        held, details = f"item {item} of this batch", {"item": item}
    return Conflict(
        f"{field}: {what} {_space(vrf)} ({held})",
        details={"fields": {field: ["duplicate"]}, **details},
    )


def _check_unique(session: Session, kind: str, found: tuple[Any, ...], existing: Any) -> None:
    where = dict(zip(UNIQUE_IN_VRF[kind], found, strict=True))
    clash = _clash(session, KINDS[kind].model, existing, **where)
    if clash is not None:
        raise duplicate(session, kind, found, clash)


def _clash(session: Session, model: Any, existing: Any | None, **where: Any) -> int | None:
    """Another stored object (not `existing`) with these column values: a duplicate."""
    stmt = select(model.id).where(model.id != getattr(existing, "id", 0))
    for name, value in where.items():
        column = getattr(model, name)
        stmt = stmt.where(column.is_(None) if value is None else column == value)
    found: int | None = session.scalar(stmt.limit(1))
    return found


def _merged(cols: dict[str, Any], existing: Any | None, name: str) -> Any:
    return cols[name] if name in cols else getattr(existing, name, None)


def _slugged(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    if existing is None and not cols.get("slug"):
        cols["slug"] = slugify(cols["name"])


def _asn(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    if "rir" in cols:
        cols["rir_id"] = _ref(session, "rir", cols.pop("rir"))


def _vrf_of(session: Session, cols: dict[str, Any], existing: Any | None) -> m.Vrf | None:
    if "vrf" in cols:
        ref = cols.pop("vrf")
        vrf = None if ref is None else get(session, "vrf", ref)
        cols["vrf_id"] = None if vrf is None else vrf.id
        return vrf
    vrf_id = getattr(existing, "vrf_id", None)
    return None if vrf_id is None else session.get(m.Vrf, vrf_id)


def _unique_here(vrf: m.Vrf | None) -> bool:
    """NetBox's rule: a VRF enforces unique space when it says so; the global table always."""
    return True if vrf is None else vrf.enforce_unique


def _vrf_clause(model: Any, vrf: m.Vrf | None) -> Any:
    return model.vrf_id.is_(None) if vrf is None else model.vrf_id == vrf.id


def _prefix(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    _vrf_of(session, cols, existing)
    if "site" in cols:
        cols["site_id"] = _ref(session, "site", cols.pop("site"))
    if "vlan" in cols:
        cols["vlan_id"] = _ref(session, "vlan", cols.pop("vlan"))
    prefix = _merged(cols, existing, "prefix")
    network = ipaddress.ip_network(prefix)
    cols["family"] = network.version
    cols["start_key"] = key(network.network_address)
    cols["end_key"] = key(network.broadcast_address)


def _space(vrf: m.Vrf | None) -> str:
    return "the global table" if vrf is None else f"VRF {vrf.name!r}"


def _ip_range(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    vrf = _vrf_of(session, cols, existing)
    start = ipaddress.ip_interface(_merged(cols, existing, "start_address"))
    end = ipaddress.ip_interface(_merged(cols, existing, "end_address"))
    if start.version != end.version:
        raise InvalidInput("end_address: not the same family as start_address")
    if start.network.prefixlen != end.network.prefixlen:
        raise InvalidInput("end_address: the mask differs from start_address's")
    if int(end.ip) < int(start.ip):
        raise InvalidInput("end_address: comes before start_address")
    cols["family"] = start.version
    cols["start_key"], cols["end_key"] = key(start.ip), key(end.ip)
    overlap = session.execute(
        select(m.IpRange.id, m.IpRange.start_address, m.IpRange.end_address).where(
            _vrf_clause(m.IpRange, vrf),
            m.IpRange.family == start.version,
            m.IpRange.start_key <= cols["end_key"],
            m.IpRange.end_key >= cols["start_key"],
            m.IpRange.id != getattr(existing, "id", 0),
        )
    ).first()
    if overlap is not None:
        ident, low, high = overlap
        raise Conflict(
            f"start_address: overlaps IP range {ident} ({low} - {high}) in {_space(vrf)}",
            details={"ip_range": ident},
        )


def _ip_address(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    _vrf_of(session, cols, existing)
    if "interface" in cols or "device" in cols:
        interface, device = cols.pop("interface", None), cols.pop("device", None)
        if interface is None and device is not None:
            raise InvalidInput("interface: required with device")
        cols["interface_id"] = (
            None if interface is None else interface_id(session, device, interface)
        )
    address = ipaddress.ip_interface(_merged(cols, existing, "address"))
    cols["family"] = address.version
    cols["host_key"] = key(address.ip)


def interface_id(session: Session, device: Any, interface: Any) -> int:
    """An interface by id, or by name on a device (given by id or name)."""
    if device is None:
        ident = parse_id(interface)
        found = session.get(dcim.Interface, ident) if ident is not None else None
        if found is None:
            raise NotFound(f"no interface {interface!r}", details={"interface": str(interface)})
        return found.id
    owner = get(session, "device", device)
    stmt = select(dcim.Interface.id).where(dcim.Interface.device_id == owner.id)
    by_name = session.scalar(stmt.where(dcim.Interface.name == str(interface).strip()))
    ident = parse_id(interface)
    by_id = session.scalar(stmt.where(dcim.Interface.id == ident)) if ident is not None else None
    found_id = by_name if by_name is not None else by_id
    if found_id is None:
        raise NotFound(
            f"device {owner.name!r} has no interface {interface!r}",
            details={"device": owner.name, "interface": str(interface)},
        )
    return int(found_id)


def _vlan_group(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    _slugged(session, cols, existing)
    if "site" in cols:
        cols["site_id"] = _ref(session, "site", cols.pop("site"))
    low, high = _merged(cols, existing, "min_vid"), _merged(cols, existing, "max_vid")
    if low is not None and high is not None and low > high:
        raise InvalidInput("max_vid: must not be below min_vid")


def _vlan(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    if "group" in cols:
        cols["group_id"] = _ref(session, "vlan_group", cols.pop("group"))
    if "site" in cols:
        cols["site_id"] = _ref(session, "site", cols.pop("site"))
    group_id = _merged(cols, existing, "group_id")
    vid = _merged(cols, existing, "vid")
    if group_id is None:
        return
    group = session.get(m.VlanGroup, group_id)
    assert group is not None
    if not group.min_vid <= vid <= group.max_vid:
        raise InvalidInput(
            f"vid: {vid} is outside group {group.slug!r} ({group.min_vid}-{group.max_vid})"
        )
    site_id = _merged(cols, existing, "site_id")
    if group.site_id is not None and site_id is not None and site_id != group.site_id:
        raise InvalidInput(f"site: group {group.slug!r} belongs to another site")
    clash = _clash(session, m.Vlan, existing, group_id=group_id, vid=vid)
    if clash is not None:
        raise Conflict(
            f"vid: VLAN {vid} already exists in group {group.slug!r} (VLAN {clash})",
            details={"fields": {"vid": ["duplicate"]}, "vlan": clash},
        )


def _circuit(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    if "provider" in cols:
        cols["provider_id"] = _ref(session, "provider", cols.pop("provider"))
    if "type" in cols:
        cols["type_id"] = _ref(session, "circuit_type", cols.pop("type"))
    provider_id, cid = _merged(cols, existing, "provider_id"), _merged(cols, existing, "cid")
    clash = _clash(session, m.Circuit, existing, provider_id=provider_id, cid=cid)
    if clash is not None:
        raise Conflict(
            f"cid: the provider already has a circuit {cid!r} (circuit {clash})",
            details={"fields": {"cid": ["duplicate"]}, "circuit": clash},
        )


def _termination(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    provider = cols.pop("provider", None)
    if "circuit" in cols:
        where = {"provider_id": _ref(session, "provider", provider)} if provider else {}
        cols["circuit_id"] = _ref(session, "circuit", cols.pop("circuit"), **where)
    if "site" in cols:
        cols["site_id"] = _ref(session, "site", cols.pop("site"))
    circuit_id, side = _merged(cols, existing, "circuit_id"), _merged(cols, existing, "term_side")
    clash = _clash(session, m.CircuitTermination, existing, circuit_id=circuit_id, term_side=side)
    if clash is not None:
        raise Conflict(
            f"term_side: the circuit already has a {side} termination ({clash})",
            details={"fields": {"term_side": ["duplicate"]}},
        )


def _power_panel(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    if "site" in cols:
        cols["site_id"] = _ref(session, "site", cols.pop("site"))
    site_id, name = _merged(cols, existing, "site_id"), _merged(cols, existing, "name")
    if "location" in cols:  # a location of the panel's own site
        cols["location_id"] = _ref(session, "location", cols.pop("location"), site_id=site_id)
    location_id = _merged(cols, existing, "location_id")
    held = None if location_id is None else session.get(dcim.Location, location_id)
    if held is not None and held.site_id != site_id:
        raise InvalidInput("location: the location is not at the panel's site")
    clash = _clash(session, m.PowerPanel, existing, site_id=site_id, name=name)
    if clash is not None:
        raise Conflict(
            f"name: the site already has a power panel {name!r}",
            details={"fields": {"name": ["duplicate"]}},
        )


def _power_feed(session: Session, cols: dict[str, Any], existing: Any | None) -> None:
    site = cols.pop("site", None)
    if "power_panel" in cols:
        where = {"site_id": _ref(session, "site", site)} if site is not None else {}
        cols["power_panel_id"] = _ref(session, "power_panel", cols.pop("power_panel"), **where)
    panel = session.get(m.PowerPanel, _merged(cols, existing, "power_panel_id"))
    assert panel is not None
    if "rack" in cols:
        rack = cols.pop("rack")
        cols["rack_id"] = (
            None if rack is None else _ref(session, "rack", rack, site_id=panel.site_id)
        )
    rack_id = _merged(cols, existing, "rack_id")
    if rack_id is not None:
        rack_row = session.get(dcim.Rack, rack_id)
        if rack_row is not None and rack_row.site_id != panel.site_id:
            raise InvalidInput("rack: the rack is not at the power panel's site")
    name = _merged(cols, existing, "name")
    clash = _clash(session, m.PowerFeed, existing, power_panel_id=panel.id, name=name)
    if clash is not None:
        raise Conflict(
            f"name: panel {panel.name!r} already has a feed {name!r}",
            details={"fields": {"name": ["duplicate"]}},
        )


_RULES = {
    "rir": _slugged,
    "asn": _asn,
    "prefix": _prefix,
    "ip_range": _ip_range,
    "ip_address": _ip_address,
    "vlan_group": _vlan_group,
    "vlan": _vlan,
    "provider": _slugged,
    "circuit_type": _slugged,
    "circuit": _circuit,
    "circuit_termination": _termination,
    "power_panel": _power_panel,
    "power_feed": _power_feed,
}


# --- natural keys: finding the stored object an input describes -------------------------


def _one(session: Session, stmt: Any) -> Any:
    rows = session.scalars(stmt.limit(2)).all()
    return rows[0] if len(rows) == 1 else None


def _vrf_id(session: Session, data: Mapping[str, Any]) -> int | None:
    return _ref(session, "vrf", data.get("vrf"))


def existing(session: Session, kind: str, data: Mapping[str, Any]) -> Any | None:
    """The stored object a full input describes, by its natural key (None when new).

    The key of each type: slug (RIRs, providers, circuit types, VLAN groups; from the name
    when not given), ASN number, VRF RD (else name), prefix or address or range start
    within its VRF, VLAN vid within its group (else site and name), circuit cid with its
    provider, termination side of its circuit, panel name at its site, feed name on its panel.
    """
    model = KINDS[kind].model
    if kind in ("rir", "provider", "circuit_type", "vlan_group"):
        slug = data.get("slug") or slugify(data["name"])
        return _one(session, select(model).where(model.slug == slug))
    if kind == "asn":
        return _one(session, select(m.Asn).where(m.Asn.asn == data["asn"]))
    if kind == "vrf":
        if data.get("rd"):
            return _one(session, select(m.Vrf).where(m.Vrf.rd == data["rd"]))
        return _one(session, select(m.Vrf).where(m.Vrf.name == data["name"], m.Vrf.rd.is_(None)))
    if kind in ("prefix", "ip_range", "ip_address"):
        column = {"prefix": "prefix", "ip_range": "start_address", "ip_address": "address"}[kind]
        vrf_id = _vrf_id(session, data)
        space = model.vrf_id.is_(None) if vrf_id is None else model.vrf_id == vrf_id
        return _one(session, select(model).where(getattr(model, column) == data[column], space))
    if kind == "vlan":
        group_id = _ref(session, "vlan_group", data.get("group"))
        if group_id is not None:
            return _one(
                session,
                select(m.Vlan).where(m.Vlan.group_id == group_id, m.Vlan.vid == data["vid"]),
            )
        site_id = _ref(session, "site", data.get("site"))
        return _one(
            session,
            select(m.Vlan).where(
                m.Vlan.group_id.is_(None),
                m.Vlan.site_id.is_(None) if site_id is None else m.Vlan.site_id == site_id,
                m.Vlan.vid == data["vid"],
                m.Vlan.name == data["name"],
            ),
        )
    if kind == "circuit":
        provider_id = _ref(session, "provider", data["provider"])
        return _one(
            session,
            select(m.Circuit).where(
                m.Circuit.provider_id == provider_id, m.Circuit.cid == data["cid"]
            ),
        )
    if kind == "circuit_termination":
        where = (
            {"provider_id": _ref(session, "provider", data["provider"])}
            if data.get("provider")
            else {}
        )
        circuit_id = _ref(session, "circuit", data["circuit"], **where)
        return _one(
            session,
            select(m.CircuitTermination).where(
                m.CircuitTermination.circuit_id == circuit_id,
                m.CircuitTermination.term_side == data["term_side"],
            ),
        )
    if kind == "power_panel":
        site_id = _ref(session, "site", data["site"])
        return _one(
            session,
            select(m.PowerPanel).where(
                m.PowerPanel.site_id == site_id, m.PowerPanel.name == data["name"]
            ),
        )
    if kind == "power_feed":
        where = {"site_id": _ref(session, "site", data["site"])} if data.get("site") else {}
        panel_id = _ref(session, "power_panel", data["power_panel"], **where)
        return _one(
            session,
            select(m.PowerFeed).where(
                m.PowerFeed.power_panel_id == panel_id, m.PowerFeed.name == data["name"]
            ),
        )
    return None
