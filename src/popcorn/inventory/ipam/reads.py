"""Rows as the API shows them: references by name, computed figures beside the columns.

Names are loaded with one query per referenced table per page, never per row;
prefix figures and feed draw are computed for the page's rows only.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.inventory import models as dcim
from popcorn.inventory.ipam import addressing
from popcorn.inventory.ipam import models as m
from popcorn.numbers import quantity

HIDDEN = {"start_key", "end_key", "host_key"}


def _names(session: Session, column: Any, label: Any, ids: Iterable[int | None]) -> dict[int, Any]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(column, label).where(column.in_(wanted)))
    return {ident: name for ident, name in rows}


def _plain(obj: Any) -> dict[str, Any]:
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns if c.key not in HIDDEN}


def available_power(feed: m.PowerFeed) -> int:
    """NetBox's formula: volts x amps x max utilisation, x sqrt(3) for three phases (VA)."""
    power = abs(feed.voltage) * feed.amperage * (feed.max_utilization / 100)
    if feed.phase == "three-phase":
        power *= math.sqrt(3)
    return round(power)


def feed_draw(session: Session, feed_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(allocated, maximum) watts of the power ports cabled to each feed."""
    if not feed_ids:
        return {}
    draw: dict[int, tuple[int, int]] = {}
    links = session.execute(
        select(dcim.Link.a_type, dcim.Link.a_id, dcim.Link.b_type, dcim.Link.b_id).where(
            dcim.Link.id.in_(
                select(m.PowerFeed.link_id).where(
                    m.PowerFeed.id.in_(feed_ids), m.PowerFeed.link_id.is_not(None)
                )
            )
        )
    ).all()
    port_of: dict[int, int] = {}
    for a_type, a_id, b_type, b_id in links:
        if a_type == "power_feed" and b_type == "port":
            port_of[b_id] = a_id
        elif b_type == "power_feed" and a_type == "port":
            port_of[a_id] = b_id
    if port_of:
        ports = session.execute(
            select(dcim.Port.id, dcim.Port.allocated_draw, dcim.Port.maximum_draw).where(
                dcim.Port.id.in_(list(port_of))
            )
        )
        for ident, allocated, maximum in ports:
            before = draw.get(port_of[ident], (0, 0))
            draw[port_of[ident]] = (before[0] + (allocated or 0), before[1] + (maximum or 0))
    return draw


def _far_ends(session: Session, rows: list[dict[str, Any]]) -> dict[int, tuple[str, str]]:
    """link id -> (device, interface or port name) of the device end of a circuit's cable."""
    link_ids = [r["link_id"] for r in rows if r.get("link_id") is not None]
    if not link_ids:
        return {}
    out: dict[int, tuple[str, str]] = {}
    for link in session.scalars(select(dcim.Link).where(dcim.Link.id.in_(link_ids))):
        for end_type, end_id in ((link.a_type, link.a_id), (link.b_type, link.b_id)):
            model: Any = {"interface": dcim.Interface, "port": dcim.Port}.get(end_type)
            if model is None:
                continue
            found = session.execute(
                select(dcim.Device.name, model.name)
                .join(dcim.Device, dcim.Device.id == model.device_id)
                .where(model.id == end_id)
            ).first()
            if found is not None:
                out[link.id] = (found[0], found[1])
    return out


def read(session: Session, kind: str, objs: list[Any]) -> list[dict[str, Any]]:
    rows = [_plain(o) for o in objs]
    sites = _names(session, dcim.Site.id, dcim.Site.code, (r.get("site_id") for r in rows))
    vrfs = _names(session, m.Vrf.id, m.Vrf.name, (r.get("vrf_id") for r in rows))
    for row in rows:
        if "site_id" in row:
            row["site"] = sites.get(row["site_id"])
        if "vrf_id" in row:
            row["vrf"] = vrfs.get(row["vrf_id"])
    extra = _EXTRA.get(kind)
    if extra is not None:
        extra(session, rows, objs)
    return rows


def _asn(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    rirs = _names(session, m.Rir.id, m.Rir.name, (r["rir_id"] for r in rows))
    for row in rows:
        row["rir"] = rirs.get(row["rir_id"])


def _prefix(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    vlans = _names(session, m.Vlan.id, m.Vlan.vid, (r["vlan_id"] for r in rows))
    figures = addressing.page_figures(session, objs)
    for row in rows:
        row["vlan"] = vlans.get(row["vlan_id"])
        found = figures[row["id"]]
        row.update(depth=found.depth, children=found.children, utilization=found.utilization)


def _ip_range(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    for row in rows:
        start = ipaddress.ip_interface(row["start_address"]).ip
        end = ipaddress.ip_interface(row["end_address"]).ip
        row["size"] = int(end) - int(start) + 1


def _ip_address(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    ids = [r["interface_id"] for r in rows if r["interface_id"] is not None]
    found = (
        {
            ident: (device, name, ip4, ip6)
            for ident, device, name, ip4, ip6 in session.execute(
                select(
                    dcim.Interface.id,
                    dcim.Device.name,
                    dcim.Interface.name,
                    dcim.Device.primary_ip4,
                    dcim.Device.primary_ip6,
                )
                .join(dcim.Device, dcim.Device.id == dcim.Interface.device_id)
                .where(dcim.Interface.id.in_(ids))
            )
        }
        if ids
        else {}
    )
    for row in rows:
        device, name, ip4, ip6 = found.get(row["interface_id"], (None, None, None, None))
        row["device"], row["interface"] = device, name
        host = str(ipaddress.ip_interface(row["address"]).ip)
        row["primary"] = device is not None and host in (ip4, ip6)


def _vlan(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    groups = _names(session, m.VlanGroup.id, m.VlanGroup.slug, (r["group_id"] for r in rows))
    for row in rows:
        row["group"] = groups.get(row["group_id"])


def _circuit(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    providers = _names(session, m.Provider.id, m.Provider.name, (r["provider_id"] for r in rows))
    types = _names(session, m.CircuitType.id, m.CircuitType.name, (r["type_id"] for r in rows))
    ends = session.execute(
        select(m.CircuitTermination.circuit_id, m.CircuitTermination.term_side, dcim.Site.code)
        .join(dcim.Site, dcim.Site.id == m.CircuitTermination.site_id)
        .where(m.CircuitTermination.circuit_id.in_([r["id"] for r in rows]))
    ).all()
    sides = {(circuit, side): code for circuit, side, code in ends}
    for row in rows:
        row["provider"] = providers.get(row["provider_id"])
        row["type"] = types.get(row["type_id"])
        row["a_site"] = sides.get((row["id"], "A"))
        row["z_site"] = sides.get((row["id"], "Z"))


def _termination(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    circuits = {
        ident: (cid, provider)
        for ident, cid, provider in session.execute(
            select(m.Circuit.id, m.Circuit.cid, m.Provider.name)
            .join(m.Provider, m.Provider.id == m.Circuit.provider_id)
            .where(m.Circuit.id.in_([r["circuit_id"] for r in rows]))
        )
    }
    far = _far_ends(session, rows)
    for row in rows:
        row["circuit"], row["provider"] = circuits[row["circuit_id"]]
        row["connected_device"], row["connected_name"] = far.get(row["link_id"], (None, None))


def _power_feed(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    panels = {
        ident: (name, code)
        for ident, name, code in session.execute(
            select(m.PowerPanel.id, m.PowerPanel.name, dcim.Site.code)
            .join(dcim.Site, dcim.Site.id == m.PowerPanel.site_id)
            .where(m.PowerPanel.id.in_([r["power_panel_id"] for r in rows]))
        )
    }
    racks = _names(session, dcim.Rack.id, dcim.Rack.name, (r["rack_id"] for r in rows))
    draws = feed_draw(session, [r["id"] for r in rows])
    for row, obj in zip(rows, objs, strict=True):
        row["power_panel"], row["site"] = panels[row["power_panel_id"]]
        row["rack"] = racks.get(row["rack_id"])
        available = available_power(obj)
        allocated, maximum = draws.get(row["id"], (0, 0))
        row.update(
            available_power=available,
            allocated_draw=allocated,
            maximum_draw=maximum,
            utilization=allocated / available if available else 0.0,
        )


def _power_panel(session: Session, rows: list[dict[str, Any]], objs: list[Any]) -> None:
    places = (r["location_id"] for r in rows)
    locations = _names(session, dcim.Location.id, dcim.Location.slug, places)
    for row in rows:
        row["location"] = locations.get(row["location_id"])


_EXTRA = {
    "asn": _asn,
    "prefix": _prefix,
    "ip_range": _ip_range,
    "ip_address": _ip_address,
    "vlan": _vlan,
    "circuit": _circuit,
    "circuit_termination": _termination,
    "power_panel": _power_panel,
    "power_feed": _power_feed,
}


def cable_end(session: Session, end_type: str, end_id: int) -> dict[str, Any] | None:
    """A circuit termination or power feed as a trace shows a cable end (no device)."""
    circuit: dict[str, Any] | None = None
    if end_type == "circuit_termination":
        term_row = session.execute(
            select(m.CircuitTermination, m.Circuit.cid, m.Provider.name, dcim.Site.code)
            .join(m.Circuit, m.Circuit.id == m.CircuitTermination.circuit_id)
            .join(m.Provider, m.Provider.id == m.Circuit.provider_id)
            .outerjoin(dcim.Site, dcim.Site.id == m.CircuitTermination.site_id)
            .where(m.CircuitTermination.id == end_id)
        ).first()
        if term_row is None:
            return None
        term, cid, provider, site = term_row
        ident, link_id, name = term.id, term.link_id, f"{provider} {cid} {term.term_side}"
        circuit = {"type": "circuit", "id": term.circuit_id, "cid": cid, "provider": provider}
    elif end_type == "power_feed":
        feed_row = session.execute(
            select(m.PowerFeed, m.PowerPanel.name, dcim.Site.code)
            .join(m.PowerPanel, m.PowerPanel.id == m.PowerFeed.power_panel_id)
            .join(dcim.Site, dcim.Site.id == m.PowerPanel.site_id)
            .where(m.PowerFeed.id == end_id)
        ).first()
        if feed_row is None:
            return None
        feed, panel, site = feed_row
        ident, link_id, name = feed.id, feed.link_id, f"{panel}/{feed.name}"
    else:
        return None
    return {
        "type": end_type,
        "id": ident,
        "kind": end_type,
        "device": None,
        "device_id": None,
        "name": name,
        "site": site,
        "circuit": circuit,
        "link_id": link_id,
        "peer_id": None,
        "peer_position": None,
        "positions": None,
    }


def other_termination(session: Session, termination_id: int) -> int | None:
    """The circuit's termination on the other side (A for Z, Z for A), if it has one."""
    term = session.get(m.CircuitTermination, termination_id)
    if term is None:
        return None
    found = session.scalar(
        select(m.CircuitTermination.id).where(
            m.CircuitTermination.circuit_id == term.circuit_id,
            m.CircuitTermination.id != term.id,
        )
    )
    return None if found is None else int(found)


def end_names(session: Session, end_type: str, ids: Iterable[int]) -> dict[int, str]:
    """Names of circuit terminations or power feeds at the end of cables, for link lists."""
    names: dict[int, str] = {}
    for ident in set(ids):
        found = cable_end(session, end_type, ident)
        if found is not None:
            names[ident] = found["name"]
    return names


def human_rate(kbps: int | None) -> str:
    """A circuit's rate for people: 10,000,000 kbps reads `10 Gbps`."""
    for scale, unit in ((10**9, "Tbps"), (10**6, "Gbps"), (10**3, "Mbps")):
        if kbps is not None and kbps >= scale:
            return quantity(kbps / scale, unit)
    return quantity(kbps, "kbps")
