"""Traffic steering: which region (or CDN site) serves how much of each client group's demand.

The plan minimises latency-weighted cost (the sum over client groups and regions of demand
served times the group-to-region cost) subject to every region staying within its capacity
less its headroom target. It is a linear program over the allowed (group, region) pairs only,
solved with HiGHS through ``scipy.optimize.linprog`` on ``scipy.sparse`` matrices.

When demand cannot fit, the plan does not fail: each region carries an elastic overflow
variable at a prohibitive cost, so the solver finds the smallest overflow and says, per
region, how much demand is left over and what capacity (and how many instances) would make
the plan fit.

Large plans (thousands of groups) are solved by pricing: an estimate of each region's
capacity price decides most groups outright (their cheapest region is clearly cheapest), only
the near-ties enter the LP, and the LP's duals are checked against every allowed pair. The
loop ends only when no pair has a negative reduced cost, which is the optimality certificate
for the full LP, so the answer equals a single solve of the whole model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from popcorn.errors import InvalidInput

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
Method = Literal["auto", "full", "decomposed"]
CostInput = ArrayLike | Mapping[str, Mapping[str, float]]

#: Above this many allowed (group, region) pairs, "auto" prices the problem instead of one LP.
FULL_LP_PAIR_LIMIT = 50_000
_MAX_PRICING_ROUNDS = 60
_BINDING_RTOL = 1e-7


class PlanInputError(InvalidInput, ValueError):
    """Bad input to a traffic plan; ``field`` names the offending input."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", details={"field": field})
        self.field = field


class PlanSolveError(RuntimeError):
    """HiGHS did not return an optimal solution (numerical trouble, not bad input)."""


@dataclass(frozen=True)
class Region:
    """A serving region (or CDN site) and its capacity.

    Capacity is ``capacity`` when measured, else ``instances * throughput_per_instance``.
    ``headroom`` is the fraction of capacity kept free (0.2 keeps 20% spare). A region can
    scale up to ``max_instances`` (unbounded when None) only when its instances and throughput
    per instance are known; new instances take ``readiness_seconds`` to serve.
    """

    name: str
    capacity: float | None = None
    instances: int | None = None
    throughput_per_instance: float | None = None
    headroom: float = 0.0
    max_instances: int | None = None
    readiness_seconds: float = 600.0

    def __post_init__(self) -> None:
        where = f"region {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise PlanInputError("regions.name", "every region needs a non-empty name")
        if self.capacity is not None and not _finite_nonneg(self.capacity):
            raise PlanInputError(f"{where}.capacity", "must be a finite number >= 0")
        if self.instances is not None and (
            not isinstance(self.instances, int | np.integer) or self.instances < 0
        ):
            raise PlanInputError(f"{where}.instances", "must be an integer >= 0")
        tpi = self.throughput_per_instance
        if tpi is not None and (not _finite_nonneg(tpi) or tpi == 0):
            raise PlanInputError(f"{where}.throughput_per_instance", "must be a finite number > 0")
        if self.capacity is None and (self.instances is None or tpi is None):
            raise PlanInputError(
                f"{where}.capacity",
                "give a measured capacity, or instances and throughput_per_instance",
            )
        if not (_finite_nonneg(self.headroom) and self.headroom < 1):
            raise PlanInputError(f"{where}.headroom", "must be in [0, 1)")
        if self.max_instances is not None:
            if not isinstance(self.max_instances, int | np.integer) or self.max_instances < 0:
                raise PlanInputError(f"{where}.max_instances", "must be an integer >= 0")
            if self.instances is not None and self.max_instances < self.instances:
                raise PlanInputError(f"{where}.max_instances", "is below the current instances")
        if not _finite_nonneg(self.readiness_seconds):
            raise PlanInputError(f"{where}.readiness_seconds", "must be a finite number >= 0")

    @property
    def raw_capacity(self) -> float:
        if self.capacity is not None:
            return float(self.capacity)
        return float(self.instances or 0) * float(self.throughput_per_instance or 0.0)

    @property
    def usable_capacity(self) -> float:
        """Capacity the plan may fill: what is left after the headroom target."""
        return self.raw_capacity * (1.0 - self.headroom)

    @property
    def scalable(self) -> bool:
        """Scaling needs both the current instance count and the throughput of one instance."""
        return self.throughput_per_instance is not None and self.instances is not None

    @property
    def max_usable_capacity(self) -> float:
        """Usable capacity at ``max_instances`` (current capacity when it cannot scale)."""
        if not self.scalable:
            return self.usable_capacity
        if self.max_instances is None:
            return math.inf
        tpi = float(self.throughput_per_instance or 0.0)
        return max(self.raw_capacity, self.max_instances * tpi) * (1.0 - self.headroom)

    def instances_for(self, load: float) -> int | None:
        """Instances needed to carry ``load`` within the headroom target (None if not scalable)."""
        if not self.scalable:
            return None
        per_instance = float(self.throughput_per_instance or 0.0) * (1.0 - self.headroom)
        # A relative tolerance keeps exact fits (load == n * per_instance) at n instances.
        return max(0, math.ceil(load / per_instance * (1 - 1e-12) - 1e-9))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capacity": self.capacity,
            "instances": self.instances,
            "throughput_per_instance": self.throughput_per_instance,
            "headroom": self.headroom,
            "max_instances": self.max_instances,
            "readiness_seconds": self.readiness_seconds,
            "raw_capacity": self.raw_capacity,
            "usable_capacity": self.usable_capacity,
        }


