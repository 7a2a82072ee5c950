"""`popcorn inventory import-netbox DUMP.json`: a NetBox database becomes a Popcorn inventory.

The input is what `manage.py dumpdata` writes: a JSON list of `{"model",
"pk", "fields"}`, from NetBox 3.x or 4.x. Each record is mapped by the mapper
registered for its model (`registry.MAPPERS`: `dcim` here, IPAM, circuits and
power in their modules) into the rows of an ordinary inventory import, and the
whole dump goes through `bulk.apply` as one batch: all or nothing, idempotent
on natural keys, so importing the same dump again changes nothing and a newer
dump updates what changed. Which Popcorn object each NetBox record became is
kept in `inventory_netbox_ids`. Models with no mapper (users, sessions,
permissions, change logs…) are reported with their counts.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from popcorn.errors import InvalidInput, NotFound
from popcorn.inventory import bulk
from popcorn.inventory import models as m
from popcorn.inventory.bulk import BatchResult, Progress
from popcorn.inventory.netbox import dcim as _dcim  # noqa: F401  (registers the DCIM mappers)
from popcorn.inventory.netbox import ipam as late
from popcorn.inventory.netbox.registry import LATE, MAPPERS, USED, Dump, Plan

__all__ = ["NetboxImport", "import_netbox", "read_dump"]


@dataclass
class NetboxImport:
    result: BatchResult
    mapped: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    ids: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.result.as_dict(),
            "mapped": dict(sorted(self.mapped.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "netbox_ids": self.ids,
        }


def read_dump(path: Path) -> Dump:
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    try:
        with path.open("rb") as handle:
            items = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path.name}: not a JSON dump: {exc}") from None
    if not isinstance(items, list):
        raise InvalidInput(f"{path.name}: expected a list of records, as dumpdata writes")
    return Dump(items)


def plan_dump(dump: Dump) -> Plan:
    """The DCIM rows of a dump (IPAM, circuits and power are written after them)."""
    plan = Plan()
    for model, records in dump.models.items():
        mapper = MAPPERS.get(model)
        if model in LATE:
            plan.mapped[model] += len(records)
        elif mapper is not None:
            for pk, fields in records.items():
                mapper(dump, pk, fields, plan)
        elif model not in USED:
            plan.skipped[model] += len(records)
    for (otype, name), label in sorted(plan.extra_fields.items()):
        plan.sections.setdefault("custom_field", []).append(
            bulk.Row({"object_type": otype, "name": name, "label": label}, where="import")
        )
    return plan


def import_netbox(
    *, session: Session, path: Path, dry_run: bool = False, progress: Progress | None = None
) -> NetboxImport:
    """Import a NetBox dump as one all-or-nothing batch; see the module docstring."""
    dump = read_dump(path)
    plan = plan_dump(dump)
    notes: dict[tuple[str, Any], tuple[str, int]] = {}
    stored: dict[tuple[str, Any], tuple[str, int]] = {}

    def write_late(result: BatchResult) -> None:
        """IPAM, circuits and power through their service, once the DCIM rows are written."""
        table = m.NetboxId.__table__
        stored.update(
            ((row[0], row[1]), (row[2], row[3]))
            for row in session.execute(
                select(
                    table.c.netbox_model, table.c.netbox_id, table.c.object_type, table.c.object_id
                )
            )
        )
        notes.update({} if dry_run else resolve(session, plan))
        ids = {key: ident for key, (_, ident) in {**stored, **notes}.items()}
        written = late.write(session, dump, ids, plan.late_cables, dry_run=dry_run)
        for name, counts in written.counts.items():
            into = result.counts.setdefault(name, {"create": 0, "update": 0, "unchanged": 0})
            for what, n in counts.items():
                into[what] = into.get(what, 0) + n
        notes.update(written.notes)

    result = bulk.apply(
        session,
        plan.sections,
        dry_run=dry_run,
        source=f"netbox {path.name}"[:80],
        summary=True,
        progress=progress,
        then=write_late,
    )
    found = NetboxImport(result, plan.mapped, plan.skipped, plan.dropped)
    if not dry_run:
        found.ids = save_ids(session, notes, stored)
    return found


def resolve(session: Session, plan: Plan) -> dict[tuple[str, Any], tuple[str, int]]:
    """NetBox (model, pk) -> (Popcorn type, id) of every row the batch wrote or confirmed."""
    wanted = {otype for _, _, otype, _ in plan.keys}
    index = {otype: _index(session, otype) for otype in wanted}
    out = {}
    for model, pk, otype, key in plan.keys:
        ident = index[otype].get(key)
        if ident is not None and isinstance(pk, int):
            out[(model, pk)] = (otype, ident)
    return out


def save_ids(
    session: Session,
    notes: dict[tuple[str, Any], tuple[str, int]],
    stored: dict[tuple[str, Any], tuple[str, int]],
) -> dict[str, int]:
    """Keep `inventory_netbox_ids` in step; returns how many notes were added and changed."""
    added, changed = [], []
    for (model, pk), (otype, ident) in notes.items():
        row = {"netbox_model": model, "netbox_id": pk, "object_type": otype, "object_id": ident}
        before = stored.get((model, pk))
        if before is None:
            added.append(row)
        elif before != (otype, ident):
            changed.append(row)
    if added:  # plain executemany: no ORM bookkeeping for one row per NetBox record
        table: Table = m.NetboxId.__table__  # type: ignore[assignment]
        session.execute(insert(table), added)
    for row in changed:
        session.execute(
            update(m.NetboxId)
            .where(
                m.NetboxId.netbox_model == row["netbox_model"],
                m.NetboxId.netbox_id == row["netbox_id"],
            )
            .values(object_type=row["object_type"], object_id=row["object_id"])
        )
    return {"added": len(added), "changed": len(changed)}


def _index(session: Session, otype: str) -> dict[tuple[Any, ...], int]:
    """Natural key -> id for every object of a type, as the mappers key their rows."""
    device = m.Device.__table__
    stmt: Any
    if otype == "region":
        stmt = select(m.Region.slug, m.Region.id)
    elif otype == "site_group":
        stmt = select(m.SiteGroup.slug, m.SiteGroup.id)
    elif otype == "manufacturer":
        stmt = select(m.Manufacturer.name, m.Manufacturer.id)
    elif otype == "site":
        stmt = select(m.Site.code, m.Site.id)
    elif otype == "location":
        stmt = select(m.Site.code, m.Location.slug, m.Location.id).join(
            m.Site, m.Site.id == m.Location.site_id
        )
    elif otype == "rack":
        stmt = select(m.Site.code, m.Rack.name, m.Rack.id).join(m.Site, m.Site.id == m.Rack.site_id)
    elif otype == "device_model":
        stmt = select(m.DeviceModel.slug, m.DeviceModel.id)
    elif otype == "module_type":
        stmt = select(m.Manufacturer.name, m.ModuleType.model, m.ModuleType.id).join(
            m.Manufacturer, m.Manufacturer.id == m.ModuleType.manufacturer_id
        )
    elif otype == "device":
        stmt = select(m.Device.name, m.Device.id)
    elif otype == "custom_field":
        stmt = select(m.CustomField.object_type, m.CustomField.name, m.CustomField.id)
    elif otype == "interface":
        stmt = select(device.c.name, m.Interface.name, m.Interface.id).join(
            device, device.c.id == m.Interface.device_id
        )
    elif otype in ("port", "bay"):
        model = m.Port if otype == "port" else m.Bay
        stmt = select(device.c.name, model.kind, model.name, model.id).join(
            device, device.c.id == model.device_id
        )
    elif otype == "component":
        stmt = select(device.c.name, m.Component.name, m.Component.id).join(
            device, device.c.id == m.Component.device_id
        )
    elif otype == "link":
        out = {}
        for row in session.execute(
            select(device.c.name, m.Interface.name, m.Interface.link_id)
            .join(device, device.c.id == m.Interface.device_id)
            .where(m.Interface.link_id.is_not(None))
        ):
            out[(row[0], "interface", row[1])] = row[2]
        for row in session.execute(
            select(device.c.name, m.Port.kind, m.Port.name, m.Port.link_id)
            .join(device, device.c.id == m.Port.device_id)
            .where(m.Port.link_id.is_not(None))
        ):
            out[(row[0], row[1], row[2])] = row[3]
        return out
    else:
        raise KeyError(otype)
    return {tuple(row[:-1]): row[-1] for row in session.execute(stmt)}
