"""Traffic regions (cloud regions and CDN sites) and client groups: the model plans are made
from. Regions can be imported from inventory's sites; a group's demand is given, read from
signals or taken from a forecast.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from popcorn import domains
from popcorn.audit import AuditRecord, apply_fields, record_change, recording_update, records_for
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_ref
from popcorn.traffic import models as m
from popcorn.traffic import schemas as s

if TYPE_CHECKING:
    from popcorn.traffic.optimize import Region

AWS_REGION_NAME = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
INVENTORY_KINDS = {"cloud-region": "cloud", "cdn-isp": "cdn", "cdn-ix": "cdn"}
REGION_FILTERS = {
    "name": m.TrafficRegion.name,
    "kind": m.TrafficRegion.kind,
    "source": m.TrafficRegion.source,
    "aws_region": m.TrafficRegion.aws_region,
    "inventory_site": m.TrafficRegion.inventory_site,
}
GROUP_FILTERS = {
    "name": m.ClientGroup.name,
    "kind": m.ClientGroup.kind,
    "demand_source": m.ClientGroup.demand_source,
}


# --- regions ---------------------------------------------------------------------------------


def region_dict(row: m.TrafficRegion) -> dict[str, Any]:
    return s.RegionRead.model_validate(row).model_dump(mode="json")


def list_regions(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.TrafficRegion).where(*filter_clauses(params.filters, REGION_FILTERS))
    if params.q:
        stmt = stmt.where(m.TrafficRegion.name.ilike(f"%{params.q}%"))
    return paginate(session, stmt, params, key=m.TrafficRegion.id)


def get_region(*, session: Session, ref: int | str) -> m.TrafficRegion:
    """A region by name, else by a numeric id (a 404 for anything else)."""
    return get_by_ref(session, m.TrafficRegion, ref, label="region")


def region_history(*, session: Session, ref: int | str) -> list[AuditRecord]:
    """The change log of one region, oldest first."""
    row = get_region(session=session, ref=ref)
    return records_for(session, "traffic_region", row.id)


def engine_region(row: m.TrafficRegion) -> Region:
    """The optimiser's view of a region (raises a PlanInputError naming what is missing)."""
    from popcorn.traffic.optimize import Region

    return Region(
        name=row.name,
        capacity=row.capacity,
        instances=row.instances,
        throughput_per_instance=row.throughput_per_instance,
        headroom=row.headroom,
        max_instances=row.max_instances,
        readiness_seconds=row.readiness_seconds,
    )


def _check_region(row: m.TrafficRegion) -> None:
    """Reject contradictory numbers now; a region without any capacity yet is allowed."""
    from popcorn.traffic.optimize import PlanInputError

    if row.capacity is not None or (
        row.instances is not None and row.throughput_per_instance is not None
    ):
        engine_region(row)
    elif (
        row.max_instances is not None
        and row.instances is not None
        and row.max_instances < row.instances
    ):
        raise PlanInputError(f"region {row.name!r}.max_instances", "is below the instances")


def create_region(*, session: Session, data: Mapping[str, Any]) -> m.TrafficRegion:
    spec = s.RegionCreate.model_validate(dict(data))
    if session.scalar(select(m.TrafficRegion.id).where(m.TrafficRegion.name == spec.name)):
        raise Conflict(f"region {spec.name!r} exists", details={"name": spec.name})
    fields = {k: v for k, v in spec.model_dump().items() if v is not None}
    row = m.TrafficRegion(**fields)
    row.kind = row.kind or "cloud"
    row.source = "manual"
    _defaults(row)
    _check_region(row)
    session.add(row)
    session.flush()
    record_change(session, "create", "traffic_region", row.id, after=region_dict(row))
    return row


def _defaults(row: m.TrafficRegion) -> None:
    row.headroom = 0.0 if row.headroom is None else row.headroom
    row.readiness_seconds = 600.0 if row.readiness_seconds is None else row.readiness_seconds
    row.description = row.description or ""


