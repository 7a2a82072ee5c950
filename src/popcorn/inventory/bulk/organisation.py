"""Planners for where things are and what describes them: custom fields, regions, site groups,
manufacturers, sites, locations and racks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from popcorn.inventory import models as m
from popcorn.inventory.bulk.rows import Planner, Row
from popcorn.inventory.bulk.types import SIMPLE, TYPES, chunks, slugify, stored
from popcorn.inventory.ipam import models as im

if TYPE_CHECKING:
    from popcorn.inventory.bulk.batch import Batch


def plan_custom_field(batch: Batch, row: Row) -> None:
    batch.load_all("custom_field")
    d = row.data
    key = (d.get("object_type"), d.get("name"))
    ok, existing = batch.identify("custom_field", row, key, "name")
    data = batch.creating("custom_field", row, existing) if ok else None
    if data is None:
        return
    cols = {k: data[k] for k in SIMPLE["custom_field"] if k in data}
    state = {**(batch.state("custom_field", existing) if existing else {}), **cols}
    if state.get("type") == "select" and not state.get("choices"):
        batch.error("custom_field", row, "choices", "a select field needs choices")
        return
    batch.commit("custom_field", row, existing, cols, key)


def _plan_nested(otype: str, batch: Batch, row: Row) -> None:
    """A region or site group: keyed by slug, found by name too, with a parent of its kind."""
    batch.load_all(otype)
    d = row.data
    ok, existing = batch.identify(otype, row, d.get("slug"), "slug")
    data = batch.creating(otype, row, existing) if ok else None
    if data is None:
        batch.failed[otype].add(d.get("slug"))
        return
    cols = {k: data[k] for k in SIMPLE[otype] if k in data}
    ident = batch.commit(otype, row, existing, cols, cols.get("slug", d.get("slug")))
    if "parent" in data:
        if data["parent"] is None:
            batch.set_column(otype, ident, "parent_id", None)
        else:
            batch.defer(row, otype, ident, "parent_id", otype, data["parent"], "parent")
    elif existing is None:
        batch.planned[otype][ident]["parent_id"] = None


def plan_region(batch: Batch, row: Row) -> None:
    _plan_nested("region", batch, row)


def finish_region(batch: Batch) -> None:
    batch.check_loops("region", "parent_id")


def plan_site_group(batch: Batch, row: Row) -> None:
    _plan_nested("site_group", batch, row)


def finish_site_group(batch: Batch) -> None:
    batch.check_loops("site_group", "parent_id")


def plan_manufacturer(batch: Batch, row: Row) -> None:
    batch.load_all("manufacturer")
    d = row.data
    slug = d.get("slug")
    if slug is None and d.get("name"):
        by_name = batch.alias["manufacturer"].get(d["name"].lower())
        slug = batch.state("manufacturer", by_name)["slug"] if by_name else slugify(d["name"])
    ok, existing = batch.identify("manufacturer", row, slug, "slug")
    data = batch.creating("manufacturer", row, existing) if ok else None
    if data is None:
        return
    cols = {k: data[k] for k in SIMPLE["manufacturer"] if k in data}
    if slug is not None:
        cols["slug"] = slug
    batch.commit("manufacturer", row, existing, cols, slug)


def plan_site(batch: Batch, row: Row) -> None:
    batch.load_all("site")
    d = row.data
    ok, existing = batch.identify("site", row, d.get("code"), "code")
    data = batch.creating("site", row, existing) if ok else None
    if data is None:
        batch.failed["site"].add(d.get("code"))
        return
    errors = len(batch.errors)
    cols = {k: data[k] for k in SIMPLE["site"] if k in data}
    if "region" in data:
        region = data["region"]
        cols["region_id"] = (
            None if region is None else batch.ref("site", row, "region", "region", region)
        )
    if "group" in data:
        group = data["group"]
        cols["group_id"] = (
            None if group is None else batch.ref("site", row, "group", "site_group", group)
        )
    batch.tags(data, cols)
    batch.custom_fields("site", row, data, cols, existing)
    if len(batch.errors) > errors:
        batch.failed["site"].add(d.get("code"))
        return
    batch.commit("site", row, existing, cols, cols.get("code", d.get("code")))


def _site_of(batch: Batch, otype: str, row: Row) -> int | None:
    """The site a rack or location names, or the one it is in when a row gives only its id."""
    d = row.data
    if d.get("site"):
        return batch.ref(otype, row, "site", "site", d["site"])
    found = batch.load_by_id(otype, d["id"]) if d.get("id") is not None else None
    if found is None:
        label = TYPES[otype].label
        batch.error(
            otype,
            row,
            "site" if d.get("id") is None else "id",
            "required" if d.get("id") is None else f"no {label} with id {d['id']}",
        )
        return None
    site_id: int = found["site_id"]
    return site_id


def plan_location(batch: Batch, row: Row) -> None:
    batch.load_all("location")
    d = row.data
    site_id = _site_of(batch, "location", row)
    if site_id is None:
        batch.failed["location"].add(d.get("slug"))
        return
    key = (site_id, d.get("slug"))
    ok, existing = batch.identify("location", row, key, "slug")
    data = batch.creating("location", row, existing) if ok else None
    if data is None:
        batch.failed["location"].add(d.get("slug"))
        return
    if existing is not None and batch.state("location", existing)["site_id"] != site_id:
        batch.error("location", row, "site", "a location cannot move to another site")
        return
    cols = {k: data[k] for k in SIMPLE["location"] if k in data}
    cols["site_id"] = site_id
    ident = batch.commit(
        "location", row, existing, cols, (site_id, cols.get("slug", d.get("slug")))
    )
    if "parent" in data:
        if data["parent"] is None:
            batch.set_column("location", ident, "parent_id", None)
        else:
            parent = (site_id, data["parent"])
            batch.defer(row, "location", ident, "parent_id", "location", parent, "parent")
    elif existing is None:
        batch.planned["location"][ident]["parent_id"] = None


def finish_location(batch: Batch) -> None:
    batch.check_loops("location", "parent_id")


def plan_rack(batch: Batch, row: Row) -> None:
    batch.load_all("rack")
    d = row.data
    site_id = batch.ref("rack", row, "site", "site", d["site"]) if d.get("site") else None
    if site_id is None and not d.get("site"):
        found = batch.load_by_id("rack", d["id"]) if d.get("id") is not None else None
        if found is None:
            batch.error(
                "rack",
                row,
                "site" if d.get("id") is None else "id",
                "required" if d.get("id") is None else f"no rack with id {d['id']}",
            )
            return
        site_id = found["site_id"]
    if site_id is None:
        return
    name = d.get("name")
    if name is None and d.get("id") is not None:  # a PATCH: its stored name, in its new site
        found = batch.load_by_id("rack", d["id"])
        name = found["name"] if found is not None else None
    key = (site_id, name)
    ok, existing = batch.identify("rack", row, key, "name")
    data = batch.creating("rack", row, existing) if ok else None
    if data is None:
        return
    errors = len(batch.errors)
    cols = {k: data[k] for k in SIMPLE["rack"] if k in data}
    cols["site_id"] = site_id
    if "location" in data:
        cols["location_id"] = batch.location_ref("rack", row, data, site_id)
    elif existing is not None:
        before = batch.state("rack", existing)
        if before["site_id"] != site_id and before["location_id"] is not None:
            batch.error(
                "rack",
                row,
                "location",
                "the rack moves to another site: give its location there, or an empty location",
            )
    batch.tags(data, cols)
    batch.custom_fields("rack", row, data, cols, existing)
    if len(batch.errors) > errors:
        return
    batch.commit("rack", row, existing, cols, key)
    if existing is not None and existing > 0:
        before = batch.before["rack"][existing]
        after = batch.state("rack", existing)
        if (after["site_id"], after["location_id"]) != (before["site_id"], before["location_id"]):
            batch.moved_racks[existing] = row
        else:
            batch.moved_racks.pop(existing, None)


def finish_rack(batch: Batch) -> None:
    """Devices follow a moved rack, as in NetBox: a rack that changes site or location takes
    its devices' site and location with it, in the same batch (so the same transaction and
    audit), and a device is never left at a site its rack has left.

    A move that would leave a power feed's rack away from the feed's panel is refused.
    """
    if not batch.moved_racks:
        return
    moved = list(batch.moved_racks)
    panel_sites = select(im.PowerFeed.rack_id, im.PowerPanel.site_id, im.PowerFeed.name).join(
        im.PowerPanel, im.PowerPanel.id == im.PowerFeed.power_panel_id
    )
    for chunk in chunks(moved, 1000):
        for rack_id, panel_site, feed in batch.session.execute(
            panel_sites.where(im.PowerFeed.rack_id.in_(chunk))
        ):
            if rack_id is None:  # never: the query asks for feeds in these racks (for mypy)
                continue
            site_id = batch.state("rack", rack_id)["site_id"]
            if site_id != panel_site:
                batch.load_all("site")
                batch.error(
                    "rack",
                    batch.moved_racks[rack_id],
                    "site",
                    f"power feed {feed!r} feeds this rack from a panel at site "
                    f"{batch.state('site', panel_site)['code']!r}: "
                    "move or detach the feed first",
                    code="conflict",
                )
    table = m.Device.__table__
    for chunk in chunks(moved, 1000):
        for found in batch.session.execute(stored(table).where(table.c.rack_id.in_(chunk))):
            device = found._mapping
            if device["id"] not in batch.before["device"]:
                batch.store("device", device)
            batch.rack_followers.setdefault(device["rack_id"], []).append(device["id"])
    for rack_id, devices in batch.rack_followers.items():
        rack = batch.state("rack", rack_id)
        for ident in sorted(devices):
            batch.set_column("device", ident, "site_id", rack["site_id"])
            batch.set_column("device", ident, "location_id", rack["location_id"])


PLANNERS: dict[str, Planner] = {
    "custom_field": Planner(plan=plan_custom_field),
    "region": Planner(plan=plan_region, finish=finish_region),
    "site_group": Planner(plan=plan_site_group, finish=finish_site_group),
    "manufacturer": Planner(plan=plan_manufacturer),
    "site": Planner(plan=plan_site),
    "location": Planner(plan=plan_location, finish=finish_location),
    "rack": Planner(plan=plan_rack, finish=finish_rack),
}
