"""Persisted plans: steering (the optimal split of demand), evacuation of regions, the return
after one, and the shift of a CDN site's load; their queries and plots.

The arithmetic is in `optimize` and `evacuate`; this module gathers a plan's inputs from the
stored model and stores what the engine answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import domains
from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import InvalidInput, NotFound, PopcornError
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
from popcorn.traffic.optimize import PlanInputError, Region, SteeringPlan, plan_steering
from popcorn.traffic.planbook import get_plan
from popcorn.traffic.regions import engine_region, get_group, resolve_demand, sync_from_inventory
from popcorn.traffic.service import json_safe

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


def plan_return_for(*, session: Session, plan_id: int | str, spec: s.ReturnCreate) -> m.Plan:
    """Bring traffic back to where it was before an evacuation, then scale back down."""
    parent = get_plan(session=session, plan_id=plan_id)
    if parent.kind not in ("evacuation", "shift"):
        raise InvalidInput(
            f"plan {parent.id} is a {parent.kind} plan; only an evacuation can be returned"
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


def plan_png(*, session: Session, plan_id: int | str) -> bytes:
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
