"""The inventory as other domains see it: typed functions returning read models.

Other domains (remediation, signals, traffic, certificates) import this module
and nothing else of the inventory, so mypy checks every call and a change of
tables or services here never breaks them. Every function takes keyword
arguments and returns pydantic models, never ORM rows; unknown references
raise `NotFound`, refused lifecycle moves `InvalidInput` naming the allowed
ones, exactly as the inventory's own API answers.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.inventory import models as m
from popcorn.inventory import service
from popcorn.inventory.ipam import service as ipam_service

__all__ = [
    "AddressSummary",
    "CircuitSummary",
    "ComponentSummary",
    "DeviceSummary",
    "PowerFeedSummary",
    "SiteCapacity",
    "SiteSummary",
    "device_addresses",
    "device_circuits",
    "device_roles",
    "devices_for_scope",
    "find_component",
    "get_device",
    "list_sites",
    "mark_component_failed",
    "power_feeds",
    "primary_address",
    "record_agent_heartbeat",
    "set_device_status",
    "site_capacity",
]


class _Summary(BaseModel):
    model_config = ConfigDict(frozen=True)


class DeviceSummary(_Summary):
    """A device as other domains need it: where it is and how to reach its agent."""

    id: int
    name: str
    role: str | None
    status: str
    site: str | None  # site code
    region: str | None  # region name
    primary_ip4: str | None
    primary_ip6: str | None
    agent_url: str | None


class ComponentSummary(_Summary):
    """A part of a device (disk, optic, PSU, module…)."""

    id: int
    device: str
    name: str
    kind: str | None
    serial: str | None
    status: str


class SiteSummary(_Summary):
    id: int
    code: str
    name: str
    kind: str | None
    region: str | None  # region name


class SiteCapacity(_Summary):
    """Throughput and storage summed over a site's active devices."""

    site: str
    devices: int
    throughput_gbps: float
    storage_tb: float


def _region_name(session: Session, region_id: int | None) -> str | None:
    region = session.get(m.Region, region_id) if region_id is not None else None
    return region.name if region is not None else None


def _device(session: Session, device: m.Device) -> DeviceSummary:
    site = device.site
    return DeviceSummary(
        id=device.id,
        name=device.name,
        role=device.role,
        status=device.status,
        site=site.code if site is not None else None,
        region=_region_name(session, site.region_id) if site is not None else None,
        primary_ip4=device.primary_ip4,
        primary_ip6=device.primary_ip6,
        agent_url=device.agent_url,
    )


def _component(session: Session, part: m.Component) -> ComponentSummary:
    device = session.get(m.Device, part.device_id)
    return ComponentSummary(
        id=part.id,
        device=device.name if device is not None else str(part.device_id),
        name=part.name,
        kind=part.kind,
        serial=part.serial,
        status=part.status,
    )


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
) -> list[DeviceSummary]:
    """Devices matching every given scope (`model` by slug, every `tag` present); unknown
    sites, regions, models or devices raise NotFound."""
    found = service.devices_for_scope(
        session=session, site=site, region=region, role=role, device=device, status=status,
        model=model, tag=tag,
    )  # fmt: skip
    return [_device(session, d) for d in found]


def device_roles() -> tuple[str, ...]:
    """The roles a device may have (a fixed list: group hosts further with tags)."""
    from popcorn.inventory.schemas import DEVICE_ROLES

    return DEVICE_ROLES


def get_device(*, session: Session, ref: int | str) -> DeviceSummary:
    """A device by name or id."""
    return _device(session, service.get_device(session=session, ref=ref))


def set_device_status(
    *, session: Session, ref: int | str, status: str, reason: str = ""
) -> DeviceSummary:
    """Move a device along its lifecycle; a refused move names the allowed ones (422)."""
    device = service.set_device_status(session=session, ref=ref, status=status, reason=reason)
    return _device(session, device)


def find_component(
    *, session: Session, device: int | str, component: int | str
) -> ComponentSummary:
    """A component of a device by id, name or serial."""
    part = service.find_component(session=session, device=device, component=component)
    return _component(session, part)


def mark_component_failed(
    *, session: Session, device: int | str, component: int | str, reason: str = ""
) -> ComponentSummary:
    """Mark a part failed; emits `inventory.component.failed` once."""
    part = service.mark_component_failed(
        session=session, device=device, component=component, reason=reason
    )
    return _component(session, part)


