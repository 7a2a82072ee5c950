"""The ORM imports bench_inventory.py compares Popcorn's bulk import with.

`careful` is the baseline: what a careful SQLAlchemy user writes (cached lookups, a few
flushes per device, the same audit granularity as Popcorn). `naive` is weaker and only
shown beside it: row by row, a query per reference, a flush and an audit record per object.

`netbox` reads a NetBox dump (`manage.py dumpdata` JSON) the same careful way: the
baseline for `popcorn inventory import-netbox`.

    python benchmarks/inventory_orm_baselines.py careful|naive|netbox DOCUMENT SAMPLE
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from pathlib import Path
from typing import Any

# --- the naive baseline ------------------------------------------------------------


def naive_import(document: Path, sample: int) -> dict[str, Any]:
    """Import the first `sample` devices of the document one ORM object at a time."""
    from sqlalchemy import select

    from popcorn.audit import record_change
    from popcorn.db import session_scope
    from popcorn.inventory import models as m
    from popcorn.inventory import schemas as s

    doc = json.loads(document.read_text())
    devices = doc["devices"][:sample]
    objects = 0
    started = time.perf_counter()
    with session_scope() as session:
        for raw in devices:
            data = s.DeviceIn.model_validate(
                {k: v for k, v in raw.items() if k not in ("components", "interfaces")}
            )
            site = session.scalars(select(m.Site).where(m.Site.code == data.site)).one()
            model = session.scalars(
                select(m.DeviceModel).where(m.DeviceModel.slug == data.model)
            ).one()
            for column, value in ((m.Device.name, data.name), (m.Device.serial, data.serial)):
                if session.scalar(select(m.Device.id).where(column == value)) is not None:
                    raise SystemExit(f"duplicate {value}")
            device = m.Device(
                name=data.name,
                role=data.role,
                device_model_id=model.id,
                site_id=site.id,
                serial=data.serial,
                asset_tag=data.asset_tag,
                platform=data.platform,
                os_version=data.os_version,
                primary_ip4=data.primary_ip4,
                status=data.status,
                throughput_gbps=data.throughput_gbps,
                storage_tb=data.storage_tb,
                tags=data.tags,
            )
            session.add(device)
            session.flush()
            record_change(session, "create", "device", device.id, after={"name": device.name})
            for tag in data.tags:
                session.add(m.Tagging(object_type="device", object_id=device.id, tag=tag))
            templates = session.scalars(
                select(m.ComponentTemplate).where(m.ComponentTemplate.device_model_id == model.id)
            )
            for tpl in templates:
                if tpl.kind == "interface":
                    obj: Any = m.Interface(
                        device_id=device.id, name=tpl.name, type=tpl.type or "other"
                    )
                else:
                    obj = m.Port(
                        device_id=device.id,
                        kind=tpl.kind,
                        name=tpl.name,
                        type=tpl.type,
                        maximum_draw=(tpl.extra or {}).get("maximum_draw"),
                    )
                session.add(obj)
                session.flush()
                record_change(session, "create", tpl.kind, obj.id, after={"name": obj.name})
                objects += 1
            for item in raw["interfaces"]:
                spec = s.InterfaceIn.model_validate({**item, "device": device.name})
                iface = session.scalars(
                    select(m.Interface).where(
                        m.Interface.device_id == device.id, m.Interface.name == spec.name
                    )
                ).one()
                iface.mac_address, iface.description = spec.mac_address, spec.description
                iface.enabled = spec.enabled
                session.flush()
                record_change(session, "update", "interface", iface.id, after={"name": spec.name})
            parents: dict[str, int] = {}
            for item in raw["components"]:
                spec_c = s.ComponentIn.model_validate({**item, "device": device.name})
                part = m.Component(
                    device_id=device.id,
                    name=spec_c.name,
                    kind=spec_c.kind,
                    serial=spec_c.serial,
                    part_number=spec_c.part_number,
                    firmware=spec_c.firmware,
                    status=spec_c.status,
                    install_date=spec_c.install_date,
                    parent_id=parents.get(spec_c.parent or ""),
                )
                session.add(part)
                session.flush()
                parents[part.name] = part.id
                record_change(session, "create", "component", part.id, after={"name": part.name})
                objects += 1
            objects += 1
    return {"devices": len(devices), "objects": objects, "seconds": time.perf_counter() - started}


def careful_import(document: Path, sample: int) -> dict[str, Any]:
    """The same devices through the ORM, written as a careful ORM user would.

    Same work as Popcorn's import and the same audit granularity (one audit record and
    one `inventory.import.completed` event for the import); references and templates
    looked up once and cached; a few flushes per device (the device, then each level
    of the component tree) instead of one per object.
    """
    from sqlalchemy import select

    from popcorn.audit import record_change
    from popcorn.db import session_scope
    from popcorn.inventory import models as m
    from popcorn.inventory import schemas as s
    from popcorn.outbox import emit

    doc = json.loads(document.read_text())
    devices = doc["devices"][:sample]
    objects = 0
    started = time.perf_counter()
    with session_scope() as session:
        sites = {site.code: site.id for site in session.scalars(select(m.Site))}
        models = {model.slug: model.id for model in session.scalars(select(m.DeviceModel))}
        templates: dict[int, list[Any]] = {}
        for tpl in session.scalars(select(m.ComponentTemplate)):
            if tpl.device_model_id is not None:
                templates.setdefault(tpl.device_model_id, []).append(tpl)
        names = set(session.scalars(select(m.Device.name)))
        serials = set(session.scalars(select(m.Device.serial)))
        for raw in devices:
            data = s.DeviceIn.model_validate(
                {k: v for k, v in raw.items() if k not in ("components", "interfaces")}
            )
            if data.name in names or (data.serial and data.serial in serials):
                raise SystemExit(f"duplicate {data.name}")
            names.add(data.name)
            serials.add(data.serial)
            model_id = models[data.model]
            device = m.Device(
                name=data.name,
                role=data.role,
                device_model_id=model_id,
                site_id=sites[data.site],
                serial=data.serial,
                asset_tag=data.asset_tag,
                platform=data.platform,
                os_version=data.os_version,
                primary_ip4=data.primary_ip4,
                status=data.status,
                throughput_gbps=data.throughput_gbps,
                storage_tb=data.storage_tb,
                tags=data.tags,
            )
            session.add(device)
            session.flush()  # the device's id, for everything below
            for tag in data.tags:
                session.add(m.Tagging(object_type="device", object_id=device.id, tag=tag))
            specs = {
                spec.name: spec
                for spec in (
                    s.InterfaceIn.model_validate({**item, "device": device.name})
                    for item in raw["interfaces"]
                )
            }
            for tpl in templates.get(model_id, ()):
                if tpl.kind == "interface":
                    spec = specs[tpl.name]
                    obj: Any = m.Interface(
                        device_id=device.id,
                        name=tpl.name,
                        type=tpl.type or "other",
                        mac_address=spec.mac_address,
                        description=spec.description,
                        enabled=spec.enabled,
                    )
                else:
                    obj = m.Port(
                        device_id=device.id,
                        kind=tpl.kind,
                        name=tpl.name,
                        type=tpl.type,
                        maximum_draw=(tpl.extra or {}).get("maximum_draw"),
                    )
                session.add(obj)
                objects += 1
            parts: dict[str, Any] = {}
            for item in raw["components"]:
                spec_c = s.ComponentIn.model_validate({**item, "device": device.name})
                parent = parts.get(spec_c.parent or "")
                if parent is not None and parent.id is None:
                    session.flush()  # one flush per level of the component tree
                part = m.Component(
                    device_id=device.id,
                    name=spec_c.name,
                    kind=spec_c.kind,
                    serial=spec_c.serial,
                    part_number=spec_c.part_number,
                    firmware=spec_c.firmware,
                    status=spec_c.status,
                    install_date=spec_c.install_date,
                    parent_id=parent.id if parent is not None else None,
                )
                session.add(part)
                parts[part.name] = part
                objects += 1
            objects += 1
        summary = {"source": document.name, "devices": len(devices), "objects": objects}
        record_change(session, "import", "import", document.name[:80], after=summary)
        emit(session, "inventory.import.completed", "import", document.name[:80], summary)
    return {"devices": len(devices), "objects": objects, "seconds": time.perf_counter() - started}


# --- a NetBox dump through the ORM ------------------------------------------------------


def netbox_import(document: Path, sample: int, with_addresses: bool = True) -> dict[str, Any]:
    """The first `sample` devices of a NetBox dump, with what they need, written as ORM objects.

    Sites, regions, manufacturers and device types first (cached by NetBox pk), then per
    device: the device (one flush for its id), its interfaces and ports (one flush),
    the NetBox id notes; then cables between the devices written, then addresses. One
    audit record and one event for the import, as Popcorn writes.
    """
    from collections import defaultdict

    from popcorn.audit import record_change
    from popcorn.db import session_scope
    from popcorn.inventory import models as m
    from popcorn.outbox import emit

    by_model: dict[str, dict[Any, dict[str, Any]]] = defaultdict(dict)
    for item in json.loads(document.read_text()):
        by_model[item["model"]][item["pk"]] = item["fields"]
    kinds = {
        "dcim.consoleport": "console-port",
        "dcim.powerport": "power-port",
        "dcim.poweroutlet": "power-outlet",
        "dcim.frontport": "front-port",
        "dcim.rearport": "rear-port",
    }
    parts: dict[Any, list[tuple[str, Any, dict[str, Any]]]] = defaultdict(list)
    for model in ("dcim.interface", *kinds):
        for pk, fields in by_model[model].items():
            parts[fields["device"]].append((model, pk, fields))
    objects = 0
    started = time.perf_counter()
    with session_scope() as session:
        notes: list[m.NetboxId] = []

        def note(model: str, pk: Any, otype: str, ident: int) -> None:
            notes.append(
                m.NetboxId(netbox_model=model, netbox_id=pk, object_type=otype, object_id=ident)
            )

        regions: dict[Any, int] = {}
        for pk, f in sorted(by_model["dcim.region"].items()):
            region = m.Region(slug=f["slug"], name=f["name"], parent_id=regions.get(f["parent"]))
            session.add(region)
            session.flush()
            regions[pk] = region.id
        sites = {}
        for pk, f in by_model["dcim.site"].items():
            site = m.Site(
                code=f["slug"],
                name=f["name"],
                region_id=regions.get(f["region"]),
                status=f["status"],
            )
            session.add(site)
            session.flush()
            sites[pk] = site.id
        makers = {}
        for pk, f in by_model["dcim.manufacturer"].items():
            maker = m.Manufacturer(name=f["name"], slug=f["slug"])
            session.add(maker)
            session.flush()
            makers[pk] = maker.id
        types = {}
        for pk, f in by_model["dcim.devicetype"].items():
            dtype = m.DeviceModel(
                manufacturer_id=makers[f["manufacturer"]],
                model=f["model"],
                slug=f["slug"],
                u_height=float(f["u_height"]),
            )
            session.add(dtype)
            session.flush()
            types[pk] = dtype.id
        for f in by_model["dcim.interfacetemplate"].values():
            session.add(
                m.ComponentTemplate(
                    device_model_id=types[f["device_type"]],
                    kind="interface",
                    name=f["name"],
                    type=f["type"],
                )
            )
        roles = {pk: f["slug"] for pk, f in by_model["dcim.devicerole"].items()}
        devices: dict[Any, int] = {}
        ends: dict[tuple[str, Any], tuple[int, int, Any]] = {}
        for pk, f in list(by_model["dcim.device"].items())[:sample]:
            role = roles.get(f.get("role", f.get("device_role")), "server")
            device = m.Device(
                name=f["name"],
                role=role if role in ("router", "switch", "server") else "storage-appliance",
                device_model_id=types[f["device_type"]],
                site_id=sites[f["site"]],
                serial=f["serial"] or None,
                status=f["status"],
                tags=[],
            )
            session.add(device)
            session.flush()
            devices[pk] = device.id
            note("dcim.device", pk, "device", device.id)
            made = []
            for model, ppk, pf in parts[pk]:
                if model == "dcim.interface":
                    obj: Any = m.Interface(
                        device_id=device.id,
                        name=pf["name"],
                        type=pf["type"],
                        speed=pf.get("speed"),
                        mgmt_only=pf["mgmt_only"],
                        enabled=pf["enabled"],
                        mtu=pf.get("mtu"),
                    )
                else:
                    obj = m.Port(
                        device_id=device.id,
                        kind=kinds[model],
                        name=pf["name"],
                        type=pf["type"] or None,
                        maximum_draw=pf.get("maximum_draw"),
                    )
                session.add(obj)
                made.append((model, ppk, obj))
            session.flush()
            for model, ppk, obj in made:
                otype = "interface" if model == "dcim.interface" else "port"
                note(model, ppk, otype, obj.id)
                ends[(model, ppk)] = (obj.id, device.id, obj)
            objects += 1 + len(made)
        content = {
            pk: f"{f['app_label']}.{f['model']}"
            for pk, f in by_model["contenttypes.contenttype"].items()
        }
        sides: dict[Any, dict[str, tuple[str, Any]]] = defaultdict(dict)
        for f in by_model["dcim.cabletermination"].values():
            sides[f["cable"]][f["cable_end"]] = (
                content[f["termination_type"]],
                f["termination_id"],
            )
        for pk, f in by_model["dcim.cable"].items():
            a, b = ends.get(sides[pk].get("A", ("", 0))), ends.get(sides[pk].get("B", ("", 0)))
            if a is None or b is None:
                continue
            link = m.Link(
                a_type="interface",
                a_id=a[0],
                a_device_id=a[1],
                b_type="interface",
                b_id=b[0],
                b_device_id=b[1],
                type=f["type"],
                status=f["status"],
                label=f["label"],
            )
            session.add(link)
            session.flush()
            a[2].link_id = b[2].link_id = link.id
            note("dcim.cable", pk, "link", link.id)
            objects += 1
        if with_addresses:
            from popcorn.inventory.ipam.models import IpAddress

            addresses = []
            for pk, f in by_model["ipam.ipaddress"].items():
                end = ends.get(
                    (content.get(f.get("assigned_object_type"), ""), f.get("assigned_object_id"))
                )
                if end is None:
                    continue
                host = ipaddress.ip_interface(f["address"])
                address = IpAddress(
                    address=str(host),
                    family=host.version,
                    host_key=f"{int(host.ip):032x}",
                    status=f["status"],
                    interface_id=end[0],
                )
                session.add(address)
                addresses.append((pk, address))
                objects += 1
            session.flush()
            for pk, address in addresses:
                note("ipam.ipaddress", pk, "ip_address", address.id)
        session.add_all(notes)
        summary = {"source": document.name, "devices": len(devices), "objects": objects}
        record_change(session, "import", "import", document.name[:80], after=summary)
        emit(session, "inventory.import.completed", "import", document.name[:80], summary)
    return {"devices": len(devices), "objects": objects, "seconds": time.perf_counter() - started}


if __name__ == "__main__":
    how, document, sample = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if how == "netbox":
        print(json.dumps(netbox_import(document, sample, "no-addresses" not in sys.argv[4:])))
    else:
        run = {"careful": careful_import, "naive": naive_import}[how]
        print(json.dumps(run(document, sample)))
