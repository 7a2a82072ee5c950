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

__all__ = [
    "ComponentSummary",
    "DeviceSummary",
    "SiteCapacity",
    "SiteSummary",
    "device_roles",
    "devices_for_scope",
    "find_component",
    "get_device",
    "list_sites",
    "mark_component_failed",
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