def list_sites(*, session: Session, kinds: Sequence[str] | None = None) -> list[SiteSummary]:
    """Every site (or those of the given kinds), by code."""
    stmt = select(m.Site).order_by(m.Site.code)
    if kinds is not None:
        stmt = stmt.where(m.Site.kind.in_(list(kinds)))
    return [
        SiteSummary(
            id=site.id,
            code=site.code,
            name=site.name,
            kind=site.kind,
            region=_region_name(session, site.region_id),
        )
        for site in session.scalars(stmt)
    ]


def site_capacity(*, session: Session, sites: Sequence[str]) -> list[SiteCapacity]:
    """Device count, throughput (Gbps) and storage (TB) of each given site's active devices."""
    rows = service.site_capacity(session=session, site=list(sites))
    return [
        SiteCapacity(
            site=row["site"],
            devices=row["devices"],
            throughput_gbps=row["throughput_gbps"],
            storage_tb=row["storage_tb"],
        )
        for row in rows
    ]


def record_agent_heartbeat(
    *, session: Session, device: str, url: str, version: str, actions: list[str]
) -> None:
    """The Bolt agent on `device` checked in (its URL, version and actions)."""
    service.record_agent_heartbeat(
        session=session, device=device, url=url, version=version, actions=actions
    )


# --- IPAM, circuits and power ------------------------------------------------------------


class AddressSummary(_Summary):
    """An address on one of a device's interfaces."""

    address: str  # with its mask: "198.51.100.10/24"
    family: int
    vrf: str | None
    interface: str | None
    primary: bool
    dns_name: str


class CircuitSummary(_Summary):
    """A circuit (transit, peering, IX port) cabled to a device's interface."""

    id: int
    cid: str
    provider: str
    type: str
    status: str
    commit_rate_kbps: int | None
    interface: str | None
    far_site: str | None  # site code of the circuit's other end


class PowerFeedSummary(_Summary):
    id: int
    name: str
    power_panel: str
    site: str
    rack: str | None
    status: str
    available_power: int  # VA
    allocated_draw: int  # W
    utilization: float  # 0..1


def device_addresses(*, session: Session, device: int | str) -> list[AddressSummary]:
    """Every address on a device's interfaces, IPv4 first; unknown devices raise NotFound."""
    rows = ipam_service.device_addresses(session=session, device=device)
    return [
        AddressSummary(
            address=r["address"], family=r["family"], vrf=r["vrf"], interface=r["interface"],
            primary=r["primary"], dns_name=r["dns_name"],
        )
        for r in rows
    ]  # fmt: skip


def primary_address(*, session: Session, device: int | str, family: int = 4) -> str | None:
    """A device's primary IPv4 (or, with family=6, IPv6) address without its mask."""
    found = service.get_device(session=session, ref=device)
    return found.primary_ip4 if family == 4 else found.primary_ip6


def device_circuits(*, session: Session, device: int | str) -> list[CircuitSummary]:
    """The circuits a device's interfaces are cabled to (its ISP and IX connections)."""
    return [
        CircuitSummary(
            id=r["id"], cid=r["cid"], provider=r["provider"], type=r["type"],
            status=r["status"], commit_rate_kbps=r["commit_rate"], interface=r["interface"],
            far_site=r["far_site"],
        )
        for r in ipam_service.device_circuits(session=session, device=device)
    ]  # fmt: skip


def power_feeds(*, session: Session, site: str | None = None) -> list[PowerFeedSummary]:
    """Power feeds (of one site, by code) with their utilisation from what they power."""
    args = {"limit": "1000", **({"site": site} if site else {})}
    feeds: list[PowerFeedSummary] = []
    while True:
        page = ipam_service.list_objects(session=session, otype="power_feed", args=args)
        feeds += [
            PowerFeedSummary(
                id=r["id"], name=r["name"], power_panel=r["power_panel"], site=r["site"],
                rack=r["rack"], status=r["status"], available_power=r["available_power"],
                allocated_draw=r["allocated_draw"], utilization=r["utilization"],
            )
            for r in page["items"]
        ]  # fmt: skip
        if not page["next"]:
            return feeds
        args = {**args, "cursor": page["next"]}
