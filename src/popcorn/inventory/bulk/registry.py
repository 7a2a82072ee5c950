"""Which planner plans each object type: one module per family of types."""

from __future__ import annotations

from popcorn.inventory.bulk import cables, device_types, devices, organisation, parts
from popcorn.inventory.bulk.rows import Planner
from popcorn.inventory.bulk.types import ORDER

PLANNERS: dict[str, Planner] = {
    **organisation.PLANNERS,
    **device_types.PLANNERS,
    **devices.PLANNERS,
    **parts.PLANNERS,
    **cables.PLANNERS,
}
assert set(PLANNERS) == set(ORDER), "every object type has a planner"
