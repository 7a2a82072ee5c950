"""The device planner: names, serials, racks and positions, lifecycle moves, and the parts a
new device gets from its model's templates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from popcorn.inventory import devicetypes
from popcorn.inventory import models as m
from popcorn.inventory import schemas as s
from popcorn.inventory.bulk import device_types
from popcorn.inventory.bulk.rows import Planner, Row
from popcorn.inventory.bulk.types import SIMPLE, chunks, stored

if TYPE_CHECKING:
    from popcorn.inventory.bulk.batch import Batch


def prepare_device(batch: Batch, rows: list[Row]) -> None:
    batch.load_all("site")
    batch.load_all("device_model")
    batch.load_devices(r.data["name"] for r in rows if isinstance(r.data.get("name"), str))
    serials = [r.data.get("serial") for r in rows if isinstance(r.data.get("serial"), str)]
    tags = [r.data.get("asset_tag") for r in rows if isinstance(r.data.get("asset_tag"), str)]
    batch.prefetch_unique("device", "serial", serials)
    batch.prefetch_unique("device", "asset_tag", tags)
    if any(r.data.get("rack") for r in rows):
        batch.load_all("rack")
    if any(r.data.get("location") for r in rows):
        batch.load_all("location")


def plan_device(batch: Batch, row: Row) -> None:
    d = row.data
    name = d.get("name")
    ok, existing = batch.identify("device", row, name, "name")
    data = batch.creating("device", row, existing) if ok else None
    if data is None:
        batch.failed["device"].add(name)
        return
    errors = len(batch.errors)
    before = batch.state("device", existing) if existing is not None else None
    cols = {k: data[k] for k in SIMPLE["device"] if k in data}
    if "model" in data:
        cols["device_model_id"] = batch.ref("device", row, "model", "device_model", data["model"])
    if "site" in data:
        cols["site_id"] = batch.ref("device", row, "site", "site", data["site"])
    site_id = cols.get("site_id", before["site_id"] if before else None)
    if "location" in data:
        cols["location_id"] = batch.location_ref("device", row, data, site_id)
    elif before is not None and before["location_id"] is not None and site_id != before["site_id"]:
        batch.error(
            "device",
            row,
            "location",
            "the device moves to another site: give its location there, or an empty location",
        )
    if "rack" in data:
        rack = data["rack"]
        if rack is None:
            cols["rack_id"] = None
        elif site_id is not None:
            batch.load_all("rack")
            rack_id = batch.index["rack"].get((site_id, rack))
            if rack_id is None:
                batch.error(
                    "device",
                    row,
                    "rack",
                    f"no rack {rack!r} in site {data.get('site') or _site_code(batch, site_id)!r}",
                    code="unknown",
                )
            cols["rack_id"] = rack_id
    elif before is not None and before["rack_id"] is not None and site_id != before["site_id"]:
        batch.error(
            "device",
            row,
            "rack",
            "the device moves to another site: give its rack there, or an empty rack",
        )
    rack_id = cols.get("rack_id", before["rack_id"] if before else None)
    if rack_id is not None and site_id is not None and ("rack_id" in cols or "site_id" in cols):
        batch.load_all("rack")
        rack_site = batch.state("rack", rack_id)["site_id"]
        if rack_site != site_id:  # the rack moved to another site earlier in this batch
            rack_name = batch.state("rack", rack_id)["name"]
            batch.error(
                "device",
                row,
                "rack",
                f"rack {rack_name!r} is in site {_site_code(batch, rack_site)!r}",
            )
    if rack_id is not None and ("rack_id" in cols or "location_id" in cols):
        _check_location(batch, row, cols, before, rack_id)
    position = cols.get("position", before["position"] if before else None)
    if position is not None and rack_id is None:
        batch.error("device", row, "position", "a position needs a rack")
    placed = (
        rack_id is not None
        and position is not None
        and any(c in cols for c in ("rack_id", "position", "device_model_id", "face"))
    )
    shown = str(cols.get("name", name))
    if "serial" in cols:
        batch.unique("device", row, "serial", cols["serial"], existing, shown)
    if "asset_tag" in cols:
        batch.unique("device", row, "asset_tag", cols["asset_tag"], existing, shown)
    if before is not None and "status" in cols and cols["status"] != before["status"]:
        allowed = s.TRANSITIONS[before["status"]]
        if cols["status"] not in allowed:
            shown = ", ".join(sorted(allowed)) or "none: it is final"
            batch.error(
                "device",
                row,
                "status",
                f"cannot go from {before['status']} to {cols['status']} (allowed: {shown})",
                code="transition",
            )
    batch.tags(data, cols)
    batch.custom_fields("device", row, data, cols, existing)
    if len(batch.errors) > errors:
        batch.failed["device"].add(name)
        return
    ident = batch.commit("device", row, existing, cols, cols.get("name", name))
    if existing is None:
        batch.new_devices.append((ident, cols["device_model_id"]))
    if placed:
        batch.rack_moves.append((row, ident))


def _check_location(
    batch: Batch,
    row: Row,
    cols: dict[str, Any],
    before: Mapping[str, Any] | None,
    rack_id: int,
) -> None:
    """A device in a rack is where its rack is: one placed in a rack (new, or moved into
    another) takes the rack's location unless it names one, and a different location is
    refused (as NetBox does)."""
    batch.load_all("rack")
    rack_location = batch.state("rack", rack_id)["location_id"]
    placed = before is None or cols.get("rack_id", before["rack_id"]) != before["rack_id"]
    if "location_id" not in cols and placed:
        if rack_location is not None or before is not None:
            cols["location_id"] = rack_location
        return
    if rack_location is None:
        return
    batch.load_all("location")
    location_id = cols.get("location_id", before["location_id"] if before else None)
    if location_id is not None and location_id != rack_location:
        rack = batch.state("rack", rack_id)["name"]
        where = batch.state("location", rack_location)["slug"]
        batch.error("device", row, "location", f"rack {rack!r} is in location {where!r}")


def _site_code(batch: Batch, site_id: int) -> str:
    return str(batch.state("site", site_id)["code"])


def finish_device(batch: Batch) -> None:
    _check_rack_space(batch)
    _instantiate_devices(batch)


def _check_rack_space(batch: Batch) -> None:
    if not batch.rack_moves:
        return
    batch.load_all("rack")
    batch.load_all("device_model")
    racks = {batch.state("device", ident)["rack_id"] for _, ident in batch.rack_moves}
    occupants: dict[int, dict[int, Mapping[Any, Any]]] = {r: {} for r in racks}
    existing_racks = [r for r in racks if r > 0]
    table = m.Device.__table__
    for chunk in chunks(existing_racks, 1000):
        stmt = stored(table).where(table.c.rack_id.in_(chunk), table.c.position.is_not(None))
        for found in batch.session.execute(stmt).mappings():
            if found["id"] not in batch.before["device"]:
                batch.store("device", found)
            state = batch.state("device", found["id"])
            if state["rack_id"] in occupants:
                occupants[state["rack_id"]][found["id"]] = state
    moved = {ident for _, ident in batch.rack_moves}
    for ident in moved:
        state = batch.state("device", ident)
        occupants[state["rack_id"]][ident] = state
    for row, ident in batch.rack_moves:
        state = batch.state("device", ident)
        rack = batch.state("rack", state["rack_id"])
        model = batch.state("device_model", state["device_model_id"])
        top = state["position"] + max(model["u_height"], 1) - 1
        if top > rack["u_height"]:
            batch.error(
                "device",
                row,
                "position",
                f"U{state['position']:g} with a height of "
                f"{model['u_height']:g}U does not fit in rack {rack['name']!r} "
                f"({rack['u_height']}U)",
            )
            continue
        for other_id, other in occupants[state["rack_id"]].items():
            if other_id == ident or other.get("position") is None:
                continue
            other_model = batch.state("device_model", other["device_model_id"])
            if not _overlap(state, model, other, other_model):
                continue
            batch.error(
                "device",
                row,
                "position",
                f"U{state['position']:g} is taken by {other['name']!r}",
                code="conflict",
            )
            break


def _instantiate_devices(batch: Batch) -> None:
    """New devices get their model's templates as parts, planned before the file's own rows.

    The column rows are built once per model and copied per device; a file
    row for the same part (say `eth0` with its MAC address) then updates
    the planned part instead of adding one.
    """
    if not batch.new_devices:
        return
    model_ids = {model for _, model in batch.new_devices if model is not None}
    device_types.load_templates(batch, "device_model", model_ids)
    for model_id in model_ids:
        if model_id not in batch.model_parts:
            batch.model_parts[model_id] = _template_columns(
                batch, devicetypes.instantiate(batch.templates["device_model"].get(model_id, []))
            )
    # A device whose model failed its own checks has no templates to plan (it is an error).
    batch.template_devices.extend((d, model) for d, model in batch.new_devices if model is not None)
    batch.new_devices = []


def _template_columns(
    batch: Batch, made: dict[str, list[dict[str, Any]]]
) -> dict[str, tuple[list[dict[str, Any]], list[tuple[int, int]]]]:
    """Per part type: column rows (without device) and (row, peer row) index pairs."""
    out: dict[str, tuple[list[dict[str, Any]], list[tuple[int, int]]]] = {}
    for otype, items in made.items():
        rows: list[dict[str, Any]] = []
        peers: list[tuple[int, int]] = []
        names = {(i.get("kind"), i["name"]): n for n, i in enumerate(items)}
        for item in items:
            cols = {k: v for k, v in item.items() if k in SIMPLE[otype] and v not in ("", None)}
            if otype == "interface":
                cols = {k: v for k, v in cols.items() if (k, v) not in _INTERFACE_DEFAULTS}
            if otype == "component" and item.get("manufacturer"):
                cols["manufacturer_id"] = batch.find("manufacturer", item["manufacturer"])
            if otype == "port":
                if item.get("rear_port_position") is not None:
                    cols["peer_position"] = item["rear_port_position"]
                for field, kind in (("rear_port", "rear-port"), ("power_port", "power-port")):
                    if item.get(field) is not None:
                        peers.append((len(rows), names[(kind, item[field])]))
            rows.append(cols)
        out[otype] = (rows, peers)
    return out


_INTERFACE_DEFAULTS = {("mgmt_only", False), ("enabled", True)}


def _overlap(
    a: Mapping[Any, Any],
    a_model: Mapping[Any, Any],
    b: Mapping[Any, Any],
    b_model: Mapping[Any, Any],
) -> bool:
    a_low, b_low = a["position"], b["position"]
    a_high = a_low + max(a_model["u_height"], 0.5)
    b_high = b_low + max(b_model["u_height"], 0.5)
    if a_high <= b_low or b_high <= a_low:
        return False
    if a_model["u_height"] == 0 or b_model["u_height"] == 0:
        return False
    both_faces = a_model["is_full_depth"] or b_model["is_full_depth"]
    return bool(both_faces or a.get("face") == b.get("face"))


PLANNERS: dict[str, Planner] = {
    "device": Planner(plan=plan_device, prepare=prepare_device, finish=finish_device),
}