def update_region(*, session: Session, ref: int | str, data: Mapping[str, Any]) -> m.TrafficRegion:
    """Change the given fields; a field given as null is cleared."""
    row = get_region(session=session, ref=ref)
    spec = s.RegionUpdate.model_validate(dict(data))
    with recording_update(session, "traffic_region", row, region_dict):
        apply_fields(row, spec)
        _defaults(row)
        row.kind = row.kind or "cloud"
        _check_region(row)
    return row


def delete_region(*, session: Session, ref: int | str) -> m.TrafficRegion:
    row = get_region(session=session, ref=ref)
    session.execute(delete(m.Cost).where(m.Cost.region_id == row.id))
    record_change(session, "delete", "traffic_region", row.id, before=region_dict(row))
    session.delete(row)
    session.flush()
    return row


def sync_from_inventory(
    *, session: Session, kinds: Sequence[str] = tuple(INVENTORY_KINDS)
) -> dict[str, Any]:
    """Create or refresh regions from inventory sites of kind cloud-region, cdn-isp and cdn-ix.

    CDN sites take their capacity (Gbps) and storage from their active devices. A cloud region
    keeps its instance model when it has one; otherwise it takes its devices' throughput.
    """
    domains.require("inventory", "cannot import regions from inventory")
    from popcorn.inventory import api as inventory_api

    unknown = sorted(set(kinds) - set(INVENTORY_KINDS))
    if unknown:
        raise InvalidInput(
            f"kinds: unknown site kind(s) {', '.join(unknown)}",
            details={"allowed": sorted(INVENTORY_KINDS)},
        )
    sites = [
        site
        for site in inventory_api.list_sites(session=session, kinds=list(kinds))
        if site.kind in INVENTORY_KINDS
    ]
    if not sites:
        return {"created": [], "updated": [], "sites": 0}
    capacity = {
        row.site: row
        for row in inventory_api.site_capacity(session=session, sites=[x.code for x in sites])
    }
    created, updated = [], []
    for site in sites:
        code = site.code
        kind = INVENTORY_KINDS[str(site.kind)]
        cap = capacity.get(code)
        gbps = float(cap.throughput_gbps) if cap is not None else 0.0
        storage = float(cap.storage_tb) * 1000.0 if cap is not None else 0.0
        row = session.scalar(
            select(m.TrafficRegion).where(
                (m.TrafficRegion.inventory_site == code) | (m.TrafficRegion.name == code)
            )
        )
        fresh = row is None
        if row is None:
            row = m.TrafficRegion(name=code, kind=kind, headroom=0.0, readiness_seconds=600.0)
            row.description = (site.name or "")[:200]
            session.add(row)
        before = None if fresh else region_dict(row)
        row.source = "inventory"
        row.inventory_site = code
        if kind == "cdn":
            row.capacity = gbps  # no device in service is no capacity
        elif gbps > 0 and (row.instances is None or row.throughput_per_instance is None):
            row.capacity = gbps
        row.storage_gb = storage if storage > 0 else row.storage_gb
        if kind == "cloud" and row.aws_region is None and AWS_REGION_NAME.match(code):
            row.aws_region = code
        session.flush()
        after = region_dict(row)
        if fresh:
            record_change(session, "create", "traffic_region", row.id, after=after)
            created.append(code)
        elif _changed(before, after):
            record_change(session, "update", "traffic_region", row.id, before=before, after=after)
            updated.append(code)
    return {"created": created, "updated": updated, "sites": len(sites)}


