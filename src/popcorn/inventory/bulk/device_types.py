"""Planners for device models and module types, with their component templates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, select

from popcorn.inventory import devicetypes
from popcorn.inventory import models as m
from popcorn.inventory.bulk.rows import Planner, Row
from popcorn.inventory.bulk.types import SIMPLE, chunks, slugify

if TYPE_CHECKING:
    from popcorn.inventory.bulk.batch import Batch


def _manufacturer_for(batch: Batch, otype: str, row: Row, name: str) -> int:
    """Manufacturers named by device models and module types are created when missing."""
    found = batch.find("manufacturer", name)
    if found is None:
        found = batch.commit(
            "manufacturer",
            row,
            None,
            {"name": name, "slug": slugify(name), "description": ""},
            slugify(name),
        )
    return found


def _parse_templates(
    batch: Batch, otype: str, row: Row, data: dict[str, Any]
) -> list[dict[str, Any]] | None:
    try:
        return devicetypes.parse_templates(data["templates"] or {}, module=otype == "module_type")
    except devicetypes.TemplateErrors as exc:
        for err in exc.errors:
            batch.error(otype, row, f"templates.{err.field}", err.message)
        return None


def _existing_templates(batch: Batch, otype: str, ident: int) -> list[dict[str, Any]]:
    column = m.ComponentTemplate.__table__.c[f"{otype}_id"]
    table: Table = m.ComponentTemplate.__table__  # type: ignore[assignment]
    rows = batch.session.execute(
        select(
            table.c.kind,
            table.c.name,
            table.c.label,
            table.c.type,
            table.c.mgmt_only,
            table.c.description,
            table.c.extra,
        )
        .where(column == ident)
        .order_by(table.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def plan_device_model(batch: Batch, row: Row) -> None:
    batch.load_all("device_model")
    d = row.data
    ok, existing = batch.identify("device_model", row, d.get("slug"), "slug")
    data = batch.creating("device_model", row, existing) if ok else None
    if data is None:
        batch.failed["device_model"].add(d.get("slug"))
        return
    errors = len(batch.errors)
    cols = {k: data[k] for k in SIMPLE["device_model"] if k in data}
    _weight(batch, row, "device_model", data, existing)
    if data.get("manufacturer"):
        cols["manufacturer_id"] = _manufacturer_for(
            batch, "device_model", row, data["manufacturer"]
        )
    batch.tags(data, cols)
    batch.custom_fields("device_model", row, data, cols, existing)
    templates = (
        _parse_templates(batch, "device_model", row, data)
        if data.get("templates") is not None
        else None
    )
    if len(batch.errors) > errors:
        batch.failed["device_model"].add(d.get("slug"))
        return
    ident = batch.commit("device_model", row, existing, cols, cols.get("slug", d.get("slug")))
    _set_templates(batch, "device_model", row, ident, existing, templates)


def _set_templates(
    batch: Batch,
    otype: str,
    row: Row,
    ident: int,
    existing: int | None,
    templates: list[dict[str, Any]] | None,
) -> None:
    if templates is None:
        if existing is None:
            batch.templates[otype][ident] = []
        return
    if existing is not None and existing > 0:
        if _existing_templates(batch, otype, existing) == templates:
            return
        if ident not in batch.changes[otype]:
            batch.changes[otype][ident] = {"updated_at": batch.now}
            batch.unchanged[otype] -= 1
    batch.templates[otype][ident] = templates


def _weight(batch: Batch, row: Row, otype: str, data: dict[str, Any], existing: int | None) -> None:
    state = batch.state(otype, existing) if existing else {}
    weight = data.get("weight", state.get("weight"))
    unit = data.get("weight_unit", state.get("weight_unit"))
    if weight is not None and unit is None:
        batch.error(otype, row, "weight_unit", "required when weight is given (kg, g, lb, oz)")


def plan_module_type(batch: Batch, row: Row) -> None:
    batch.load_all("module_type")
    d = row.data
    if d.get("manufacturer"):
        maker: int | None = _manufacturer_for(batch, "module_type", row, d["manufacturer"])
    elif d.get("id") is not None and batch.load_by_id("module_type", d["id"]):
        maker = batch.before["module_type"][d["id"]]["manufacturer_id"]
    else:
        batch.error("module_type", row, "manufacturer", "required")
        return
    key = (
        maker,
        d.get("model") or (batch.before["module_type"][d["id"]]["model"] if d.get("id") else None),
    )
    ok, existing = batch.identify("module_type", row, key, "model")
    data = batch.creating("module_type", row, existing) if ok else None
    if data is None:
        return
    errors = len(batch.errors)
    cols = {k: data[k] for k in SIMPLE["module_type"] if k in data}
    if maker is not None:
        cols["manufacturer_id"] = maker
    _weight(batch, row, "module_type", data, existing)
    templates = (
        _parse_templates(batch, "module_type", row, data)
        if data.get("templates") is not None
        else None
    )
    if len(batch.errors) > errors:
        return
    ident = batch.commit("module_type", row, existing, cols, key)
    _set_templates(batch, "module_type", row, ident, existing, templates)


def load_templates(batch: Batch, otype: str, ids: Iterable[int]) -> None:
    wanted = [i for i in ids if i > 0 and i not in batch.templates[otype]]
    if not wanted:
        return
    table: Table = m.ComponentTemplate.__table__  # type: ignore[assignment]
    column = table.c[f"{otype}_id"]
    for ident in wanted:
        batch.templates[otype][ident] = []
    stmt = select(
        column.label("owner"),
        table.c.kind,
        table.c.name,
        table.c.label,
        table.c.type,
        table.c.mgmt_only,
        table.c.description,
        table.c.extra,
    )
    for chunk in chunks(wanted, 1000):
        for found in batch.session.execute(
            stmt.where(column.in_(chunk)).order_by(table.c.id)
        ).mappings():
            row = dict(found)
            batch.templates[otype][row.pop("owner")].append(row)


PLANNERS: dict[str, Planner] = {
    "device_model": Planner(plan=plan_device_model),
    "module_type": Planner(plan=plan_module_type),
}