@dataclass(frozen=True)
class ClientGroup:
    """Demand from one client group (a country, an ISP, a prefix set), in capacity units."""

    name: str
    demand: float


@dataclass(frozen=True)
class RegionLoad:
    """One region's side of a plan: its load, and whether (and how much) capacity binds it."""

    region: str
    load: float
    capacity: float
    utilisation: float
    binding: bool
    shadow_price: float | None
    shortfall: float
    required_capacity: float
    required_instances: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "load": self.load,
            "capacity": self.capacity if math.isfinite(self.capacity) else None,
            "utilisation": self.utilisation if math.isfinite(self.utilisation) else None,
            "binding": self.binding,
            "shadow_price": self.shadow_price,
            "shortfall": self.shortfall,
            "required_capacity": self.required_capacity,
            "required_instances": self.required_instances,
        }


@dataclass
class SteeringPlan:
    """The optimal split of each group's demand over regions.

    ``flows[g, r]`` is demand of group g served by region r; ``shares`` divides by demand
    (a group without demand gets its whole share on its best region, so it still has a route).
    ``shadow_price`` of a region is how much the objective falls per unit of extra usable
    capacity there: non-zero only where capacity binds. When ``feasible`` is False the flows
    still serve all demand but overload the regions listed with a ``shortfall`` (by the least
    total amount possible), ``required_capacity`` says what would fit, and binding regions have
    no shadow price (None).
    """

    regions: tuple[str, ...]
    groups: tuple[str, ...]
    demand: FloatArray
    flows: FloatArray
    shares: FloatArray
    capacity: FloatArray
    region_loads: list[RegionLoad]
    objective: float
    feasible: bool
    method: str
    lp_solves: int
    prices: FloatArray = field(repr=False)

    @property
    def loads(self) -> FloatArray:
        return self.flows.sum(axis=0)

    @property
    def total_demand(self) -> float:
        return float(self.demand.sum())

    @property
    def total_shortfall(self) -> float:
        return float(sum(r.shortfall for r in self.region_loads))

    @property
    def mean_cost(self) -> float:
        """Demand-weighted mean cost (e.g. latency) of the plan."""
        total = self.total_demand
        return self.objective / total if total > 0 else 0.0

    @property
    def binding(self) -> list[RegionLoad]:
        """Regions at capacity, most valuable extra capacity first."""
        binding = [r for r in self.region_loads if r.binding]
        return sorted(binding, key=lambda r: (-(r.shadow_price or 0.0), r.region))

    @property
    def shortfall(self) -> dict[str, float]:
        return {r.region: r.shortfall for r in self.region_loads if r.shortfall > 0}

    def share(self, group: str, region: str) -> float:
        return float(self.shares[self.groups.index(group), self.regions.index(region)])

    def to_dict(self) -> dict[str, Any]:
        shares = self.shares
        gi, ri = np.nonzero(shares > 0)
        return {
            "feasible": self.feasible,
            "objective": self.objective,
            "mean_cost": self.mean_cost,
            "total_demand": self.total_demand,
            "total_shortfall": self.total_shortfall,
            "method": self.method,
            "lp_solves": self.lp_solves,
            "regions": [r.to_dict() for r in self.region_loads],
            "binding": [r.region for r in self.binding],
            "shortfall": self.shortfall,
            "assignments": [
                {
                    "group": self.groups[g],
                    "region": self.regions[r],
                    "share": float(shares[g, r]),
                    "demand": float(self.flows[g, r]),
                }
                for g, r in zip(gi.tolist(), ri.tolist(), strict=True)
            ],
        }


