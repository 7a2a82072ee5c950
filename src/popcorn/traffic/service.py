"""Traffic: regions, client groups and costs; steering, evacuation and return plans; their
execution on AWS; demand forecasts and content placement.

Every function takes `session=` and is what the API, the CLI, the jobs and other domains
call. The arithmetic lives in the engine modules beside this one (optimize, evacuate,
forecast, placement); the AWS side of an execution in `executor`.

Stable functions for other domains and the demo (keep their signatures):

- `generate_world(session=, regions=, groups=, seed=, ...)`: regions, client groups and a
  cost matrix with generated demand, for a demo or a trial.
- `create_region(session=, data=)`, `create_group(session=, data=)`, `set_costs(session=,
  entries=)`: build the model by hand; `sync_from_inventory(session=)` imports cloud regions
  and CDN sites from inventory.
- `bind_sandbox(session=, endpoint_url=)`: Auto Scaling groups and weighted records for every
  cloud region on an AWS-compatible endpoint (moto), bound to the regions.
- `plan_steering_for(session=, spec=)`, `plan_evacuation_for(session=, spec=)`,
  `plan_return_for(session=, plan_id=, spec=)`: persisted plans.
- `execute_plan(session=, plan_id=, spec=)`: queue the execution job; `cancel_execution()`.
- `shift_site_load(session=, site=, reason=, device=None)`: move a CDN site's load to the
  other CDN sites (remediation asks for this when a storage appliance fails).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from popcorn import domains, jobs
from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound, PopcornError
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import emit
from popcorn.traffic import models as m
from popcorn.traffic import schemas as s
from popcorn.traffic.evacuate import (
    EvacuationPlan,
    Infeasibility,
    RampStep,
    ScaleAction,
    figure_png,
    plan_evacuation,
    plan_return,
    ramp_png,
)
from popcorn.traffic.forecast import forecast_demand, forecast_png, plan_scaling
from popcorn.traffic.health import check_spec
from popcorn.traffic.optimize import PlanInputError, Region, SteeringPlan, plan_steering
from popcorn.traffic.placement import plan_placement

EXECUTE_TASK = "traffic.execute_plan"
AWS_REGION_NAME = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
INVENTORY_KINDS = {"cloud-region": "cloud", "cdn-isp": "cdn", "cdn-ix": "cdn"}

SETTINGS: dict[str, Any] = {
    "aws_endpoint_url": None,
    "aws_region": "us-east-1",
    "aws_profile": None,
    "scale_timeout_seconds": 2700.0,
    "poll_seconds": 15.0,
    "health_selector": None,
    "health_threshold": None,
    "health_window_seconds": 300.0,
    "health_url": None,
    "health_callable": None,
    "health_timeout_seconds": 5.0,
}

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
PLAN_FILTERS = {
    "id": m.Plan.id,
    "kind": m.Plan.kind,
    "region_kind": m.Plan.region_kind,
    "feasible": m.Plan.feasible,
    "parent_id": m.Plan.parent_id,
    "created_at": m.Plan.created_at,
}
EXECUTION_FILTERS = {
    "plan_id": m.Execution.plan_id,
    "status": m.Execution.status,
    "created_at": m.Execution.created_at,
}
FORECAST_FILTERS = {
    "region_id": m.Forecast.region_id,
    "source": m.Forecast.source,
    "created_at": m.Forecast.created_at,
}
PLACEMENT_FILTERS = {"strategy": m.Placement.strategy, "created_at": m.Placement.created_at}


def json_safe(value: Any) -> Any:
    """Replace infinities and NaN by None: PostgreSQL's JSONB (and JSON itself) has no such
    numbers, and "no value" is what they mean here (no capacity, no error to score)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _page(session: Session, stmt: Select[Any], params: ListParams, key: Any) -> PageResult:
    return paginate(session, stmt, params, key=key)


# --- settings --------------------------------------------------------------------------------


def get_settings_view(*, session: Session) -> dict[str, Any]:
    """Every traffic setting with its effective value (stored, else the default)."""
    stored = {row.name: row.value for row in session.scalars(select(m.Setting))}
    return {name: stored.get(name, default) for name, default in SETTINGS.items()}


