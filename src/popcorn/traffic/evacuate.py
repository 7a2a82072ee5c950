"""Regional evacuation: move all traffic off one or more regions without overloading the rest.

The plan is the one an operator runs during a regional failover: first scale the receiving
regions up (new instances take their readiness time), then shift traffic in equal steps from
the current plan to the target plan without the evacuated regions, dwelling at each step to
watch it. Every intermediate state is a convex combination of start and target, so each
region's load moves linearly between its start and target loads; the capacity added up front
covers the larger of the two, and the load of every step is checked against it anyway.

The reverse plan returns traffic once the region is healthy, then scales back down.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from popcorn.traffic.optimize import (
    ClientGroup,
    CostInput,
    FloatArray,
    Method,
    PlanInputError,
    Region,
    SteeringPlan,
    SteeringProblem,
    solve,
)

_LOAD_RTOL = 1e-9


@dataclass(frozen=True)
class ScaleAction:
    """Set one region's instance count (before shifting traffic in, or after it left)."""

    region: str
    from_instances: int
    to_instances: int
    capacity_before: float
    capacity_after: float
    ready_after_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "from_instances": self.from_instances,
            "to_instances": self.to_instances,
            "capacity_before": self.capacity_before,
            "capacity_after": self.capacity_after,
            "ready_after_seconds": self.ready_after_seconds,
        }


@dataclass(frozen=True)
class RampStep:
    """State after step ``index``: ``fraction`` of the way from start to target."""

    index: int
    fraction: float
    start_seconds: float
    loads: dict[str, float]
    weights: dict[str, float]
    max_utilisation: float
    overloaded: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "fraction": self.fraction,
            "start_seconds": self.start_seconds,
            "loads": self.loads,
            "weights": self.weights,
            "max_utilisation": self.max_utilisation,
            "overloaded": list(self.overloaded),
        }


@dataclass(frozen=True)
class Infeasibility:
    """Why an evacuation cannot be done, and what would make it possible."""

    reasons: tuple[str, ...]
    stranded_groups: tuple[str, ...] = ()
    shortfall: dict[str, float] = field(default_factory=dict)
    instances_needed: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reasons": list(self.reasons),
            "stranded_groups": list(self.stranded_groups),
            "shortfall": self.shortfall,
            "instances_needed": self.instances_needed,
        }


@dataclass
class EvacuationPlan:
    """Scale-up actions, then ``steps`` shifts from ``start_shares`` to ``target_shares``.

    ``capacity`` is each region's usable capacity during the ramp (after scale-up).
    ``total_seconds`` is the slowest readiness among scaled regions plus one dwell per step.
    """

    direction: Literal["evacuate", "return"]
    evacuated: tuple[str, ...]
    regions: tuple[Region, ...]
    groups: tuple[str, ...]
    demand: FloatArray
    start_shares: FloatArray
    target_shares: FloatArray
    capacity: FloatArray
    feasible: bool
    scale_up: list[ScaleAction]
    steps: list[RampStep]
    scale_down: list[ScaleAction]
    scale_up_seconds: float
    total_seconds: float
    dwell_seconds: float
    target: SteeringPlan | None = None
    infeasibility: Infeasibility | None = None

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)

    @property
    def start_loads(self) -> FloatArray:
        return self.demand @ self.start_shares

    @property
    def target_loads(self) -> FloatArray:
        return self.demand @ self.target_shares

    def shares_at(self, index: int) -> FloatArray:
        """Share of each group per region after step ``index`` (0 = before any shift)."""
        n = len(self.steps)
        if not 0 <= index <= n:
            raise PlanInputError("index", f"must be between 0 and {n}")
        fraction = index / n if n else 0.0
        return (1.0 - fraction) * self.start_shares + fraction * self.target_shares

    def to_dict(self) -> dict[str, Any]:
        names = self.region_names
        return {
            "direction": self.direction,
            "evacuated": list(self.evacuated),
            "feasible": self.feasible,
            "infeasibility": self.infeasibility.to_dict() if self.infeasibility else None,
            "capacity": dict(zip(names, self.capacity.tolist(), strict=True)),
            "start_loads": dict(zip(names, self.start_loads.tolist(), strict=True)),
            "target_loads": dict(zip(names, self.target_loads.tolist(), strict=True)),
            "scale_up": [a.to_dict() for a in self.scale_up],
            "steps": [s.to_dict() for s in self.steps],
            "scale_down": [a.to_dict() for a in self.scale_down],
            "scale_up_seconds": self.scale_up_seconds,
            "dwell_seconds": self.dwell_seconds,
            "total_seconds": self.total_seconds,
            "target": self.target.to_dict() if self.target else None,
        }


