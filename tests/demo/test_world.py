"""The demo world: the same seed gives the same world and the same plans, whenever it is built,
and the failed appliance's site serves real load for the shift to move."""

from __future__ import annotations

import time

import numpy as np

from popcorn.demo.world import World, generate
from popcorn.traffic.evacuate import plan_evacuation
from popcorn.traffic.optimize import Region


def _evacuation(world: World, region: str) -> tuple[dict[str, tuple[int, int]], float]:
    """(scale-up per region, peak utilisation)."""
    """Plan the drill's evacuation from the world's inputs as traffic would read them: each
    group's demand is the mean of its last 15 minutes."""
    window = int(world.groups[0]["demand_window_seconds"]) // 60
    demand = {
        keys[1]["group"]: float(values[-window:].mean())
        for keys, values in zip(world.demand.keys, world.demand.values, strict=True)
    }
    regions = [
        Region(
            name=r["name"],
            instances=r["instances"],
            throughput_per_instance=r["throughput_per_instance"],
            headroom=r["headroom"],
            max_instances=r["max_instances"],
            readiness_seconds=r["readiness_seconds"],
        )
        for r in world.cloud_regions
    ]
    names = {r.name for r in regions}
    cost: dict[str, dict[str, float]] = {}
    for group, code, ms in world.costs:
        if code in names:
            cost.setdefault(group, {})[code] = ms
    plan = plan_evacuation(regions, demand, cost, [region], steps=4)
    scale_up = {a.region: (a.from_instances, a.to_instances) for a in plan.scale_up}
    return scale_up, max(step.max_utilisation for step in plan.steps)


def test_the_same_seed_builds_the_same_world_and_plan_at_any_time() -> None:
    now = time.time()
    first = generate(1, fast=True, now=now)
    later = generate(1, fast=True, now=now + 5.5 * 3600)  # another hour of another day
    assert np.array_equal(first.demand.values, later.demand.values)
    assert first.cloud_regions == later.cloud_regions
    assert first.groups == later.groups and first.costs == later.costs
    assert first.incident.site == later.incident.site
    region = sorted(r["name"] for r in first.cloud_regions)[1]
    assert _evacuation(first, region) == _evacuation(later, region)
    other = generate(2, fast=True, now=now)
    assert not np.array_equal(first.demand.values, other.demand.values)


def test_the_failed_appliances_site_is_the_closest_for_some_clients() -> None:
    for fast in (True, False):
        world = generate(1, fast=fast, now=time.time())
        site = world.incident.site
        cloud = {r["name"] for r in world.cloud_regions}
        sites = {code for _g, code, _ms in world.costs if code not in cloud}
        nearest: dict[str, tuple[str, float]] = {}
        for group, code, ms in world.costs:
            if code in sites and ms < nearest.get(group, ("", float("inf")))[1]:
                nearest[group] = (code, ms)
        assert site in {code for code, _ms in nearest.values()}, (fast, site)
