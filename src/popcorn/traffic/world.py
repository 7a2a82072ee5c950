"""A generated world (regions, client groups with demand, a latency matrix) to try planning
on, for the demo and trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput
from popcorn.traffic import models as m
from popcorn.traffic.costs import set_costs
from popcorn.traffic.regions import (
    AWS_REGION_NAME,
    create_group,
    create_region,
    delete_group,
    delete_region,
)


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
