"""Content placement: which titles each CDN site holds, from request popularity, title sizes
and site storage. The arithmetic is in `placement`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import domains
from popcorn.audit import record_change
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import InvalidInput
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import get_by_id
from popcorn.traffic import models as m
from popcorn.traffic import schemas as s
from popcorn.traffic.placement import plan_placement
from popcorn.traffic.service import json_safe

PLACEMENT_FILTERS = {"strategy": m.Placement.strategy, "created_at": m.Placement.created_at}


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


def ml_popularity(
    *, session: Session, regions: dict[str, str], titles: Sequence[str] | None = None
) -> list[s.PopularityRow]:
    """Expected requests per (site, title) from ML's predicted title demand in each site's
    region (`regions`: site -> region); empty without the ml domain or a promoted
    recommendations model, so callers fall back to observed popularity."""
    if not domains.installed("ml"):
        return []
    from popcorn.ml import api as ml_api

    wanted = set(titles) if titles is not None else None
    rows = []
    for site, region in sorted(regions.items()):
        for title, plays in sorted(ml_api.title_demand(session=session, region=region).items()):
            if plays > 0 and (wanted is None or title in wanted):
                rows.append(s.PopularityRow(site=site, title=title, requests=plays))
    return rows


def create_placement(*, session: Session, spec: s.PlacementCreate) -> m.Placement:
    """Fill each site's storage with the titles serving most of its region's requests; the
    popularity-only greedy is computed beside it as the baseline. Site storage (GB) comes from
    the upload, else the traffic region, else inventory (storage_tb). With `demand: predicted`
    the requests are ML's predicted demand for the sized titles."""
    if spec.demand == "predicted":
        titles_sized = [item.title for item in spec.sizes]
        predicted = ml_popularity(session=session, regions=spec.site_regions, titles=titles_sized)
        if not predicted:
            raise InvalidInput(
                "no predicted demand for these regions and titles: promote a recommendations "
                "model first (`popcorn ml run recommendations`)",
                details={"regions": sorted(set(spec.site_regions.values()))[:50]},
            )
        spec = spec.model_copy(update={"popularity": predicted})
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
            "demand": spec.demand,
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
        from popcorn.inventory import api as inventory_api

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


def get_placement(*, session: Session, placement_id: int | str) -> m.Placement:
    """One placement by id; an id that cannot exist (too big, not ASCII digits) is a 404."""
    return get_by_id(session, m.Placement, placement_id, label="placement")


def list_placements(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(m.Placement).where(*filter_clauses(params.filters, PLACEMENT_FILTERS))
    return paginate(session, stmt, params, key=m.Placement.id)