def _changed(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    ignore = {"updated_at"}
    return {k: v for k, v in (before or {}).items() if k not in ignore} != {
        k: v for k, v in after.items() if k not in ignore
    }


# --- client groups ---------------------------------------------------------------------------


def group_dict(row: m.ClientGroup) -> dict[str, Any]:
    return s.GroupRead.model_validate(row).model_dump(mode="json")


def list_groups(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.ClientGroup).where(*filter_clauses(params.filters, GROUP_FILTERS))
    if params.q:
        stmt = stmt.where(m.ClientGroup.name.ilike(f"%{params.q}%"))
    return paginate(session, stmt, params, key=m.ClientGroup.id)


def get_group(*, session: Session, ref: int | str) -> m.ClientGroup:
    """A client group by name, else by a numeric id (a 404 for anything else)."""
    return get_by_ref(session, m.ClientGroup, ref, label="client group")


def _check_group(session: Session, row: m.ClientGroup) -> None:
    where = f"group {row.name!r}"
    if row.demand_source == "signals" and not row.demand_selector:
        raise InvalidInput(f"{where}.demand_selector: needed when demand comes from signals")
    if row.demand_source == "forecast":
        if row.forecast_id is None:
            raise InvalidInput(f"{where}.forecast_id: needed when demand comes from a forecast")
        if session.get(m.Forecast, row.forecast_id) is None:
            raise InvalidInput(f"{where}.forecast_id: no forecast {row.forecast_id}")


def create_group(*, session: Session, data: Mapping[str, Any]) -> m.ClientGroup:
    spec = s.GroupCreate.model_validate(dict(data))
    if session.scalar(select(m.ClientGroup.id).where(m.ClientGroup.name == spec.name)):
        raise Conflict(f"client group {spec.name!r} exists", details={"name": spec.name})
    row = m.ClientGroup(**{k: v for k, v in spec.model_dump().items() if v is not None})
    _group_defaults(row)
    _check_group(session, row)
    session.add(row)
    session.flush()
    record_change(session, "create", "traffic_group", row.id, after=group_dict(row))
    return row


def update_group(*, session: Session, ref: int | str, data: Mapping[str, Any]) -> m.ClientGroup:
    row = get_group(session=session, ref=ref)
    spec = s.GroupUpdate.model_validate(dict(data))
    with recording_update(session, "traffic_group", row, group_dict):
        apply_fields(row, spec)
        _group_defaults(row)
        _check_group(session, row)
    return row


def _group_defaults(row: m.ClientGroup) -> None:
    row.kind = row.kind or "other"
    row.demand_source = row.demand_source or "given"
    row.demand_window_seconds = row.demand_window_seconds or 900.0
    row.description = row.description or ""


def delete_group(*, session: Session, ref: int | str) -> m.ClientGroup:
    row = get_group(session=session, ref=ref)
    session.execute(delete(m.Cost).where(m.Cost.group_id == row.id))
    record_change(session, "delete", "traffic_group", row.id, before=group_dict(row))
    session.delete(row)
    session.flush()
    return row


def resolve_demand(
    *, session: Session, groups: Sequence[m.ClientGroup], now: datetime | None = None
) -> dict[str, float | None]:
    """Each group's demand now: as given, from signals (sum over series of the mean over the
    window) or from a forecast (its peak). A group without demand maps to None."""
    from popcorn.traffic.optimize import PlanInputError

    out: dict[str, float | None] = {}
    now = now or utcnow()
    for group in groups:
        if group.demand_source == "signals":
            out[group.name] = _signals_demand(session, group, now)
        elif group.demand_source == "forecast":
            forecast = session.get(m.Forecast, group.forecast_id) if group.forecast_id else None
            if forecast is None or not forecast.values:
                raise PlanInputError(f"group {group.name!r}.demand", "its forecast is missing")
            out[group.name] = float(max(forecast.values))
        else:
            out[group.name] = group.demand
    return out


def _signals_demand(session: Session, group: m.ClientGroup, now: datetime) -> float:
    import numpy as np

    from popcorn.traffic.optimize import PlanInputError

    domains.require("signals", f"group {group.name!r} reads its demand from signals")
    from popcorn.signals import api as signals_api

    if not group.demand_selector:
        raise PlanInputError(f"group {group.name!r}.demand_selector", "is not set")
    start = now - timedelta(seconds=group.demand_window_seconds)
    try:
        result = signals_api.query(
            session=session, selector=group.demand_selector, start=start, end=now
        )
    except NotFound as exc:
        raise PlanInputError(
            f"group {group.name!r}.demand", f"no signals data for its selector ({exc.message})"
        ) from exc
    total = 0.0
    for values in result.values:
        finite = values[np.isfinite(values)]
        if finite.size:
            total += float(finite.mean())
    return total