def plan_evacuation(
    regions: Sequence[Region],
    groups: Sequence[ClientGroup] | Mapping[str, float],
    cost: CostInput,
    evacuate: Sequence[str],
    *,
    current: SteeringPlan | ArrayLike | None = None,
    steps: int = 10,
    dwell_seconds: float = 60.0,
    scale_cost: float = 0.0,
    method: Method = "auto",
) -> EvacuationPlan:
    """Plan to take all traffic off ``evacuate``.

    ``current`` is the steering in force (a plan or a groups x regions share matrix); by
    default the optimal plan with every region. Receiving regions may scale up to their
    ``max_instances``; ``scale_cost`` (cost units per unit of added capacity) makes the target
    prefer spare capacity over new instances. An evacuation that cannot fit comes back with
    ``feasible=False`` and an ``infeasibility`` report rather than an exception.
    """
    problem = SteeringProblem.build(regions, groups, cost)
    names = problem.region_names
    out = _check_evacuate(evacuate, names)
    _check_ramp(steps, dwell_seconds)
    if not (math.isfinite(scale_cost) and scale_cost >= 0):
        raise PlanInputError("scale_cost", "must be a finite number >= 0")
    start = _start_shares(problem, current, method)
    closed = np.array([n in out for n in names])

    target_problem = problem.without(out)
    stranded = (problem.demand > 0) & ~np.isfinite(target_problem.cost).any(axis=1)
    if stranded.any():
        groups_left = tuple(problem.groups[i] for i in np.flatnonzero(stranded))
        return _infeasible(
            problem,
            out,
            start,
            dwell_seconds,
            Infeasibility(
                reasons=(f"{len(groups_left)} group(s) may only be served by evacuated regions",),
                stranded_groups=groups_left,
            ),
        )
    target_problem.expansion = np.array(
        [
            0.0 if closed[i] else r.max_usable_capacity - r.usable_capacity
            for i, r in enumerate(problem.regions)
        ]
    )
    target_problem.expansion_cost = scale_cost
    target = solve(target_problem, method=method)
    if not target.feasible:
        needed = {
            r.region: r.required_instances
            for r in target.region_loads
            if r.shortfall > 0 and r.required_instances is not None
        }
        return _infeasible(
            problem,
            out,
            start,
            dwell_seconds,
            Infeasibility(
                reasons=(
                    "remaining regions cannot carry the demand even at their maximum instances",
                ),
                shortfall=target.shortfall,
                instances_needed=needed,
            ),
            target,
        )

    start_loads = problem.demand @ start
    need = np.maximum(start_loads, target.loads)
    capacity = problem.capacity.copy()
    scale_up: list[ScaleAction] = []
    reasons: list[str] = []
    for i, region in enumerate(problem.regions):
        if closed[i] or need[i] <= capacity[i] * (1 + _LOAD_RTOL):
            continue
        to = region.instances_for(float(need[i]))
        if to is None:
            reasons.append(f"region {region.name!r} cannot scale and would carry {need[i]:.6g}")
            continue
        if region.max_instances is not None and to > region.max_instances:
            reasons.append(
                f"region {region.name!r} needs {to} instances, above its maximum"
                f" {region.max_instances}"
            )
            continue
        before = float(capacity[i])
        capacity[i] = _usable(region, to)
        scale_up.append(
            ScaleAction(
                region.name,
                region.instances or 0,
                to,
                before,
                float(capacity[i]),
                float(region.readiness_seconds),
            )
        )
    scale_up_seconds = max((a.ready_after_seconds for a in scale_up), default=0.0)
    ramp = _ramp(
        names,
        problem.demand,
        start,
        target.shares,
        capacity,
        steps,
        dwell_seconds,
        scale_up_seconds,
    )
    # An evacuated region's load only falls: if it starts overloaded, leaving is the cure.
    overloaded = sorted({n for step in ramp for n in step.overloaded if n not in out})
    if overloaded:
        reasons.append(f"overloaded during the ramp: {', '.join(overloaded)}")
    return EvacuationPlan(
        direction="evacuate",
        evacuated=out,
        regions=problem.regions,
        groups=problem.groups,
        demand=problem.demand,
        start_shares=start,
        target_shares=target.shares,
        capacity=capacity,
        feasible=not reasons,
        scale_up=scale_up,
        steps=ramp,
        scale_down=[],
        scale_up_seconds=scale_up_seconds,
        total_seconds=scale_up_seconds + steps * dwell_seconds,
        dwell_seconds=dwell_seconds,
        target=target,
        infeasibility=Infeasibility(tuple(reasons)) if reasons else None,
    )


