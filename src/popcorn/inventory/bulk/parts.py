"""Planners for the parts of a device: bays, components (modules install their templates),
interfaces and ports (front ports lead to rear ports).

Parts of stored devices load 1,000 devices at a time as planning reaches them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from popcorn.inventory import devicetypes
from popcorn.inventory.bulk import device_types
from popcorn.inventory.bulk.rows import Planner, Row, RowError
from popcorn.inventory.bulk.types import SIMPLE, TYPES

if TYPE_CHECKING:
    from popcorn.inventory.bulk.batch import Batch


def plan_templates(batch: Batch, otype: str) -> None:
    planned, index = batch.planned[otype], batch.index[otype]
    with_kind = otype in ("bay", "port")
    for device_id, model_id in batch.template_devices:
        rows, peers = batch.model_parts[model_id].get(otype, ((), ()))
        if not rows:
            continue
        ids = []
        for cols in rows:
            batch.next_temp[otype] += 1
            ident = -batch.next_temp[otype]
            row = {**cols, "device_id": device_id, "id": ident}
            planned[ident] = row
            key = (device_id, row["kind"], row["name"]) if with_kind else (device_id, row["name"])
            index[key] = ident
            ids.append(ident)
        for child, peer in peers:
            planned[ids[child]]["peer_id"] = ids[peer]


def _device_for(batch: Batch, otype: str, row: Row) -> int | None:
    name = row.data.get("device")
    if name is None:
        if row.data.get("id") is None:
            batch.error(otype, row, "device", "required")
        return None
    return batch.ref(otype, row, "device", "device", name)


def prepare_children(batch: Batch, otype: str, rows: list[Row]) -> None:
    """Note which stored devices the rows touch, in order; their parts load as needed.

    Parts are loaded 1,000 devices at a time as planning reaches them, so a
    re-import never holds every parsed row and every stored row at once.
    """
    names = dict.fromkeys(name for r in rows if isinstance(name := r.data.get("device"), str))
    batch.load_devices(names)
    order = [i for n in names if (i := batch.index["device"].get(n)) is not None and i > 0]
    batch.upcoming[otype] = order
    batch.upcoming_at[otype] = {ident: at for at, ident in enumerate(order)}


def _child_identify(
    batch: Batch,
    otype: str,
    row: Row,
    key_tail: tuple[Any, ...],
) -> tuple[int | None, int | None, bool]:
    """(device id, existing id, ok) for a part of a device."""
    ident = row.data.get("id")
    device_id = _device_for(batch, otype, row)
    if device_id is None and ident is None:
        return None, None, False
    if device_id is None:
        found = batch.load_by_id(otype, int(ident or 0))
        if found is None:
            batch.error(otype, row, "id", f"no {TYPES[otype].label} with id {ident}")
            return None, None, False
        device_id = found["device_id"]
    if device_id > 0 and device_id not in batch.loaded_devices[otype]:
        at = batch.upcoming_at[otype].get(device_id)
        ahead = batch.upcoming[otype][at : at + 1000] if at is not None else []
        batch.load_children(otype, [device_id, *ahead])
    key = (device_id, *key_tail)
    ok, existing = batch.identify(otype, row, key, "name")
    return device_id, existing, ok


def prepare_bay(batch: Batch, rows: list[Row]) -> None:
    prepare_children(batch, "bay", rows)


def plan_bay(batch: Batch, row: Row) -> None:
    d = row.data
    device_id, existing, ok = _child_identify(
        batch, "bay", row, (d.get("kind", "module-bay"), d.get("name"))
    )
    data = batch.creating("bay", row, existing) if ok else None
    if data is None or device_id is None:
        return
    cols = {k: data[k] for k in SIMPLE["bay"] if k in data}
    cols["device_id"] = device_id
    if "installed_device" in data:
        child = data["installed_device"]
        cols["installed_device_id"] = (
            None if child is None else batch.ref("bay", row, "installed_device", "device", child)
        )
        if child is not None and cols["installed_device_id"] is None:
            return
    kind = cols.get("kind") or (batch.state("bay", existing)["kind"] if existing else "module-bay")
    batch.commit("bay", row, existing, cols, (device_id, kind, cols.get("name", d.get("name"))))


def prepare_component(batch: Batch, rows: list[Row]) -> None:
    prepare_children(batch, "component", rows)
    devices = [
        batch.index["device"][r.data["device"]]
        for r in rows
        if r.data.get("bay") and r.data.get("device") in batch.index["device"]
    ]
    batch.load_children("bay", devices)


def plan_component(batch: Batch, row: Row) -> None:
    d = row.data
    device_id, existing, ok = _child_identify(batch, "component", row, (d.get("name"),))
    data = batch.creating("component", row, existing) if ok else None
    if data is None or device_id is None:
        if device_id is not None:
            batch.failed["component"].add((device_id, d.get("name")))
        return
    errors = len(batch.errors)
    cols = {k: data[k] for k in SIMPLE["component"] if k in data}
    cols["device_id"] = device_id
    if "manufacturer" in data:
        maker = data["manufacturer"]
        cols["manufacturer_id"] = None if maker is None else batch.find("manufacturer", maker)
        if maker is not None and cols["manufacturer_id"] is None and not row.template:
            batch.error("component", row, "manufacturer", f"unknown manufacturer {maker!r}")
    if "module_type" in data:
        kind = data["module_type"]
        cols["module_type_id"] = (
            None
            if kind is None
            else batch.ref("component", row, "module_type", "module_type", kind)
        )
    state = cols if existing is None else {**batch.state("component", existing), **cols}
    if "bay" in data:
        bay = data["bay"]
        if bay is None:
            cols["bay_id"] = None
        else:
            batch.load_children("bay", [device_id])
            bay_id = batch.index["bay"].get((device_id, "module-bay", bay))
            if bay_id is None:
                batch.error(
                    "component",
                    row,
                    "bay",
                    f"device {_device_name(batch, device_id)!r} has no module bay {bay!r}",
                    code="unknown",
                )
            else:
                holder = batch.used_bays.get(bay_id)
                if holder is not None and holder != existing:
                    batch.error(
                        "component",
                        row,
                        "bay",
                        f"module bay {bay!r} already holds another module",
                        code="conflict",
                    )
                batch.used_bays[bay_id] = existing or 0
                cols["bay_id"] = bay_id
        if state is not cols:
            state["bay_id"] = cols.get("bay_id")
    if state.get("kind") == "module":
        if state.get("bay_id") is None and not data.get("bay"):
            batch.error("component", row, "bay", "a module goes in a module bay")
    elif state.get("bay_id") is not None or state.get("module_type_id") is not None:
        batch.error("component", row, "kind", "only modules have a bay or a module type")
    batch.custom_fields("component", row, data, cols, existing)
    if len(batch.errors) > errors:
        batch.failed["component"].add((device_id, d.get("name")))
        return
    key = (device_id, cols.get("name", d.get("name")))
    ident = batch.commit("component", row, existing, cols, key)
    if "parent" in data:
        if data["parent"] is None:
            batch.set_column("component", ident, "parent_id", None)
        else:
            batch.defer(
                row,
                "component",
                ident,
                "parent_id",
                "component",
                (device_id, data["parent"]),
                "parent",
            )
    elif existing is None:
        batch.planned["component"][ident]["parent_id"] = None
    if existing is None and state.get("kind") == "module" and state.get("module_type_id"):
        batch.new_modules.append(ident)


def _device_name(batch: Batch, device_id: int) -> str:
    return str(batch.state("device", device_id)["name"])


def finish_component(batch: Batch) -> None:
    batch.check_loops("component", "parent_id")
    device_types.load_templates(
        batch,
        "module_type",
        {batch.planned["component"][i]["module_type_id"] for i in batch.new_modules},
    )
    for ident in batch.new_modules:
        module = batch.planned["component"][ident]
        bay = batch.state("bay", module["bay_id"])
        created = devicetypes.instantiate(
            batch.templates["module_type"].get(module["module_type_id"], []),
            module_position=bay.get("position") or bay["name"],
        )
        device = _device_name(batch, module["device_id"])
        for otype in ("interface", "port"):
            batch.sections[otype] = [
                Row(
                    {**item, "device": device, "module": module["name"]},
                    None,
                    f"template of module {module['name']!r}",
                    validated=True,
                    template=True,
                )
                for item in created[otype]
            ] + batch.sections[otype]
    batch.new_modules = []


def _module(batch: Batch, otype: str, row: Row, device_id: int, name: str | None) -> int | None:
    if name is None:
        return None
    batch.load_children("component", [device_id])
    found = batch.index["component"].get((device_id, name))
    if found is None:
        if (device_id, name) not in batch.failed["component"]:
            batch.error(
                otype,
                row,
                "module",
                f"device {_device_name(batch, device_id)!r} has no module {name!r}",
                code="unknown",
            )
        return None
    if batch.state("component", found)["kind"] != "module":
        batch.error(otype, row, "module", f"{name!r} is not a module")
    return found


def prepare_interface(batch: Batch, rows: list[Row]) -> None:
    prepare_children(batch, "interface", rows)


def plan_interface(batch: Batch, row: Row) -> None:
    d = row.data
    device_id, existing, ok = _child_identify(batch, "interface", row, (d.get("name"),))
    data = batch.creating("interface", row, existing) if ok else None
    if data is None or device_id is None:
        return
    if row.template and existing is not None and existing > 0:
        data = {k: v for k, v in data.items() if k in ("device", "module")}  # adopt it
    errors = len(batch.errors)
    cols = {k: data[k] for k in SIMPLE["interface"] if k in data}
    cols["device_id"] = device_id
    if existing is None and cols.get("speed") is None:
        cols["speed"] = devicetypes.speed_from_type(cols.get("type"))
    if "module" in data:
        cols["module_id"] = _module(batch, "interface", row, device_id, data["module"])
    if len(batch.errors) == errors:
        batch.commit("interface", row, existing, cols, (device_id, cols.get("name", d.get("name"))))


def prepare_port(batch: Batch, rows: list[Row]) -> None:
    prepare_children(batch, "port", rows)


def plan_port(batch: Batch, row: Row) -> None:
    d = row.data
    device_id, existing, ok = _child_identify(batch, "port", row, (d.get("kind"), d.get("name")))
    data = batch.creating("port", row, existing) if ok else None
    if data is None or device_id is None:
        return
    if row.template and existing is not None and existing > 0:
        data = {k: v for k, v in data.items() if k in ("device", "module")}  # adopt it
    errors = len(batch.errors)
    cols = {k: data[k] for k in SIMPLE["port"] if k in data}
    cols["device_id"] = device_id
    kind = cols.get("kind") or batch.state("port", existing or 0)["kind"]
    if "module" in data:
        cols["module_id"] = _module(batch, "port", row, device_id, data["module"])
    if "rear_port_position" in data:
        cols["peer_position"] = data["rear_port_position"]
    if len(batch.errors) > errors:
        return
    key = (device_id, kind, cols.get("name", d.get("name")))
    ident = batch.commit("port", row, existing, cols, key)
    for fieldname, peer_kind, wanted_kind in (
        ("rear_port", "rear-port", "front-port"),
        ("power_port", "power-port", "power-outlet"),
    ):
        if data.get(fieldname) is None:
            continue
        if kind != wanted_kind:
            batch.error("port", row, fieldname, f"only a {wanted_kind} has a {fieldname}")
            continue
        batch.defer(
            row,
            "port",
            ident,
            "peer_id",
            "port",
            (device_id, peer_kind, data[fieldname]),
            fieldname,
        )
    if kind == "front-port" and existing is None and data.get("rear_port") is None:
        batch.error("port", row, "rear_port", "required for a front port")


def finish_port(batch: Batch) -> None:
    fronts = [i for i, row in batch.planned["port"].items() if row.get("kind") == "front-port"]
    for ident in [*fronts, *batch.changes["port"]]:
        state = batch.state("port", ident)
        if state["kind"] != "front-port" or state.get("peer_id") is None:
            continue
        rear = batch.state("port", state["peer_id"])
        if (state.get("peer_position") or 1) > (rear.get("positions") or 1):
            batch.errors.append(
                RowError(
                    "ports",
                    None,
                    "rear_port_position",
                    f"rear port {rear['name']!r} has only {rear.get('positions') or 1} positions",
                )
            )
        if state.get("peer_position") is None:
            batch.set_column("port", ident, "peer_position", 1)


def _templates_of(otype: str) -> Callable[[Batch], None]:
    def start(batch: Batch) -> None:
        plan_templates(batch, otype)

    return start


PLANNERS: dict[str, Planner] = {
    "bay": Planner(plan=plan_bay, prepare=prepare_bay, start=_templates_of("bay")),
    "component": Planner(
        plan=plan_component,
        prepare=prepare_component,
        finish=finish_component,
        start=_templates_of("component"),
    ),
    "interface": Planner(
        plan=plan_interface, prepare=prepare_interface, start=_templates_of("interface")
    ),
    "port": Planner(
        plan=plan_port, prepare=prepare_port, finish=finish_port, start=_templates_of("port")
    ),
}
