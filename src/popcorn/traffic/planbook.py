"""Saved plans: look one up, list them.

Apart from `plans` (which makes them with the numpy engines) so that `traffic plans`, the
plan pages and executions read plans without importing the numerical stack.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id
from popcorn.traffic import models as m

PLAN_FILTERS = {
    "id": m.Plan.id,
    "kind": m.Plan.kind,
    "region_kind": m.Plan.region_kind,
    "feasible": m.Plan.feasible,
    "parent_id": m.Plan.parent_id,
    "created_at": m.Plan.created_at,
}


def get_plan(*, session: Session, plan_id: int | str) -> m.Plan:
    """One plan by id; an id that cannot exist (too big, not ASCII digits) is a 404."""
    return get_by_id(session, m.Plan, plan_id, label="plan")


def list_plans(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.Plan).where(*filter_clauses(params.filters, PLAN_FILTERS))
    return paginate(session, stmt, params, key=m.Plan.id)