def plan_return(
    evacuation: EvacuationPlan, *, steps: int | None = None, dwell_seconds: float | None = None
) -> EvacuationPlan:
    """Bring traffic back to where it was before ``evacuation``, then scale back down.

    Scaled-up capacity stays until the last step has moved, so the ramp back needs no new
    instances; the scale-down actions restore each region's original instance count.
    """
    if evacuation.direction != "evacuate":
        raise PlanInputError("evacuation", "is already a return plan")
    if not evacuation.feasible:
        raise PlanInputError("evacuation", "was not feasible, so there is nothing to return")
    n = len(evacuation.steps) if steps is None else steps
    dwell = evacuation.dwell_seconds if dwell_seconds is None else dwell_seconds
    _check_ramp(n, dwell)
    ramp = _ramp(
        evacuation.region_names,
        evacuation.demand,
        evacuation.target_shares,
        evacuation.start_shares,
        evacuation.capacity,
        n,
        dwell,
        0.0,
    )
    scale_down = [
        ScaleAction(
            a.region,
            a.to_instances,
            a.from_instances,
            a.capacity_after,
            a.capacity_before,
            0.0,
        )
        for a in evacuation.scale_up
    ]
    overloaded = sorted({name for step in ramp for name in step.overloaded})
    return EvacuationPlan(
        direction="return",
        evacuated=evacuation.evacuated,
        regions=evacuation.regions,
        groups=evacuation.groups,
        demand=evacuation.demand,
        start_shares=evacuation.target_shares,
        target_shares=evacuation.start_shares,
        capacity=evacuation.capacity,
        feasible=not overloaded,
        scale_up=[],
        steps=ramp,
        scale_down=scale_down,
        scale_up_seconds=0.0,
        total_seconds=n * dwell,
        dwell_seconds=dwell,
        infeasibility=(
            Infeasibility((f"overloaded during the ramp: {', '.join(overloaded)}",))
            if overloaded
            else None
        ),
    )


