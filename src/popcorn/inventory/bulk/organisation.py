"""Planners for where things are and what describes them: custom fields, regions, site groups,
manufacturers, sites and racks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from popcorn.inventory.bulk.rows import Planner, Row
from popcorn.inventory.bulk.types import SIMPLE, slugify

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
    key = (site_id, d.get("name"))
    ok, existing = batch.identify("rack", row, key, "name")
    data = batch.creating("rack", row, existing) if ok else None
    if data is None:
        return
    errors = len(batch.errors)
    cols = {k: data[k] for k in SIMPLE["rack"] if k in data}
    cols["site_id"] = site_id
    batch.tags(data, cols)
    batch.custom_fields("rack", row, data, cols, existing)
    if len(batch.errors) == errors:
        batch.commit("rack", row, existing, cols, key)


PLANNERS: dict[str, Planner] = {
    "custom_field": Planner(plan=plan_custom_field),
    "region": Planner(plan=plan_region, finish=finish_region),
    "site_group": Planner(plan=plan_site_group, finish=finish_site_group),
    "manufacturer": Planner(plan=plan_manufacturer),
    "site": Planner(plan=plan_site),
    "rack": Planner(plan=plan_rack),
}
