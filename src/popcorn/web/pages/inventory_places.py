"""Inventory pages for site groups and locations (NetBox's organisation below regions and
sites): searchable lists with their counts, and each group or location with what it holds.

Counts take in everything below a group or location, as its list filters do, so a count
and the list it links to agree.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from popcorn.db import session_scope
from popcorn.errors import PopcornError
from popcorn.inventory import service
from popcorn.inventory.schemas.groups import LOCATION_STATUSES
from popcorn.web import helpers
from popcorn.web.pages.inventory import PARTS_LIMIT, _listing, _offset, _read
from popcorn.web.views import bp

LIMIT = 100  # rows on one page of a list


def _empty() -> dict[str, Any]:
    return {"items": [], "count": 0, "offset": 0, "limit": LIMIT}


@bp.get("/inventory/site-groups")
def inventory_site_groups() -> Any:
    """Every site group with its parent and how many sites it holds, a page at a time."""
    args = request.args
    form = {"q": args.get("q", "").strip()}
    filters = {k: v for k, v in form.items() if v}
    error = None
    groups = _empty()
    with session_scope(readonly=True) as session:
        try:
            groups = _listing(session, "site_group", filters, LIMIT, _offset(args))
        except PopcornError as exc:
            error = helpers.error_details(exc)
        sites = service.sites_per_group(session=session)
    return render_template(
        "inventory/site_groups.html", form=form, groups=groups, sites=sites, error=error
    ), 422 if error else 200


@bp.get("/inventory/site-groups/<ref>")
def inventory_site_group(ref: str) -> str:
    """A site group (by id, slug or name): its sub-groups and the sites in it or below it."""
    offset = _offset(request.args)
    with session_scope(readonly=True) as session:
        group = _read(session, "site_group", ref)
        ident = str(group["id"])
        children = _listing(session, "site_group", {"parent_id": ident}, PARTS_LIMIT)
        sites = _listing(session, "site", {"site_group_id": ident}, LIMIT, offset)
        counts = service.sites_per_group(session=session)
        capacity = service.site_capacity(
            session=session, site=[site["code"] for site in sites["items"]]
        )
        history = service.history(session=session, otype="site_group", ref=group["id"])
    return render_template(
        "inventory/site_group.html",
        group=group,
        children=children,
        sites=sites,
        counts=counts,
        capacity={row["site"]: row for row in capacity},
        history=list(reversed(history)),
    )


@bp.get("/inventory/locations")
def inventory_locations() -> Any:
    """Every location with its site, parent, racks and devices, a page at a time."""
    args = request.args
    form = {k: args.get(k, "").strip() for k in ("q", "site", "status")}
    filters = {k: v for k, v in form.items() if v}
    error = None
    locations = _empty()
    counts: dict[int, dict[str, int]] = {}
    with session_scope(readonly=True) as session:
        try:
            locations = _listing(session, "location", filters, LIMIT, _offset(args))
        except PopcornError as exc:
            error = helpers.error_details(exc)
        if locations["items"]:
            counts = service.location_counts(
                session=session, site_ids={item["site_id"] for item in locations["items"]}
            )
    return render_template(
        "inventory/locations.html",
        form=form,
        locations=locations,
        counts=counts,
        statuses=LOCATION_STATUSES,
        error=error,
    ), 422 if error else 200


@bp.get("/inventory/locations/<ref>")
def inventory_location(ref: str) -> str:
    """A location (by id): its sub-locations, and the racks and devices in it or below it."""
    offset = _offset(request.args)
    with session_scope(readonly=True) as session:
        location = _read(session, "location", ref)
        ident = str(location["id"])
        children = _listing(session, "location", {"parent_id": ident}, PARTS_LIMIT)
        racks = _listing(session, "rack", {"location_id": ident}, PARTS_LIMIT)
        devices = _listing(session, "device", {"location_id": ident}, LIMIT, offset)
        counts = service.location_counts(session=session, site_ids=[location["site_id"]])
        history = service.history(session=session, otype="location", ref=location["id"])
    return render_template(
        "inventory/location.html",
        location=location,
        children=children,
        racks=racks,
        devices=devices,
        counts=counts,
        history=list(reversed(history)),
    )