@dataclass
class SteeringProblem:
    """Validated arrays for one plan: the same engine serves steering, evacuation and CDN sites."""

    regions: tuple[Region, ...]
    groups: tuple[str, ...]
    demand: FloatArray
    cost: FloatArray  # +inf where a group may not be served by a region
    capacity: FloatArray  # usable capacity per region
    expansion: FloatArray  # extra usable capacity each region may add (0 = fixed)
    expansion_cost: float = 0.0

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)

    @property
    def allowed(self) -> BoolArray:
        return np.isfinite(self.cost)

    @classmethod
    def build(
        cls,
        regions: Sequence[Region],
        groups: Sequence[ClientGroup] | Mapping[str, float],
        cost: CostInput,
    ) -> SteeringProblem:
        regs = _check_regions(regions)
        names, demand = _check_groups(groups)
        matrix = _check_cost(cost, names, tuple(r.name for r in regs))
        stranded = (demand > 0) & ~np.isfinite(matrix).any(axis=1)
        if stranded.any():
            listed = ", ".join(repr(names[i]) for i in np.flatnonzero(stranded)[:5])
            raise PlanInputError(
                "cost", f"no region is allowed for group(s) {listed} which have demand"
            )
        capacity = np.array([r.usable_capacity for r in regs])
        return cls(regs, names, demand, matrix, capacity, np.zeros(len(regs)))

    def without(self, excluded: Sequence[str]) -> SteeringProblem:
        """The same problem with some regions closed to traffic."""
        names = self.region_names
        cost = self.cost.copy()
        for name in excluded:
            cost[:, names.index(name)] = np.inf
        return SteeringProblem(
            self.regions,
            self.groups,
            self.demand,
            cost,
            self.capacity.copy(),
            self.expansion.copy(),
            self.expansion_cost,
        )


def plan_steering(
    regions: Sequence[Region],
    groups: Sequence[ClientGroup] | Mapping[str, float],
    cost: CostInput,
    *,
    method: Method = "auto",
) -> SteeringPlan:
    """Optimal steering plan for ``groups`` over ``regions``.

    ``cost`` is a (groups x regions) array in the given orders, or a mapping
    ``{group: {region: cost}}``; inf, NaN or a missing entry means the pair is not allowed.
    ``method`` "full" solves one LP over all pairs, "decomposed" prices the problem (see the
    module docstring), "auto" picks by size. Both give the same optimum.
    """
    return solve(SteeringProblem.build(regions, groups, cost), method=method)


def solve(problem: SteeringProblem, *, method: Method = "auto") -> SteeringPlan:
    """Solve a validated problem; evacuation uses this with closed regions and expansion."""
    if method not in ("auto", "full", "decomposed"):
        raise PlanInputError("method", "must be 'auto', 'full' or 'decomposed'")
    pairs = int(np.count_nonzero(problem.allowed[problem.demand > 0]))
    if method == "auto":
        method = "full" if pairs <= FULL_LP_PAIR_LIMIT else "decomposed"
    penalty = _overflow_penalty(problem)
    if method == "full":
        solution = _solve_full(problem, penalty)
    else:
        solution = _solve_decomposed(problem, penalty, _initial_prices(problem, penalty))
    return _plan_from(problem, solution)


# --- validation -------------------------------------------------------------------------


def _finite_nonneg(value: object) -> bool:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number >= 0


def _check_regions(regions: Sequence[Region]) -> tuple[Region, ...]:
    if isinstance(regions, str | bytes) or not isinstance(regions, Sequence):
        raise PlanInputError("regions", "must be a list of Region")
    if not regions:
        raise PlanInputError("regions", "at least one region is required")
    seen: set[str] = set()
    for i, region in enumerate(regions):
        if not isinstance(region, Region):
            raise PlanInputError(f"regions[{i}]", "must be a Region")
        if region.name in seen:
            raise PlanInputError(f"regions[{i}].name", f"duplicate region {region.name!r}")
        seen.add(region.name)
    return tuple(regions)


