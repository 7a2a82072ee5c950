"""The cable planner: each link joins two interfaces or ports, each end used once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from popcorn.inventory.bulk.rows import Planner, Row
from popcorn.inventory.bulk.types import SIMPLE, input_defaults

if TYPE_CHECKING:
    from popcorn.inventory.bulk.batch import Batch


def prepare_link(batch: Batch, rows: list[Row]) -> None:
    names = {r.data.get(k) for r in rows for k in ("a_device", "b_device")}
    batch.load_devices(n for n in names if isinstance(n, str))
    ids = [batch.index["device"][n] for n in names if n in batch.index["device"]]
    batch.load_children("interface", ids)
    batch.load_children("port", ids)


def _end(batch: Batch, row: Row, side: str) -> tuple[str, int, int] | None:
    d = row.data
    device_id = (
        batch.ref("link", row, f"{side}_device", "device", d[f"{side}_device"])
        if (d.get(f"{side}_device"))
        else None
    )
    if device_id is None:
        if not d.get(f"{side}_device"):
            batch.error("link", row, f"{side}_device", "required")
        return None
    kind, name = d.get(f"{side}_kind", "interface"), d.get(f"{side}_name")
    if name is None:
        batch.error("link", row, f"{side}_name", "required")
        return None
    if kind == "interface":
        found = batch.child("interface", (device_id, name))
        end_type = "interface"
    else:
        found = batch.child("port", (device_id, kind, name))
        end_type = "port"
    if found is None:
        batch.error(
            "link",
            row,
            f"{side}_name",
            f"device {d[f'{side}_device']!r} has no {kind} {name!r}",
            code="unknown",
        )
        return None
    return end_type, found, device_id


def plan_link(batch: Batch, row: Row) -> None:
    a, b = _end(batch, row, "a"), _end(batch, row, "b")
    if a is None or b is None:
        return
    if a[:2] == b[:2]:
        batch.error("link", row, "b_name", "a link needs two different ends")
        return
    data = row.data

    def stored_link(end: tuple[str, int, int]) -> int | None:
        return batch.before[end[0]][end[1]].get("link_id") if end[1] > 0 else None

    current = {stored_link(a), stored_link(b)}
    existing: int | None = None
    if data.get("id") is not None:
        found = batch.load_by_id("link", data["id"])
        if found is None:
            batch.error("link", row, "id", f"no link with id {data['id']}", code="not_found")
            return
        if {(found["a_type"], found["a_id"]), (found["b_type"], found["b_id"])} != {
            a[:2],
            b[:2],
        }:
            batch.error(
                "link",
                row,
                "a_name",
                "a link's ends cannot change: delete it and create another",
            )
            return
        existing = data["id"]
    elif len(current) == 1 and None not in current:
        existing = current.pop()
    for side, end in (("a", a), ("b", b)):
        used = batch.link_ends.get(end[:2])
        if used is not None:
            batch.error(
                "link",
                row,
                f"{side}_name",
                f"{data[f'{side}_name']!r} is already used by line {used} of this batch",
                code="conflict",
            )
            return
        linked = stored_link(end)
        if linked is not None and linked != existing:
            batch.error(
                "link",
                row,
                f"{side}_name",
                f"{data[f'{side}_name']!r} is already connected (link {linked})",
                code="conflict",
            )
            return
    if existing is not None:
        batch.load_by_id("link", existing)
        if batch.mode == "create":
            batch.error("link", row, "a_name", "these ends are already linked", code="duplicate")
            return
    elif batch.mode == "update":
        batch.error("link", row, "a_name", "no link between these ends", code="not_found")
        return
    if existing is None:
        data = {**input_defaults("link"), **data}
    cols = {k: data[k] for k in SIMPLE["link"] if k in data}
    if existing is None:
        cols.update(
            a_type=a[0], a_id=a[1], a_device_id=a[2], b_type=b[0], b_id=b[1], b_device_id=b[2]
        )
        key: Any = (a[0], a[1], b[0], b[1])
    else:
        key = batch.key_of("link", batch.before["link"][existing])
    ident = batch.commit("link", row, existing, cols, key)
    for end in (a, b):
        batch.link_ends[end[:2]] = row.line or 0
        if existing is None:
            batch.set_column(end[0], end[1], "link_id", ident)


PLANNERS: dict[str, Planner] = {"link": Planner(plan=plan_link, prepare=prepare_link)}