def update_settings(*, session: Session, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Store the given settings; None puts a setting back to its default."""
    unknown = sorted(set(changes) - set(SETTINGS))
    if unknown:
        raise InvalidInput(
            f"unknown setting(s) {', '.join(unknown)}", details={"allowed": sorted(SETTINGS)}
        )
    check_spec({"callable": changes.get("health_callable"), "url": changes.get("health_url")})
    before = get_settings_view(session=session)
    for name, value in changes.items():
        row = session.get(m.Setting, name)
        if value is None:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(m.Setting(name=name, value=value))
        else:
            row.value = value
    session.flush()
    after = get_settings_view(session=session)
    record_change(session, "update", "traffic_settings", "traffic", before=before, after=after)
    return after


# --- regions ---------------------------------------------------------------------------------


def region_dict(row: m.TrafficRegion) -> dict[str, Any]:
    return s.RegionRead.model_validate(row).model_dump(mode="json")


def list_regions(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.TrafficRegion).where(*filter_clauses(params.filters, REGION_FILTERS))
    if params.q:
        stmt = stmt.where(m.TrafficRegion.name.ilike(f"%{params.q}%"))
    return _page(session, stmt, params, m.TrafficRegion.id)


def _by_name_or_id(session: Session, model: Any, ref: int | str, label: str, field: str) -> Any:
    """A row by its name, or by its id when the reference is a number no name matches."""
    text = str(ref).strip()
    row = session.scalar(select(model).where(model.name == text))
    if row is None and text.isdigit():
        row = session.get(model, int(text))
    if row is None:
        raise NotFound(f"no {label} {text!r}", details={field: text})
    return row


def get_region(*, session: Session, ref: int | str) -> m.TrafficRegion:
    region: m.TrafficRegion = _by_name_or_id(session, m.TrafficRegion, ref, "region", "region")
    return region


def engine_region(row: m.TrafficRegion) -> Region:
    """The optimiser's view of a region (raises a PlanInputError naming what is missing)."""
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
    before = region_dict(row)
    for key in spec.model_fields_set:
        setattr(row, key, getattr(spec, key))
    _defaults(row)
    row.kind = row.kind or "cloud"
    _check_region(row)
    session.flush()
    record_change(
        session, "update", "traffic_region", row.id, before=before, after=region_dict(row)
    )
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
    from popcorn.inventory import api as inventory_api  # type: ignore[attr-defined, unused-ignore]

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
    return _page(session, stmt, params, m.ClientGroup.id)


def get_group(*, session: Session, ref: int | str) -> m.ClientGroup:
    group: m.ClientGroup = _by_name_or_id(session, m.ClientGroup, ref, "client group", "group")
    return group


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
    row.kind = row.kind or "other"
    row.demand_source = row.demand_source or "given"
    row.demand_window_seconds = row.demand_window_seconds or 900.0
    row.description = row.description or ""
    _check_group(session, row)
    session.add(row)
    session.flush()
    record_change(session, "create", "traffic_group", row.id, after=group_dict(row))
    return row


def update_group(*, session: Session, ref: int | str, data: Mapping[str, Any]) -> m.ClientGroup:
    row = get_group(session=session, ref=ref)
    spec = s.GroupUpdate.model_validate(dict(data))
    before = group_dict(row)
    for key in spec.model_fields_set:
        setattr(row, key, getattr(spec, key))
    row.kind = row.kind or "other"
    row.demand_source = row.demand_source or "given"
    row.demand_window_seconds = row.demand_window_seconds or 900.0
    row.description = row.description or ""
    _check_group(session, row)
    session.flush()
    record_change(session, "update", "traffic_group", row.id, before=before, after=group_dict(row))
    return row


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
    domains.require("signals", f"group {group.name!r} reads its demand from signals")
    from popcorn.signals import api as signals_api  # type: ignore[attr-defined, unused-ignore]

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


# --- costs -----------------------------------------------------------------------------------


def cost_matrix(*, session: Session, kind: str | None = None) -> dict[str, Any]:
    """The stored costs as a (groups x regions) matrix; None marks a pair that is not allowed."""
    regions_stmt = select(m.TrafficRegion).order_by(m.TrafficRegion.name)
    if kind:
        regions_stmt = regions_stmt.where(m.TrafficRegion.kind == kind)
    regions = list(session.scalars(regions_stmt))
    groups = list(session.scalars(select(m.ClientGroup).order_by(m.ClientGroup.name)))
    rindex = {r.id: i for i, r in enumerate(regions)}
    gindex = {g.id: i for i, g in enumerate(groups)}
    matrix: list[list[float | None]] = [[None] * len(regions) for _ in groups]
    for cost in session.scalars(select(m.Cost)):
        if cost.region_id in rindex and cost.group_id in gindex:
            matrix[gindex[cost.group_id]][rindex[cost.region_id]] = cost.cost
    return {
        "groups": [g.name for g in groups],
        "regions": [r.name for r in regions],
        "matrix": matrix,
    }


def parse_costs(content: bytes | str, *, filename: str = "", fmt: str | None = None) -> list[Any]:
    """Cost entries `(group, region, cost or None)` from JSON or CSV.

    JSON: `{group: {region: cost}}`, `{"groups": [...], "regions": [...], "matrix": [[...]]}`
    or `[{"group", "region", "cost"}]`. CSV: `group,region,cost` rows, or a wide table with a
    `group` column and one column per region. An empty cell, null or NaN means not allowed.
    """
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content
    fmt = fmt or ("csv" if filename.lower().endswith(".csv") else None)
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in "[{" else "csv"
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"cost: not valid JSON (line {exc.lineno}): {exc.msg}") from None
        return cost_entries(data)
    if fmt != "csv":
        raise InvalidInput(f"format: {fmt!r} is not json or csv")
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise InvalidInput("cost: the CSV is empty")
    header = [h.strip() for h in rows[0]]
    if not header or header[0] != "group":
        raise InvalidInput("cost: the CSV header must start with 'group'")
    entries: list[tuple[str, str, float | None]] = []
    if header == ["group", "region", "cost"]:
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != 3:
                raise InvalidInput(f"cost: line {line} has {len(row)} cells, expected 3")
            entries.append((row[0].strip(), row[1].strip(), _cost_value(row[2], f"line {line}")))
        return entries
    regions = header[1:]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InvalidInput(
                f"cost: line {line} has {len(row) - 1} costs, expected {len(regions)} "
                "(one per region column)"
            )
        for region, cell in zip(regions, row[1:], strict=True):
            entries.append((row[0].strip(), region, _cost_value(cell, f"line {line}")))
    return entries