def _check_groups(
    groups: Sequence[ClientGroup] | Mapping[str, float],
) -> tuple[tuple[str, ...], FloatArray]:
    if isinstance(groups, Mapping):
        items = list(groups.items())
    elif isinstance(groups, Sequence) and not isinstance(groups, str | bytes):
        items = []
        for i, group in enumerate(groups):
            if not isinstance(group, ClientGroup):
                raise PlanInputError(f"groups[{i}]", "must be a ClientGroup")
            items.append((group.name, group.demand))
    else:
        raise PlanInputError("groups", "must be a list of ClientGroup or a {group: demand} map")
    if not items:
        raise PlanInputError("groups", "at least one client group is required")
    names: list[str] = []
    seen: set[str] = set()
    for i, (name, _) in enumerate(items):
        if not isinstance(name, str) or not name:
            raise PlanInputError(f"groups[{i}].name", "every group needs a non-empty name")
        if name in seen:
            raise PlanInputError(f"groups[{i}].name", f"duplicate group {name!r}")
        seen.add(name)
        names.append(name)
    demand = np.empty(len(items))
    for i, (name, value) in enumerate(items):
        if value is None:
            raise PlanInputError(f"group {name!r}.demand", "is missing")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PlanInputError(f"group {name!r}.demand", f"is not a number: {value!r}") from None
        if not math.isfinite(number):
            raise PlanInputError(f"group {name!r}.demand", f"must be finite, got {number}")
        if number < 0:
            raise PlanInputError(f"group {name!r}.demand", f"must be >= 0, got {number}")
        demand[i] = number
    return tuple(names), demand