def plot_ramp(plan: EvacuationPlan) -> Figure:
    """Each region's load per step, with its ramp capacity as a dashed line of the same colour."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.add_subplot()
    loads = np.array(
        [plan.start_loads] + [[s.loads[n] for n in plan.region_names] for s in plan.steps]
    )
    x = np.arange(loads.shape[0])
    cmap = matplotlib.colormaps["tab20"]
    for i, name in enumerate(plan.region_names):
        color = cmap(i % 20)
        label = f"{name} (evacuated)" if name in plan.evacuated else name
        ax.plot(x, loads[:, i], marker="o", markersize=3, color=color, label=label)
        ax.axhline(plan.capacity[i], color=color, linestyle="--", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("load")
    ax.set_title(f"{plan.direction}: {', '.join(plan.evacuated)} ({plan.total_seconds:.0f} s)")
    ax.set_xticks(x)
    if len(plan.regions) <= 20:
        ax.legend(fontsize="small", ncols=2)
    return fig


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure, for the API and the console."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def ramp_png(plan: EvacuationPlan) -> bytes:
    return figure_png(plot_ramp(plan))


# --- helpers ----------------------------------------------------------------------------


def _check_evacuate(evacuate: Sequence[str], names: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(evacuate, str):
        evacuate = [evacuate]
    out = tuple(evacuate)
    if not out:
        raise PlanInputError("evacuate", "name at least one region to evacuate")
    for name in out:
        if name not in names:
            raise PlanInputError("evacuate", f"unknown region {name!r}")
    if len(set(out)) != len(out):
        raise PlanInputError("evacuate", "lists a region twice")
    if len(out) == len(names):
        raise PlanInputError("evacuate", "cannot evacuate every region: traffic has nowhere to go")
    return out


def _check_ramp(steps: int, dwell_seconds: float) -> None:
    if not isinstance(steps, int | np.integer) or isinstance(steps, bool) or steps < 1:
        raise PlanInputError("steps", "must be an integer >= 1")
    if not (math.isfinite(dwell_seconds) and dwell_seconds >= 0):
        raise PlanInputError("dwell_seconds", "must be a finite number >= 0")


def _start_shares(
    problem: SteeringProblem, current: SteeringPlan | ArrayLike | None, method: Method
) -> FloatArray:
    if current is None:
        return solve(problem, method=method).shares
    if isinstance(current, SteeringPlan):
        if current.regions != problem.region_names or current.groups != problem.groups:
            raise PlanInputError("current", "plan is for different regions or groups")
        return current.shares
    try:
        shares = np.array(current, dtype=np.float64)
    except (TypeError, ValueError):
        raise PlanInputError("current", "is not a numeric share matrix") from None
    expected = problem.cost.shape
    if shares.shape != expected:
        raise PlanInputError("current", f"has shape {shares.shape}, expected {expected}")
    if not np.isfinite(shares).all() or (shares < 0).any():
        raise PlanInputError("current", "shares must be finite and >= 0")
    sums = shares.sum(axis=1)
    bad = (problem.demand > 0) & (np.abs(sums - 1.0) > 1e-6)
    if bad.any():
        raise PlanInputError(
            "current", f"shares of group {problem.groups[np.flatnonzero(bad)[0]]!r} do not sum to 1"
        )
    return shares


def _usable(region: Region, instances: int) -> float:
    tpi = float(region.throughput_per_instance or 0.0)
    return max(region.raw_capacity, instances * tpi) * (1.0 - region.headroom)


def _ramp(
    names: tuple[str, ...],
    demand: FloatArray,
    start: FloatArray,
    target: FloatArray,
    capacity: FloatArray,
    steps: int,
    dwell_seconds: float,
    offset_seconds: float,
) -> list[RampStep]:
    """Loads at each step, checked against ``capacity``."""
    start_loads = demand @ start
    target_loads = demand @ target
    total = float(demand.sum())
    limit = capacity * (1 + _LOAD_RTOL) + _LOAD_RTOL
    out = []
    for k in range(1, steps + 1):
        fraction = k / steps
        loads = (1.0 - fraction) * start_loads + fraction * target_loads
        with np.errstate(divide="ignore", invalid="ignore"):
            utilisation = np.where(capacity > 0, loads / capacity, np.where(loads > 0, np.inf, 0))
        out.append(
            RampStep(
                index=k,
                fraction=fraction,
                start_seconds=offset_seconds + (k - 1) * dwell_seconds,
                loads=dict(zip(names, loads.tolist(), strict=True)),
                weights=dict(
                    zip(names, (loads / total if total > 0 else loads).tolist(), strict=True)
                ),
                max_utilisation=float(utilisation.max()),
                overloaded=tuple(names[i] for i in np.flatnonzero(loads > limit)),
            )
        )
    return out


def _infeasible(
    problem: SteeringProblem,
    out: tuple[str, ...],
    start: FloatArray,
    dwell_seconds: float,
    report: Infeasibility,
    target: SteeringPlan | None = None,
) -> EvacuationPlan:
    return EvacuationPlan(
        direction="evacuate",
        evacuated=out,
        regions=problem.regions,
        groups=problem.groups,
        demand=problem.demand,
        start_shares=start,
        target_shares=target.shares if target is not None else start,
        capacity=problem.capacity.copy(),
        feasible=False,
        scale_up=[],
        steps=[],
        scale_down=[],
        scale_up_seconds=0.0,
        total_seconds=0.0,
        dwell_seconds=dwell_seconds,
        target=target,
        infeasibility=report,
    )