def _cost_value(raw: Any, where: str) -> float | None:
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "null", "inf")):
        return None
    if isinstance(raw, bool):
        raise InvalidInput(f"cost: {where}: {raw!r} is not a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"cost: {where}: {raw!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        return None
    if value < 0:
        raise InvalidInput(f"cost: {where}: {value} must be >= 0")
    return value


def cost_entries(data: Any) -> list[tuple[str, str, float | None]]:
    """Normalise any of the JSON cost shapes to `(group, region, cost)` entries."""
    entries: list[tuple[str, str, float | None]] = []
    if isinstance(data, dict) and "matrix" in data:
        groups, regions, matrix = data.get("groups"), data.get("regions"), data["matrix"]
        if not isinstance(groups, list) or not isinstance(regions, list):
            raise InvalidInput("cost: a matrix needs 'groups' and 'regions' lists")
        if not isinstance(matrix, list) or len(matrix) != len(groups):
            got = len(matrix) if isinstance(matrix, list) else type(matrix).__name__
            raise InvalidInput(
                f"cost: matrix has {got} rows, expected {len(groups)} (one per group)",
                details={"shape": [len(groups), len(regions)]},
            )
        for i, (group, row) in enumerate(zip(groups, matrix, strict=True)):
            if not isinstance(row, list) or len(row) != len(regions):
                got = len(row) if isinstance(row, list) else type(row).__name__
                raise InvalidInput(
                    f"cost: matrix row {i} (group {group!r}) has {got} costs, expected "
                    f"{len(regions)} (one per region)",
                    details={"shape": [len(groups), len(regions)]},
                )
            for region, cell in zip(regions, row, strict=True):
                entries.append((str(group), str(region), _cost_value(cell, f"row {i}")))
        return entries
    if isinstance(data, dict):
        for group, row in data.items():
            if not isinstance(row, dict):
                raise InvalidInput(f"cost: {group!r} must map region names to costs")
            for region, cell in row.items():
                entries.append((str(group), str(region), _cost_value(cell, f"{group}/{region}")))
        return entries
    if isinstance(data, list):
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not {"group", "region"} <= set(item):
                raise InvalidInput(f"cost: item {i} needs 'group', 'region' and 'cost'")
            entries.append(
                (
                    str(item["group"]),
                    str(item["region"]),
                    _cost_value(item.get("cost"), f"item {i}"),
                )
            )
        return entries
    raise InvalidInput("cost: expected a JSON object or list")


def set_costs(
    *, session: Session, entries: Sequence[tuple[str, str, float | None]], replace: bool = True
) -> dict[str, Any]:
    """Store costs, all or nothing. `replace` drops every pair not given (the upload is the
    whole matrix); otherwise the given pairs are added or changed and the rest kept."""
    if not entries:
        raise InvalidInput("cost: no entries given")
    groups = {g.name: g.id for g in session.scalars(select(m.ClientGroup))}
    regions = {r.name: r.id for r in session.scalars(select(m.TrafficRegion))}
    bad_groups = sorted({g for g, _, _ in entries if g not in groups})
    bad_regions = sorted({r for _, r, _ in entries if r not in regions})
    if bad_groups or bad_regions:
        parts = []
        if bad_groups:
            parts.append(f"unknown group(s) {', '.join(map(repr, bad_groups[:5]))}")
        if bad_regions:
            parts.append(f"unknown region(s) {', '.join(map(repr, bad_regions[:5]))}")
        raise InvalidInput(
            "cost: " + "; ".join(parts),
            details={"groups": bad_groups[:50], "regions": bad_regions[:50]},
        )
    wanted: dict[tuple[int, int], float | None] = {}
    for group, region, value in entries:
        wanted[(groups[group], regions[region])] = value
    existing = {(c.group_id, c.region_id): c for c in session.scalars(select(m.Cost))}
    before = len(existing)
    if replace:
        for key, row in existing.items():
            if wanted.get(key) is None:
                session.delete(row)
    for key, value in wanted.items():
        found = existing.get(key)
        if value is None:
            if found is not None and not replace:
                session.delete(found)
        elif found is None:
            session.add(m.Cost(group_id=key[0], region_id=key[1], cost=value))
        else:
            found.cost = value
    session.flush()
    count = int(session.scalar(select(func.count()).select_from(m.Cost)) or 0)
    record_change(
        session,
        "update",
        "traffic_costs",
        "matrix",
        before={"pairs": before},
        after={"pairs": count, "replace": replace, "given": len(entries)},
    )
    return {"pairs": count, "given": len(entries), "replace": replace}


# --- plan inputs -----------------------------------------------------------------------------


def _scope(
    session: Session, spec: s.Scope
) -> tuple[list[m.TrafficRegion], list[m.ClientGroup], dict[str, Any], list[list[Any]]]:
    """The regions, groups, demand and cost matrix a plan is made from.

    Demand may hold None for a group without any: the engine refuses it by the group's name.
    """
    if spec.regions is not None:
        regions = []
        for name in spec.regions:
            row = session.scalar(select(m.TrafficRegion).where(m.TrafficRegion.name == name))
            if row is None:
                raise InvalidInput(f"regions: unknown region {name!r}", details={"region": name})
            regions.append(row)
    else:
        regions = list(
            session.scalars(
                select(m.TrafficRegion)
                .where(m.TrafficRegion.kind == spec.kind)
                .order_by(m.TrafficRegion.name)
            )
        )
    if not regions:
        raise InvalidInput(f"regions: there are no {spec.kind} regions to plan over")
    if spec.groups is not None:
        groups = [get_group(session=session, ref=name) for name in spec.groups]
    else:
        groups = list(session.scalars(select(m.ClientGroup).order_by(m.ClientGroup.name)))
    if not groups:
        raise InvalidInput("groups: there are no client groups to plan for")
    overrides = dict(spec.demand or {})
    unknown = sorted(set(overrides) - {g.name for g in groups})
    if unknown:
        raise InvalidInput(
            f"demand: unknown group(s) {', '.join(map(repr, unknown[:5]))}",
            details={"groups": unknown[:50]},
        )
    missing = [g for g in groups if g.name not in overrides]
    demand = {**resolve_demand(session=session, groups=missing), **overrides}
    demand = {g.name: demand[g.name] for g in groups}
    rindex = {r.id: j for j, r in enumerate(regions)}
    gindex = {g.id: i for i, g in enumerate(groups)}
    matrix: list[list[Any]] = [[None] * len(regions) for _ in groups]
    stmt = select(m.Cost).where(
        m.Cost.region_id.in_(list(rindex)), m.Cost.group_id.in_(list(gindex))
    )
    for cost in session.scalars(stmt):
        matrix[gindex[cost.group_id]][rindex[cost.region_id]] = cost.cost
    return regions, groups, demand, matrix


def _float_matrix(matrix: list[list[Any]]) -> np.ndarray[Any, Any]:
    return np.array(
        [[math.inf if v is None else float(v) for v in row] for row in matrix], dtype=np.float64
    )


def _inputs(
    regions: Sequence[m.TrafficRegion],
    groups: Sequence[m.ClientGroup],
    demand: Mapping[str, float | None],
    matrix: list[list[Any]],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "regions": [
            {
                "name": r.name,
                "capacity": r.capacity,
                "instances": r.instances,
                "throughput_per_instance": r.throughput_per_instance,
                "headroom": r.headroom,
                "max_instances": r.max_instances,
                "readiness_seconds": r.readiness_seconds,
            }
            for r in regions
        ],
        "groups": [
            {"name": g.name, "demand": demand[g.name], "source": g.demand_source} for g in groups
        ],
        "cost": matrix,
        **extra,
    }


def _regions_from(inputs: Mapping[str, Any]) -> list[Region]:
    return [Region(**r) for r in inputs["regions"]]


def _new_plan(
    session: Session,
    *,
    kind: str,
    region_kind: str,
    reason: str,
    feasible: bool,
    inputs: dict[str, Any],
    result: dict[str, Any],
    summary: dict[str, Any],
    evacuated: Sequence[str] = (),
    parent_id: int | None = None,
    event: dict[str, Any] | None = None,
) -> m.Plan:
    plan = m.Plan(
        kind=kind,
        region_kind=region_kind,
        reason=reason,
        feasible=feasible,
        evacuated=list(evacuated),
        parent_id=parent_id,
        summary=json_safe(summary),
        inputs=json_safe(inputs),
        result=json_safe(result),
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    session.add(plan)
    session.flush()
    record_change(
        session,
        "create",
        "traffic_plan",
        plan.id,
        after={"kind": kind, "feasible": feasible, "evacuated": list(evacuated), "reason": reason},
    )
    emit(
        session,
        "traffic.plan.created",
        "traffic_plan",
        plan.id,
        {
            "plan_id": plan.id,
            "kind": kind,
            "region_kind": region_kind,
            "feasible": feasible,
            "evacuated": list(evacuated),
            "reason": reason,
            **(event or {}),
        },
    )
    return plan


# --- steering --------------------------------------------------------------------------------


def plan_steering_for(*, session: Session, spec: s.SteeringCreate) -> m.Plan:
    """The optimal steering over the scope's regions; demand that cannot fit is reported
    (shortfall per region, capacity and instances needed), not refused."""
    regions, groups, demand, matrix = _scope(session, spec)
    engine_regions = [engine_region(r) for r in regions]
    plan = plan_steering(engine_regions, demand, _float_matrix(matrix), method=spec.method)
    inputs = _inputs(regions, groups, demand, matrix, method=spec.method)
    result = _steering_result(plan)
    return _new_plan(
        session,
        kind="steering",
        region_kind=spec.kind,
        reason=spec.reason,
        feasible=plan.feasible,
        inputs=inputs,
        result=result,
        summary=_steering_summary(plan),
    )


def _steering_result(plan: SteeringPlan) -> dict[str, Any]:
    loads = dict(zip(plan.regions, plan.loads.tolist(), strict=True))
    total = plan.total_demand
    weights = {k: (v / total if total > 0 else 0.0) for k, v in loads.items()}
    capacity = {r.region: r.capacity for r in plan.region_loads}
    utilisation = [r.utilisation for r in plan.region_loads if math.isfinite(r.utilisation)]
    step = {
        "index": 1,
        "fraction": 1.0,
        "start_seconds": 0.0,
        "loads": loads,
        "weights": weights,
        "max_utilisation": max(utilisation, default=0.0),
        "overloaded": sorted(plan.shortfall),
    }
    return {
        **plan.to_dict(),
        "region_names": list(plan.regions),
        "capacity": capacity,
        "steps": [step],
        "scale_up": [],
        "scale_down": [],
        "dwell_seconds": 0.0,
    }


def _steering_summary(plan: SteeringPlan) -> dict[str, Any]:
    utilisation = [r.utilisation for r in plan.region_loads if math.isfinite(r.utilisation)]
    return {
        "regions": len(plan.regions),
        "groups": len(plan.groups),
        "total_demand": plan.total_demand,
        "mean_cost": plan.mean_cost,
        "max_utilisation": max(utilisation, default=0.0),
        "binding": [r.region for r in plan.binding],
        "total_shortfall": plan.total_shortfall,
        "shortfall": plan.shortfall,
        "required_instances": {
            r.region: r.required_instances
            for r in plan.region_loads
            if r.shortfall > 0 and r.required_instances is not None
        },
    }


# --- evacuation and return -------------------------------------------------------------------


def plan_evacuation_for(*, session: Session, spec: s.EvacuationCreate) -> m.Plan:
    """Scale the receiving regions, then shift traffic off `spec.evacuate` in steps.

    A plan that cannot be done (capacity, stranded groups) is stored with feasible=False and
    its reasons; bad input (evacuating every region, unknown names) is an error and no plan."""
    regions, groups, demand, matrix = _scope(session, spec)
    names = {r.name for r in regions}
    for name in spec.evacuate:
        if name not in names:
            raise PlanInputError("evacuate", f"unknown region {name!r} (not among the plan's)")
    current = None
    if spec.current_plan is not None:
        current = _shares_of(session, spec.current_plan, [r.name for r in regions], groups)
    engine_regions = [engine_region(r) for r in regions]
    evac = plan_evacuation(
        engine_regions,
        demand,
        _float_matrix(matrix),
        spec.evacuate,
        current=current,
        steps=spec.steps,
        dwell_seconds=spec.dwell_seconds,
        scale_cost=spec.scale_cost,
        method=spec.method,
    )
    inputs = _inputs(
        regions,
        groups,
        demand,
        matrix,
        evacuate=list(spec.evacuate),
        steps=spec.steps,
        dwell_seconds=spec.dwell_seconds,
        scale_cost=spec.scale_cost,
        current_plan=spec.current_plan,
        method=spec.method,
    )
    return _new_plan(
        session,
        kind="evacuation",
        region_kind=spec.kind,
        reason=spec.reason,
        feasible=evac.feasible,
        inputs=inputs,
        result=_evacuation_result(evac),
        summary=_evacuation_summary(evac),
        evacuated=evac.evacuated,
    )


def _shares_of(
    session: Session, plan_id: int, regions: list[str], groups: Sequence[m.ClientGroup]
) -> np.ndarray[Any, Any]:
    plan = get_plan(session=session, plan_id=plan_id)
    if plan.kind != "steering":
        raise PlanInputError("current_plan", f"plan {plan_id} is a {plan.kind} plan, not steering")
    names = [g.name for g in groups]
    stored_groups = [g["name"] for g in plan.inputs["groups"]]
    stored_regions = [r["name"] for r in plan.inputs["regions"]]
    if stored_groups != names or stored_regions != regions:
        raise PlanInputError("current_plan", f"plan {plan_id} is for different regions or groups")
    shares = np.zeros((len(names), len(regions)))
    gi = {n: i for i, n in enumerate(names)}
    ri = {n: j for j, n in enumerate(regions)}
    for a in plan.result.get("assignments", []):
        shares[gi[a["group"]], ri[a["region"]]] = a["share"]
    return shares


def _evacuation_result(plan: EvacuationPlan) -> dict[str, Any]:
    return {
        **plan.to_dict(),
        "region_names": list(plan.region_names),
        "groups": list(plan.groups),
        "demand": plan.demand.tolist(),
        "start_shares": plan.start_shares.tolist(),
        "target_shares": plan.target_shares.tolist(),
    }


def _evacuation_summary(plan: EvacuationPlan) -> dict[str, Any]:
    return {
        "regions": len(plan.regions),
        "groups": len(plan.groups),
        "total_demand": float(plan.demand.sum()),
        "steps": len(plan.steps),
        "max_utilisation": max((st.max_utilisation for st in plan.steps), default=0.0),
        "scale_up": {a.region: [a.from_instances, a.to_instances] for a in plan.scale_up},
        "scale_down": {a.region: [a.from_instances, a.to_instances] for a in plan.scale_down},
        "scale_up_seconds": plan.scale_up_seconds,
        "total_seconds": plan.total_seconds,
        "reasons": list(plan.infeasibility.reasons) if plan.infeasibility else [],
    }


def evacuation_from(plan: m.Plan) -> EvacuationPlan:
    """Rebuild the engine's evacuation plan from a stored one (for the return and the plot)."""
    if plan.kind not in ("evacuation", "return", "shift"):
        raise InvalidInput(f"plan {plan.id} is a {plan.kind} plan, not an evacuation")
    r = plan.result
    names = r["region_names"]
    report = r.get("infeasibility")
    return EvacuationPlan(
        direction=r["direction"],
        evacuated=tuple(r["evacuated"]),
        regions=tuple(_regions_from(plan.inputs)),
        groups=tuple(r["groups"]),
        demand=np.array(r["demand"], dtype=np.float64),
        start_shares=np.array(r["start_shares"], dtype=np.float64).reshape(len(r["groups"]), -1),
        target_shares=np.array(r["target_shares"], dtype=np.float64).reshape(len(r["groups"]), -1),
        capacity=np.array([r["capacity"][n] for n in names], dtype=np.float64),
        feasible=bool(r["feasible"]),
        scale_up=[ScaleAction(**a) for a in r["scale_up"]],
        steps=[RampStep(**{**st, "overloaded": tuple(st["overloaded"])}) for st in r["steps"]],
        scale_down=[ScaleAction(**a) for a in r["scale_down"]],
        scale_up_seconds=float(r["scale_up_seconds"]),
        total_seconds=float(r["total_seconds"]),
        dwell_seconds=float(r["dwell_seconds"]),
        infeasibility=(
            Infeasibility(
                reasons=tuple(report["reasons"]),
                stranded_groups=tuple(report["stranded_groups"]),
                shortfall=report["shortfall"],
                instances_needed=report["instances_needed"],
            )
            if report
            else None
        ),
    )


def plan_return_for(*, session: Session, plan_id: int, spec: s.ReturnCreate) -> m.Plan:
    """Bring traffic back to where it was before an evacuation, then scale back down."""
    parent = get_plan(session=session, plan_id=plan_id)
    if parent.kind not in ("evacuation", "shift"):
        raise InvalidInput(
            f"plan {plan_id} is a {parent.kind} plan; only an evacuation can be returned"
        )
    back = plan_return(evacuation_from(parent), steps=spec.steps, dwell_seconds=spec.dwell_seconds)
    inputs = {
        **parent.inputs,
        "return_of": parent.id,
        "steps": len(back.steps),
        "dwell_seconds": back.dwell_seconds,
    }
    return _new_plan(
        session,
        kind="return",
        region_kind=parent.region_kind,
        reason=spec.reason or f"return of plan {parent.id}",
        feasible=back.feasible,
        inputs=inputs,
        result=_evacuation_result(back),
        summary=_evacuation_summary(back),
        evacuated=back.evacuated,
        parent_id=parent.id,
    )


def shift_site_load(
    *, session: Session, site: str, reason: str, device: str | None = None
) -> m.Plan:
    """Plan moving a CDN site's load to the other CDN sites, as an evacuation of the site.

    CDN capacities are refreshed from inventory first when it is installed (so a device just
    taken out of service no longer counts). The plan is stored and announced with
    `traffic.plan.created` even when the other sites cannot take the load: then it is
    infeasible and says why.
    """
    if domains.installed("inventory"):
        try:
            with session.begin_nested():
                sync_from_inventory(session=session, kinds=("cdn-isp", "cdn-ix"))
        except PopcornError:
            pass  # planning goes on with the capacities already known
    row = session.scalar(
        select(m.TrafficRegion).where(
            (m.TrafficRegion.name == site) | (m.TrafficRegion.inventory_site == site)
        )
    )
    if row is None:
        raise NotFound(f"no CDN site {site!r} in traffic", details={"site": site})
    if row.kind != "cdn":
        raise InvalidInput(f"site: {site!r} is a {row.kind} region, not a CDN site")
    spec = s.EvacuationCreate(kind="cdn", evacuate=[row.name], reason=reason, steps=5)
    regions, groups, demand, matrix = _scope(session, spec)
    if len(regions) < 2:
        raise InvalidInput(
            f"site: {row.name!r} is the only CDN site; its load has nowhere to go",
            details={"site": row.name},
        )
    evac = plan_evacuation(
        [engine_region(r) for r in regions],
        demand,
        _float_matrix(matrix),
        [row.name],
        steps=spec.steps,
        dwell_seconds=spec.dwell_seconds,
    )
    inputs = _inputs(
        regions,
        groups,
        demand,
        matrix,
        evacuate=[row.name],
        steps=spec.steps,
        dwell_seconds=spec.dwell_seconds,
        scale_cost=0.0,
        site=row.name,
        device=device,
    )
    return _new_plan(
        session,
        kind="shift",
        region_kind="cdn",
        reason=reason,
        feasible=evac.feasible,
        inputs=inputs,
        result=_evacuation_result(evac),
        summary=_evacuation_summary(evac),
        evacuated=evac.evacuated,
        event={"site": row.name, "device": device},
    )


# --- plan queries and plots ------------------------------------------------------------------


def get_plan(*, session: Session, plan_id: int) -> m.Plan:
    plan = session.get(m.Plan, plan_id)
    if plan is None:
        raise NotFound(f"no plan {plan_id}", details={"plan": plan_id})
    return plan


def list_plans(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.Plan).where(*filter_clauses(params.filters, PLAN_FILTERS))
    return _page(session, stmt, params, m.Plan.id)


def plan_png(*, session: Session, plan_id: int) -> bytes:
    """Region loads per step against capacity (an evacuation's ramp, or a steering's loads)."""
    plan = get_plan(session=session, plan_id=plan_id)
    if plan.kind == "steering":
        return _steering_png(plan)
    return ramp_png(evacuation_from(plan))


def _steering_png(plan: m.Plan) -> bytes:
    from matplotlib.figure import Figure

    regions = plan.result["regions"]
    names = [r["region"] for r in regions]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.6 * len(names) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(x, [r["load"] for r in regions], color="tab:blue", label="load")
    caps = [r["capacity"] if r["capacity"] is not None else np.nan for r in regions]
    ax.scatter(x, caps, marker="_", s=600, color="black", label="usable capacity")
    ax.set_xticks(x, names, rotation=45 if len(names) > 8 else 0, ha="right")
    ax.set_ylabel("load")
    state = "feasible" if plan.feasible else "infeasible"
    ax.set_title(f"steering plan {plan.id} ({state})")
    ax.legend(fontsize="small")
    return figure_png(fig)


# --- executions ------------------------------------------------------------------------------


def _bindings(session: Session, plan: m.Plan, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Each region's AWS binding, checked: shifting needs a record, scaling a group."""
    result = plan.result
    steps = result.get("steps") or []
    weighted = {
        name
        for step in steps
        for name, weight in step["weights"].items()
        if weight > 0 or name in plan.evacuated
    }
    scaled = {a["region"] for a in result.get("scale_up", []) + result.get("scale_down", [])}
    problems: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    for name in sorted(weighted | scaled):
        row = session.scalar(select(m.TrafficRegion).where(m.TrafficRegion.name == name))
        if row is None:
            problems[name] = ["region no longer exists"]
            continue
        missing = []
        if name in weighted:
            missing += [
                f for f in ("route53_zone_id", "route53_record_name") if not getattr(row, f)
            ]
        if name in scaled and not row.asg_name:
            missing.append("asg_name")
        if missing:
            problems[name] = missing
        out[name] = {
            "aws_region": row.aws_region or settings["aws_region"],
            "asg_name": row.asg_name,
            "zone_id": row.route53_zone_id,
            "record_name": row.route53_record_name,
            "set_identifier": row.route53_set_identifier or row.name,
            "target": row.route53_target,
            "shift": name in weighted,
        }
    if problems:
        listed = "; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items())
        raise InvalidInput(
            f"plan {plan.id} cannot run: regions lack their AWS binding ({listed})",
            details={"missing": problems},
        )
    return out


def execute_plan(
    *, session: Session, plan_id: int, spec: s.ExecuteCreate | None = None
) -> m.Execution:
    """Queue the execution of a feasible plan (one at a time per installation)."""
    spec = spec or s.ExecuteCreate()
    plan = get_plan(session=session, plan_id=plan_id)
    if not plan.feasible:
        raise Conflict(
            f"plan {plan_id} is infeasible; make a feasible plan first",
            details={"reasons": plan.summary.get("reasons") or plan.summary.get("shortfall")},
        )
    if not plan.result.get("steps"):
        raise Conflict(f"plan {plan_id} has no steps to execute")
    active = session.scalar(
        select(m.Execution.id).where(m.Execution.status.in_(m.ACTIVE_EXECUTION))
    )
    if active is not None:
        raise Conflict(
            f"execution {active} is still active; wait for it or cancel it",
            details={"execution": active},
        )
    settings = get_settings_view(session=session)
    bindings = _bindings(session, plan, settings)
    health = {
        "selector": settings["health_selector"],
        "threshold": settings["health_threshold"],
        "window_seconds": settings["health_window_seconds"],
        "url": settings["health_url"],
        "callable": settings["health_callable"],
        "timeout_seconds": settings["health_timeout_seconds"],
    }
    if spec.health is not None:
        health.update({k: getattr(spec.health, k) for k in spec.health.model_fields_set})
    if health["selector"] and health["threshold"] is None:
        raise InvalidInput("health.threshold: needed with a health selector")
    check_spec(health)
    options: dict[str, Any] = {
        "bindings": bindings,
        "aws": {
            "endpoint_url": settings["aws_endpoint_url"],
            "region": settings["aws_region"],
            "profile": settings["aws_profile"],
        },
        "dwell_seconds": (
            spec.dwell_seconds
            if spec.dwell_seconds is not None
            else float(plan.result.get("dwell_seconds") or 0.0)
        ),
        "scale_timeout_seconds": spec.scale_timeout_seconds or settings["scale_timeout_seconds"],
        "poll_seconds": spec.poll_seconds or settings["poll_seconds"],
        "health": health,
    }
    result = plan.result
    total = (
        len(result.get("scale_up", [])) + len(result["steps"]) + len(result.get("scale_down", []))
    )
    execution = m.Execution(
        plan_id=plan.id,
        status="pending",
        options=options,
        total_steps=total,
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    session.add(execution)
    session.flush()
    timeout = int(
        float(options["scale_timeout_seconds"]) * 2
        + len(result["steps"]) * (float(options["dwell_seconds"]) + 120)
        + 600
    )
    job = jobs.enqueue(
        session,
        EXECUTE_TASK,
        arguments={"execution_id": execution.id},
        queue="high",
        timeout=timeout,
    )
    execution.job_id = job.id
    record_change(
        session,
        "create",
        "traffic_execution",
        execution.id,
        after={"plan_id": plan.id, "job_id": job.id, "status": "pending"},
    )
    return execution


def get_execution(*, session: Session, execution_id: int) -> m.Execution:
    row = session.get(m.Execution, execution_id)
    if row is None:
        raise NotFound(f"no execution {execution_id}", details={"execution": execution_id})
    return row


def list_executions(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.Execution).where(*filter_clauses(params.filters, EXECUTION_FILTERS))
    return _page(session, stmt, params, m.Execution.id)


def execution_detail(*, session: Session, execution_id: int) -> dict[str, Any]:
    row = get_execution(session=session, execution_id=execution_id)
    return s.ExecutionDetail.model_validate(row).model_dump(mode="json")


def cancel_execution(*, session: Session, execution_id: int) -> m.Execution:
    """Ask a running execution to stop and roll back (checked between and during steps);
    a pending one is canceled before it changes anything."""
    row = session.get(m.Execution, execution_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no execution {execution_id}", details={"execution": execution_id})
    if row.status not in m.ACTIVE_EXECUTION:
        raise Conflict(f"execution {execution_id} already ended ({row.status})")
    row.cancel_requested = True
    if row.status == "pending" and row.job_id is not None:
        try:
            jobs.cancel_job(session=session, job_id=row.job_id)
        except Conflict:
            pass  # a worker picked it up: it sees the flag before its first change
        else:
            row.status = "canceled"
            row.ended_at = utcnow()
            row.error = "canceled by operator before it started"
            emit(
                session,
                "traffic.execution.aborted",
                "traffic_execution",
                row.id,
                {
                    "execution_id": row.id,
                    "plan_id": row.plan_id,
                    "status": "canceled",
                    "reason": row.error,
                    "rolled_back": False,
                },
            )
    record_change(session, "cancel", "traffic_execution", row.id, after={"status": row.status})
    return row


def run_execution(execution_id: int, **kwargs: Any) -> dict[str, Any]:
    """Carry out an execution (the job's body); see `popcorn.traffic.executor`."""
    from popcorn.traffic.executor import run

    return run(execution_id, **kwargs)


def bind_sandbox(
    *, session: Session, endpoint_url: str, prefix: str = "popcorn", zone: str | None = None
) -> dict[str, Any]:
    """Create an Auto Scaling group per cloud region and a hosted zone with one weighted
    record per region on an AWS-compatible endpoint (moto), and bind the regions to them.

    Refuses without an endpoint, so it never creates resources in a real account by mistake.
    """
    from popcorn.traffic.executor import provision_sandbox

    if not endpoint_url:
        raise InvalidInput("endpoint_url: a sandbox needs an AWS-compatible endpoint (moto)")
    regions = list(
        session.scalars(
            select(m.TrafficRegion)
            .where(m.TrafficRegion.kind == "cloud")
            .order_by(m.TrafficRegion.name)
        )
    )
    if not regions:
        raise InvalidInput("regions: there are no cloud regions to bind")
    settings = get_settings_view(session=session)
    bound = provision_sandbox(
        endpoint_url=endpoint_url,
        regions=[
            {
                "name": r.name,
                "aws_region": r.aws_region or settings["aws_region"],
                "instances": r.instances or 0,
                "max_instances": r.max_instances or max(2 * (r.instances or 1), 10),
            }
            for r in regions
        ],
        prefix=prefix,
        zone=zone,
    )
    for row in regions:
        update_region(session=session, ref=row.name, data=bound["regions"][row.name])
    update_settings(session=session, changes={"aws_endpoint_url": endpoint_url})
    return bound


# --- forecasts -------------------------------------------------------------------------------


def create_forecast(*, session: Session, spec: s.ForecastCreate) -> m.Forecast:
    """Forecast demand from a signals selector or given history, backtest it (MAPE per
    predictor) and, for a region with an instance model, plan its scaling."""
    region = get_region(session=session, ref=spec.region) if spec.region else None
    step = float(spec.step_seconds)
    end = spec.end or utcnow()
    if spec.selector is not None:
        history = _history_from_signals(session, spec.selector, end, spec.days, step)
        source = "signals"
    else:
        history = np.array(
            [np.nan if v is None else float(v) for v in spec.history or []], dtype=np.float64
        )
        source = "upload"
    forecast = forecast_demand(history, step, spec.horizon, folds=spec.folds)
    scaling = None
    if region is not None and region.throughput_per_instance:
        scaling = plan_scaling(
            forecast.values,
            step,
            throughput_per_instance=region.throughput_per_instance,
            headroom=region.headroom,
            readiness_seconds=region.readiness_seconds,
            min_instances=spec.min_instances,
            max_instances=region.max_instances,
            current_instances=region.instances,
            band=spec.band,
        ).to_dict()
    clean = np.nan_to_num(history, nan=0.0)
    row = m.Forecast(
        name=spec.name or (f"{region.name} demand" if region else spec.selector or "uploaded"),
        region_id=region.id if region else None,
        source=source,
        selector=spec.selector,
        start=end,
        step_seconds=step,
        horizon=spec.horizon,
        history=[float(v) for v in clean.tolist()],
        values=[float(v) for v in forecast.values.tolist()],
        backtest=json_safe(forecast.backtest.to_dict()),
        weights=json_safe(forecast.weights),
        scaling=json_safe(scaling),
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        "create",
        "traffic_forecast",
        row.id,
        after={"name": row.name, "source": source, "horizon": spec.horizon, "step": step},
    )
    return row


def _history_from_signals(
    session: Session, selector: str, end: datetime, days: float, step: float
) -> np.ndarray[Any, Any]:
    domains.require("signals", "a forecast from a selector reads signals")
    from popcorn.signals import api as signals_api  # type: ignore[attr-defined, unused-ignore]

    start = end - timedelta(days=days)
    result = signals_api.query(
        session=session, selector=selector, start=start, end=end, step=step, agg="mean"
    )
    stacked = np.vstack(result.values)
    present = np.isfinite(stacked).any(axis=0)
    total = np.where(present, np.nansum(stacked, axis=0), np.nan)
    first = int(np.argmax(present)) if present.any() else total.size
    return np.asarray(total[first:], dtype=np.float64)


def read_history(content: bytes | str, *, filename: str = "") -> list[float | None]:
    """Demand samples from a file: a JSON list of numbers, or a table (CSV, JSON records,
    Parquet) with a `value` or `demand` column, oldest first."""
    raw = content.encode() if isinstance(content, str) else content
    if raw.lstrip()[:1] == b"[":
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"history: not valid JSON: {exc.msg}") from None
        if all(v is None or isinstance(v, int | float) for v in data):
            return [None if v is None else float(v) for v in data]
    rows = read_table(raw, name="history", filename=filename)
    for column in ("value", "demand"):
        if rows and column in rows[0]:
            out: list[float | None] = []
            for line, row in enumerate(rows, start=1):
                value = row[column]
                try:
                    out.append(None if value is None else float(value))
                except (TypeError, ValueError):
                    raise InvalidInput(f"history: row {line}: {value!r} is not a number") from None
            return out
    raise InvalidInput("history: expected a 'value' or 'demand' column")


def get_forecast(*, session: Session, forecast_id: int) -> m.Forecast:
    row = session.get(m.Forecast, forecast_id)
    if row is None:
        raise NotFound(f"no forecast {forecast_id}", details={"forecast": forecast_id})
    return row


def list_forecasts(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.Forecast).where(*filter_clauses(params.filters, FORECAST_FILTERS))
    return _page(session, stmt, params, m.Forecast.id)


def forecast_actuals(*, session: Session, forecast: m.Forecast) -> list[float] | None:
    """What happened over the forecast's horizon, when signals have it (for the plot)."""
    if forecast.source != "signals" or not forecast.selector:
        return None
    if not domains.installed("signals"):
        return None
    from popcorn.signals import api as signals_api  # type: ignore[attr-defined, unused-ignore]

    end = min(
        utcnow(), forecast.start + timedelta(seconds=forecast.step_seconds * forecast.horizon)
    )
    if end <= forecast.start:
        return None
    try:
        result = signals_api.query(
            session=session,
            selector=forecast.selector,
            start=forecast.start,
            end=end,
            step=forecast.step_seconds,
            agg="mean",
        )
    except PopcornError:
        return None
    stacked = np.vstack(result.values)
    present = np.isfinite(stacked).any(axis=0)
    values = np.where(present, np.nansum(stacked, axis=0), np.nan)
    return [float(v) for v in values.tolist()]


def forecast_plot(*, session: Session, forecast_id: int) -> bytes:
    row = get_forecast(session=session, forecast_id=forecast_id)
    return forecast_png(
        row.history,
        row.values,
        row.step_seconds,
        actuals=forecast_actuals(session=session, forecast=row),
    )


# --- content placement -----------------------------------------------------------------------


def read_table(content: bytes | str, *, name: str, filename: str = "") -> list[dict[str, Any]]:
    """Rows of a CSV, JSON (records) or Parquet file; the format comes from the file name."""
    import pandas as pd

    lower = filename.lower()
    raw = content.encode() if isinstance(content, str) else content
    try:
        if lower.endswith(".parquet") or raw[:4] == b"PAR1":
            frame = pd.read_parquet(io.BytesIO(raw))
        elif lower.endswith(".json") or raw.lstrip()[:1] in (b"[", b"{"):
            data = json.loads(raw.decode("utf-8-sig"))
            frame = pd.DataFrame(data if isinstance(data, list) else data.get(name, data))
        else:
            frame = pd.read_csv(io.BytesIO(raw))
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{name}: cannot read {filename or 'the file'}: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def placement_spec(data: Any) -> s.PlacementCreate:
    """Validate placement input from any source, naming the offending row on error."""
    from pydantic import ValidationError

    try:
        return s.PlacementCreate.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(
            f"{where}: {first['msg']}", details={"errors": exc.error_count()}
        ) from None


def create_placement(*, session: Session, spec: s.PlacementCreate) -> m.Placement:
    """Fill each site's storage with the titles serving most of its region's requests; the
    popularity-only greedy is computed beside it as the baseline. Site storage (GB) comes from
    the upload, else the traffic region, else inventory (storage_tb)."""
    sites = sorted({row.site for row in spec.popularity})
    size_of: dict[str, float] = {}
    for item in spec.sizes:
        if item.title in size_of:
            raise InvalidInput(f"sizes: title {item.title!r} is listed twice")
        size_of[item.title] = item.size
    titles = sorted(size_of)
    unsized = sorted({row.title for row in spec.popularity} - set(size_of))
    if unsized:
        raise InvalidInput(
            f"sizes: no size for title(s) {', '.join(map(repr, unsized[:5]))}",
            details={"titles": unsized[:50]},
        )
    storage = _site_storage(session, sites, spec.storage)
    import scipy.sparse as sp

    si = {n: i for i, n in enumerate(sites)}
    ti = {n: j for j, n in enumerate(titles)}
    rows = [si[r.site] for r in spec.popularity]
    cols = [ti[r.title] for r in spec.popularity]
    matrix = sp.csr_matrix(
        ([r.requests for r in spec.popularity], (rows, cols)), shape=(len(sites), len(titles))
    )
    sizes = [size_of[t] for t in titles]
    plan = plan_placement(
        matrix, sizes, storage, sites=sites, titles=titles, strategy=spec.strategy
    )
    baseline = plan_placement(
        matrix, sizes, storage, sites=sites, titles=titles, strategy="popularity"
    )
    bound = plan.bound_share if spec.strategy == "density" else None
    row = m.Placement(
        name=spec.name,
        strategy=spec.strategy,
        local_share=plan.local_share,
        bound_share=bound,
        baseline_share=baseline.local_share,
        summary={
            "sites": len(sites),
            "titles": len(titles),
            "requests": float(plan.requests.sum()),
            "storage": dict(zip(sites, storage, strict=True)),
        },
        result=json_safe(plan.to_dict(include_titles=True)),
        created_by=current_actor().name,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        "create",
        "traffic_placement",
        row.id,
        after={"name": row.name, "strategy": row.strategy, "local_share": row.local_share},
    )
    return row


def _site_storage(
    session: Session, sites: Sequence[str], given: Sequence[s.StorageRow] | None
) -> list[float]:
    storage = {row.site: row.storage for row in given or []}
    missing = [site for site in sites if site not in storage]
    for site in list(missing):
        region = session.scalar(
            select(m.TrafficRegion).where(
                (m.TrafficRegion.name == site) | (m.TrafficRegion.inventory_site == site)
            )
        )
        if region is not None and region.storage_gb is not None:
            storage[site] = region.storage_gb
            missing.remove(site)
    if missing and domains.installed("inventory"):
        from popcorn.inventory import api as inventory_api  # type: ignore[attr-defined, unused-ignore]

        for row in inventory_api.site_capacity(session=session, sites=list(missing)):
            if row.storage_tb > 0:
                storage[row.site] = float(row.storage_tb) * 1000.0
        missing = [site for site in sites if site not in storage]
    if missing:
        raise InvalidInput(
            f"storage: no storage known for site(s) {', '.join(map(repr, missing[:5]))}; "
            "give it in the upload or on the region",
            details={"sites": missing[:50]},
        )
    return [float(storage[site]) for site in sites]


def get_placement(*, session: Session, placement_id: int) -> m.Placement:
    row = session.get(m.Placement, placement_id)
    if row is None:
        raise NotFound(f"no placement {placement_id}", details={"placement": placement_id})
    return row


def list_placements(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.Placement).where(*filter_clauses(params.filters, PLACEMENT_FILTERS))
    return _page(session, stmt, params, m.Placement.id)


# --- a generated world -----------------------------------------------------------------------


def generate_world(
    *,
    session: Session,
    regions: Sequence[str] = ("us-east-1", "us-west-2", "eu-west-1"),
    groups: int = 24,
    seed: int = 0,
    utilisation: float = 0.75,
    instances: int = 10,
    throughput_per_instance: float = 100.0,
    max_instances: int = 30,
    headroom: float = 0.1,
    readiness_seconds: float = 300.0,
) -> dict[str, Any]:
    """Regions, client groups (countries) with demand and a latency matrix, for a demo.

    Regions and groups sit at random points on a plane; latency grows with distance. Total
    demand is `utilisation` of the regions' usable capacity, so evacuating one of three regions
    needs the others to scale up. Existing regions and groups of the same names are replaced.
    """
    if not regions:
        raise InvalidInput("regions: name at least one region")
    if groups < 1:
        raise InvalidInput("groups: must be >= 1")
    if not 0 < utilisation < 1:
        raise InvalidInput("utilisation: must be in (0, 1)")
    rng = np.random.default_rng(seed)
    names = [f"g{i:03d}" for i in range(groups)]
    for name in names:
        if session.scalar(select(m.ClientGroup.id).where(m.ClientGroup.name == name)):
            delete_group(session=session, ref=name)
    for name in regions:
        if session.scalar(select(m.TrafficRegion.id).where(m.TrafficRegion.name == name)):
            delete_region(session=session, ref=name)
    for name in regions:
        create_region(
            session=session,
            data={
                "name": name,
                "kind": "cloud",
                "instances": instances,
                "throughput_per_instance": throughput_per_instance,
                "max_instances": max_instances,
                "headroom": headroom,
                "readiness_seconds": readiness_seconds,
                "aws_region": name if AWS_REGION_NAME.match(name) else None,
            },
        )
    capacity = len(regions) * instances * throughput_per_instance * (1 - headroom)
    weights = rng.lognormal(0.0, 0.6, groups)
    demand = weights / weights.sum() * capacity * utilisation
    region_xy = rng.uniform(0, 100, (len(regions), 2))
    group_xy = rng.uniform(0, 100, (groups, 2))
    for name, value in zip(names, demand.tolist(), strict=True):
        create_group(session=session, data={"name": name, "kind": "country", "demand": value})
    distance = np.linalg.norm(group_xy[:, None, :] - region_xy[None, :, :], axis=2)
    latency = 10.0 + distance * 1.5
    entries = [
        (g, r, round(float(latency[i, j]), 2))
        for i, g in enumerate(names)
        for j, r in enumerate(regions)
    ]
    set_costs(session=session, entries=entries, replace=False)
    return {
        "regions": list(regions),
        "groups": groups,
        "total_demand": float(demand.sum()),
        "capacity": capacity,
    }


# --- metrics ---------------------------------------------------------------------------------


def collect_metrics() -> Iterator[Any]:
    """Executions by status and plans by kind, read at scrape time."""
    from prometheus_client.core import GaugeMetricFamily

    from popcorn.db import session_scope

    executions = GaugeMetricFamily(
        "popcorn_traffic_executions", "Traffic plan executions by status", labels=["status"]
    )
    plans = GaugeMetricFamily(
        "popcorn_traffic_plans",
        "Traffic plans by kind and feasibility",
        labels=["kind", "feasible"],
    )
    with session_scope(readonly=True) as session:
        for status, count in session.execute(
            select(m.Execution.status, func.count()).group_by(m.Execution.status)
        ):
            executions.add_metric([status], count)
        for kind, feasible, count in session.execute(
            select(m.Plan.kind, m.Plan.feasible, func.count()).group_by(
                m.Plan.kind, m.Plan.feasible
            )
        ):
            plans.add_metric([kind, str(bool(feasible)).lower()], count)
    yield executions
    yield plans