def _check_cost(cost: CostInput, groups: tuple[str, ...], regions: tuple[str, ...]) -> FloatArray:
    if isinstance(cost, Mapping):
        index = {name: i for i, name in enumerate(regions)}
        gindex = {name: i for i, name in enumerate(groups)}
        matrix = np.full((len(groups), len(regions)), np.inf)
        for group, row in cost.items():
            if group not in gindex:
                raise PlanInputError("cost", f"unknown group {group!r}")
            if not isinstance(row, Mapping):
                raise PlanInputError(f"cost[{group!r}]", "must map region name to cost")
            for region, value in row.items():
                if region not in index:
                    raise PlanInputError(f"cost[{group!r}]", f"unknown region {region!r}")
                try:
                    matrix[gindex[group], index[region]] = float(value)
                except (TypeError, ValueError):
                    raise PlanInputError(
                        f"cost[{group!r}][{region!r}]", f"is not a number: {value!r}"
                    ) from None
    else:
        try:
            matrix = np.array(cost, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise PlanInputError("cost", f"is not a numeric matrix ({exc})") from None
        expected = (len(groups), len(regions))
        if matrix.shape != expected:
            raise PlanInputError(
                "cost", f"has shape {matrix.shape}, expected (groups, regions) = {expected}"
            )
    matrix[np.isnan(matrix)] = np.inf
    if (matrix < 0).any():
        g, r = np.argwhere(matrix < 0)[0]
        raise PlanInputError(
            "cost", f"must be >= 0 (inf or NaN = not allowed); {groups[g]!r}->{regions[r]!r}"
        )
    return matrix


# --- the linear program -----------------------------------------------------------------


@dataclass
class _Solution:
    flows: FloatArray  # groups x regions
    prices: FloatArray  # >= 0 per region: objective decrease per unit of extra capacity
    lp_solves: int
    method: str = "full"


def _overflow_penalty(problem: SteeringProblem) -> float:
    """A cost per unit of overflow high enough that the LP never trades overflow for latency.

    Moving a unit of overflow off a region reroutes demand along an alternating path that
    touches each region at most once, so it can raise the routing cost by at most
    (2 * regions + 1) times the cost span.
    """
    finite = problem.cost[np.isfinite(problem.cost)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    return (2 * len(problem.regions) + 2) * (span + problem.expansion_cost) + 1.0


def _lp(
    cost: FloatArray,
    demand: FloatArray,
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    capacity: FloatArray,
    expansion: FloatArray,
    expansion_cost: float,
    penalty: float,
    n_groups: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """One HiGHS solve: flows of the listed pairs, region prices and group duals."""
    import scipy.sparse as sp
    from scipy.optimize import linprog

    n_regions = capacity.size
    n = rows.size
    grow = np.flatnonzero(expansion > 0)
    n_exp = grow.size
    c = np.concatenate([cost, np.full(n_exp, expansion_cost), np.full(n_regions, penalty)])
    col = np.arange(n)
    a_eq = sp.csc_matrix((np.ones(n), (rows, col)), shape=(n_groups, n + n_exp + n_regions))
    ub_rows = np.concatenate([cols, grow, np.arange(n_regions)])
    ub_cols = np.concatenate([col, n + np.arange(n_exp), n + n_exp + np.arange(n_regions)])
    ub_vals = np.concatenate([np.ones(n), -np.ones(n_exp), -np.ones(n_regions)])
    a_ub = sp.csc_matrix((ub_vals, (ub_rows, ub_cols)), shape=(n_regions, c.size))
    upper = np.concatenate([np.full(n, np.inf), expansion[grow], np.full(n_regions, np.inf)])
    bounds = np.column_stack([np.zeros(c.size), upper])
    res = linprog(
        c,
        A_ub=a_ub,
        b_ub=capacity,
        A_eq=a_eq,
        b_eq=demand,
        bounds=bounds,
        method="highs",
    )
    if res.status != 0:
        raise PlanSolveError(f"HiGHS could not solve the steering LP: {res.message}")
    prices = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0)
    return np.asarray(res.x)[:n], prices, np.asarray(res.eqlin.marginals)


def _solve_full(problem: SteeringProblem, penalty: float) -> _Solution:
    active = problem.demand > 0
    mask = problem.allowed & active[:, None]
    rows, cols = np.nonzero(mask)
    g_idx = np.flatnonzero(active)
    remap = np.full(problem.demand.size, -1)
    remap[g_idx] = np.arange(g_idx.size)
    flows_pairs, prices, _ = _lp(
        problem.cost[rows, cols],
        problem.demand[g_idx],
        remap[rows],
        cols,
        problem.capacity,
        problem.expansion,
        problem.expansion_cost,
        penalty,
        g_idx.size,
    )
    flows = np.zeros_like(problem.cost)
    flows[rows, cols] = flows_pairs
    return _Solution(flows, prices, 1)


def _solve_decomposed(problem: SteeringProblem, penalty: float, prices: FloatArray) -> _Solution:
    """Column generation from estimated prices, with most groups fixed to their best region.

    A group with a single candidate region is taken out of the LP and its demand charged to
    that region's capacity. After each LP the region duals price every allowed pair; pairs
    with a negative reduced cost join the candidates. Candidates carry over only if they carry
    flow or are within ``band`` of the group's best reduced cost, which keeps the LP small.
    """
    active = np.flatnonzero(problem.demand > 0)
    cost = problem.cost[active]
    demand = problem.demand[active]
    n_groups, n_regions = cost.shape
    finite = cost[np.isfinite(cost)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    band = 0.003 * span
    tol = 1e-7 * max(1.0, float(finite.max()) if finite.size else 1.0)
    priced = cost + prices
    best = priced.min(axis=1)
    candidates = priced <= best[:, None] + band
    everything = np.arange(n_groups)
    solves = 0
    while True:
        counts = candidates.sum(axis=1)
        multi = np.flatnonzero(counts > 1)
        single = np.flatnonzero(counts == 1)
        single_region = candidates[single].argmax(axis=1)
        fixed_load = np.bincount(single_region, weights=demand[single], minlength=n_regions)
        sub_rows, sub_cols = np.nonzero(candidates[multi])
        x, prices, duals = _lp(
            cost[multi[sub_rows], sub_cols],
            demand[multi],
            sub_rows,
            sub_cols,
            problem.capacity - fixed_load,
            problem.expansion,
            problem.expansion_cost,
            penalty,
            multi.size,
        )
        solves += 1
        group_price = np.empty(n_groups)
        group_price[multi] = duals
        group_price[single] = cost[single, single_region] + prices[single_region]
        priced = cost + prices
        reduced = priced - group_price[:, None]
        violated = (reduced < -tol) & ~candidates
        if not violated.any():
            break
        if solves >= _MAX_PRICING_ROUNDS:
            fallback = _solve_full(problem, penalty)
            fallback.lp_solves += solves
            fallback.method = "decomposed, then full"
            return fallback
        flowing = np.zeros_like(candidates)
        flowing[multi[sub_rows[x > 0]], sub_cols[x > 0]] = True
        flowing[single, single_region] = True
        best = priced.min(axis=1)
        candidates = flowing | (priced <= best[:, None] + band)
        # The most negative pair of each violating group always enters.
        worst = np.where(violated, reduced, np.inf).argmin(axis=1)
        hit = violated.any(axis=1)
        candidates[everything[hit], worst[hit]] = True
    flows = np.zeros_like(problem.cost)
    flows[active[multi[sub_rows]], sub_cols] = x
    flows[active[single], single_region] = demand[single]
    return _Solution(flows, prices, solves, "decomposed")


def _initial_prices(problem: SteeringProblem, penalty: float) -> FloatArray:
    """Region prices from the same problem on a random quarter of the groups, recursively.

    The sample keeps each region's capacity in proportion to the sample's demand, so its
    prices approximate the full problem's and most groups start out decided.
    """
    active = np.flatnonzero(problem.demand > 0)
    n_regions = len(problem.regions)
    size = active.size // 4
    if size < max(200, 4 * n_regions):
        return np.zeros(n_regions)
    rng = np.random.default_rng(0)
    sample = rng.choice(active, size=size, replace=False)
    fraction = float(problem.demand[sample].sum() / problem.demand[active].sum())
    sub = SteeringProblem(
        problem.regions,
        tuple(problem.groups[i] for i in sample),
        problem.demand[sample],
        problem.cost[sample],
        problem.capacity * fraction,
        problem.expansion * fraction,
        problem.expansion_cost,
    )
    return _solve_decomposed(sub, penalty, _initial_prices(sub, penalty)).prices


def _plan_from(problem: SteeringProblem, solution: _Solution) -> SteeringPlan:
    flows = solution.flows
    shares = np.zeros_like(flows)
    positive = problem.demand > 0
    shares[positive] = flows[positive] / problem.demand[positive, None]
    zero = np.flatnonzero(~positive)
    if zero.size:
        # Groups without demand still need a route: their cheapest region at current prices.
        best = (problem.cost[zero] + solution.prices).argmin(axis=1)
        shares[zero, best] = 1.0
    loads = flows.sum(axis=0)
    # A region that may scale binds only at its maximum, not at what the plan chose to add.
    capacity = problem.capacity + problem.expansion
    overflow = np.maximum(loads - capacity, 0.0)
    scale = np.where(np.isfinite(capacity), np.maximum(1.0, capacity), 1.0)
    overflow[overflow <= _BINDING_RTOL * scale] = 0.0
    feasible = not (overflow > 0).any()
    region_loads = []
    for i, region in enumerate(problem.regions):
        # With overflow the duals only echo the overflow penalty: no price to report.
        shadow = float(solution.prices[i]) if feasible else None
        load = float(loads[i])
        cap = float(capacity[i])
        binding = load >= cap * (1 - _BINDING_RTOL) - 1e-9 and (cap > 0 or solution.prices[i] > 0)
        short = float(overflow[i])
        required = max(load, float(problem.capacity[i]))
        region_loads.append(
            RegionLoad(
                region=region.name,
                load=load,
                capacity=cap,
                utilisation=load / cap if cap > 0 else (math.inf if load > 0 else 0.0),
                binding=bool(binding),
                shadow_price=shadow if binding else 0.0,
                shortfall=short,
                required_capacity=required / (1.0 - region.headroom),
                required_instances=region.instances_for(required),
            )
        )
    served = flows > 0
    return SteeringPlan(
        regions=problem.region_names,
        groups=problem.groups,
        demand=problem.demand,
        flows=flows,
        shares=shares,
        capacity=capacity,
        region_loads=region_loads,
        objective=float((flows[served] * problem.cost[served]).sum()),
        feasible=feasible,
        method=solution.method,
        lp_solves=solution.lp_solves,
        prices=solution.prices,
    )
