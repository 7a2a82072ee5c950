"""Figures over the inventory: device counts, capacity per site or region, end of life, failures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput
from popcorn.inventory import models as m
from popcorn.inventory import schemas as s
from popcorn.inventory import serialize
from popcorn.inventory.filters import region_ids


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
    totals = _sum_up(direct, {i: p for i, _, p in regions}, add, zero)
    slugs = {i: slug for i, slug, _ in regions}
    return {slugs[i]: v for i, v in totals.items()}


def _sum_up(
    direct: Mapping[int, Any],
    parent: Mapping[int, int | None],
    add: Callable[[Any, Any], Any],
    zero: Any,
) -> dict[int, Any]:
    """Per node of a tree (kept as node -> parent): its own figure plus all its descendants'."""
    totals: dict[int, Any] = {}
    for node, value in direct.items():
        current: int | None = node
        while current is not None:
            totals[current] = add(totals.get(current, zero), value)
            current = parent.get(current)
    return totals


def sites_per_group(*, session: Session) -> dict[int, int]:
    """Sites per site group id, each group counting its sub-groups' sites too: the sites its
    `site_group` filter lists."""
    rows = session.execute(
        select(m.Site.group_id, func.count())
        .where(m.Site.group_id.is_not(None))
        .group_by(m.Site.group_id)
    )
    direct = {group: int(n) for group, n in rows if group is not None}
    parent = {i: p for i, p in session.execute(select(m.SiteGroup.id, m.SiteGroup.parent_id))}
    totals = _sum_up(direct, parent, lambda a, b: a + b, 0)
    return {ident: totals.get(ident, 0) for ident in parent}


def location_counts(
    *, session: Session, site_ids: Iterable[int] | None = None
) -> dict[int, dict[str, int]]:
    """Racks and devices per location id (of the given sites, or of all), each location
    counting its sub-locations' too: what its `location` filter lists."""
    sites = None if site_ids is None else sorted(set(site_ids))
    tree = select(m.Location.id, m.Location.parent_id)
    if sites is not None:
        tree = tree.where(m.Location.site_id.in_(sites))
    parent = {i: p for i, p in session.execute(tree)}
    totals = {}
    for name, model in (("racks", m.Rack), ("devices", m.Device)):
        stmt = (
            select(model.location_id, func.count())
            .where(model.location_id.is_not(None))
            .group_by(model.location_id)
        )
        if sites is not None:
            stmt = stmt.where(model.site_id.in_(sites))
        direct = {place: int(n) for place, n in session.execute(stmt) if place is not None}
        totals[name] = _sum_up(direct, parent, lambda a, b: a + b, 0)
    return {
        ident: {name: counts.get(ident, 0) for name, counts in totals.items()} for ident in parent
    }


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


def devices_per_rack(*, session: Session, rack_ids: Iterable[int]) -> dict[int, int]:
    """How many devices each of the given racks holds, mounted or not, in one grouped query;
    a rack without devices is left out."""
    ids = sorted(set(rack_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(m.Device.rack_id, func.count())
        .where(m.Device.rack_id.in_(ids))
        .group_by(m.Device.rack_id)
    )
    return {int(rack): int(n) for rack, n in rows if rack is not None}


def rack_devices(*, session: Session, rack_id: int) -> list[dict[str, Any]]:
    """The devices in a rack with what its elevation needs: position (the lowest U, or None
    when not mounted), face, and their model's height in U and depth; highest first, then
    the unmounted ones by name."""
    rows = session.execute(
        select(
            m.Device.id,
            m.Device.name,
            m.Device.role,
            m.Device.status,
            m.Device.position,
            m.Device.face,
            m.DeviceModel.slug,
            m.DeviceModel.u_height,
            m.DeviceModel.is_full_depth,
        )
        .join(m.DeviceModel, m.DeviceModel.id == m.Device.device_model_id)
        .where(m.Device.rack_id == rack_id)
        .order_by(m.Device.position.is_(None), m.Device.position.desc(), m.Device.name)
    )
    return [
        {
            "id": ident,
            "name": name,
            "role": role,
            "status": status,
            "position": position,
            "face": face,
            "model": model,
            "u_height": float(u_height),
            "is_full_depth": bool(full_depth),
        }
        for ident, name, role, status, position, face, model, u_height, full_depth in rows
    ]
