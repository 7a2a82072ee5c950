"""Device-type library directories: device types, module types, `{module}` names, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory import service

SWITCH = """---
manufacturer: Cisco
model: Catalyst 9300-24T
slug: cisco-c9300-24t
part_number: C9300-24T
u_height: 1
is_full_depth: true
airflow: front-to-rear
weight: 7.1
weight_unit: kg
is_powered: true
front_image: true
console-ports:
  - name: con 0
    type: rj-45
power-ports:
  - name: PS-1
    type: iec-60320-c16
    maximum_draw: 715
  - name: PS-2
    type: iec-60320-c16
    maximum_draw: 715
interfaces:
  - name: GigabitEthernet0/0
    type: 1000base-t
    mgmt_only: true
  - name: GigabitEthernet1/0/1
    type: 1000base-t
  - name: GigabitEthernet1/0/2
    type: 1000base-t
module-bays:
  - name: Network Module
    position: '1'
"""
PANEL = """---
manufacturer: Generic
model: 24-port LC panel
slug: generic-lc-24
u_height: 1
front-ports:
  - {name: F1, type: lc, rear_port: R1, rear_port_position: 1}
  - {name: F2, type: lc, rear_port: R1, rear_port_position: 2}
rear-ports:
  - {name: R1, type: mpo, positions: 2}
"""
PDU = """manufacturer: APC
model: AP8941
slug: apc-ap8941
u_height: 0
power-ports:
  - {name: input, type: iec-60309-p-n-e-6h, maximum_draw: 5000}
power-outlets:
  - {name: '1', type: iec-60320-c13, power_port: input, feed_leg: A}
  - {name: '2', type: iec-60320-c13, power_port: input, feed_leg: B}
"""
MODULE = """manufacturer: Cisco
model: C9300-NM-8X
part_number: C9300-NM-8X
interfaces:
  - name: TenGigabitEthernet1/{module}/1
    type: 10gbase-x-sfpp
  - name: TenGigabitEthernet1/{module}/2
    type: 10gbase-x-sfpp
"""


def library(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "README.md").write_text("not a device type")
    (root / ".github").mkdir(exist_ok=True)
    (root / ".github" / "ci.yaml").write_text("on: push")
    return root


FILES = {
    "device-types/Cisco/Catalyst-9300-24T.yaml": SWITCH,
    "device-types/Generic/lc-24.yml": PANEL,
    "device-types/APC/AP8941.yaml": PDU,
    "module-types/Cisco/C9300-NM-8X.yaml": MODULE,
}


def test_library_directory_imports_idempotently(tmp_path: Path, api: Any) -> None:
    root = library(tmp_path / "devicetype-library", FILES)
    with session_scope() as session:
        first = service.import_paths(session=session, paths=[root])
    assert first.counts["device_models"] == {"create": 3, "update": 0, "unchanged": 0}
    assert first.counts["module_types"] == {"create": 1, "update": 0, "unchanged": 0}
    assert first.counts["manufacturers"]["create"] == 3
    with session_scope() as session:
        again = service.import_paths(session=session, paths=[root])
    assert again.totals == {"create": 0, "update": 0, "unchanged": 4, "delete": 0}
    model = api.get("/api/v1/inventory/device-models/cisco-c9300-24t").json
    assert model["manufacturer"] == "Cisco" and model["weight"] == 7.1
    assert model["templates"]["power-ports"][0] == {
        "name": "PS-1",
        "type": "iec-60320-c16",
        "maximum_draw": 715,
    }
    assert model["templates"]["interfaces"][0]["mgmt_only"] is True
    pdu = api.get("/api/v1/inventory/device-models/apc-ap8941").json
    assert pdu["templates"]["power-outlets"][1] == {
        "name": "2",
        "type": "iec-60320-c13",
        "power_port": "input",
        "feed_leg": "B",
    }


def test_library_change_updates_the_model_only(tmp_path: Path) -> None:
    root = library(tmp_path / "lib", FILES)
    with session_scope() as session:
        service.import_paths(session=session, paths=[root])
    changed = SWITCH.replace(
        "maximum_draw: 715\n  - name: PS-2", "maximum_draw: 1100\n  - name: PS-2"
    )
    (root / "device-types/Cisco/Catalyst-9300-24T.yaml").write_text(changed)
    with session_scope() as session:
        result = service.import_paths(session=session, paths=[root])
    assert result.counts["device_models"] == {"create": 0, "update": 1, "unchanged": 2}


def test_modules_get_their_interfaces_named_by_bay_position(tmp_path: Path, api: Any) -> None:
    root = library(tmp_path / "lib", FILES)
    with session_scope() as session:
        service.import_paths(session=session, paths=[root])
    api.post("/api/v1/inventory/sites", json={"code": "ams2", "name": "Amsterdam 2"})
    created = api.post(
        "/api/v1/inventory/devices",
        json={"name": "sw-ams2-01", "role": "switch", "model": "cisco-c9300-24t", "site": "ams2"},
    )
    assert created.status_code == 201, created.json
    module = api.post(
        "/api/v1/inventory/components",
        json={
            "device": "sw-ams2-01",
            "name": "NM-1",
            "kind": "module",
            "bay": "Network Module",
            "module_type": "Cisco/C9300-NM-8X",
            "serial": "FOC123",
        },
    )
    assert module.status_code == 201, module.json
    names = [
        i["name"]
        for i in api.get(
            "/api/v1/inventory/interfaces?device=sw-ams2-01&module=NM-1&limit=100"
        ).json["items"]
    ]
    assert names == ["TenGigabitEthernet1/1/1", "TenGigabitEthernet1/1/2"]
    taken = api.post(
        "/api/v1/inventory/components",
        json={
            "device": "sw-ams2-01",
            "name": "NM-2",
            "kind": "module",
            "bay": "Network Module",
            "module_type": "C9300-NM-8X",
        },
    )
    assert taken.status_code == 422, taken.json
    assert "already holds another module" in taken.json["error"]["message"]
    nowhere = api.post(
        "/api/v1/inventory/components",
        json={
            "device": "sw-ams2-01",
            "name": "NM-3",
            "kind": "module",
            "bay": "Slot 7",
            "module_type": "C9300-NM-8X",
        },
    )
    assert "has no module bay 'Slot 7'" in nowhere.json["error"]["message"]
    outlets = api.post(
        "/api/v1/inventory/devices",
        json={"name": "pdu-ams2-01", "role": "pdu", "model": "apc-ap8941", "site": "ams2"},
    )
    assert outlets.status_code == 201
    ports = api.get("/api/v1/inventory/ports?device=pdu-ams2-01&kind=power-outlet").json["items"]
    assert [(p["name"], p["power_port"], p["feed_leg"]) for p in ports] == [
        ("1", "input", "A"),
        ("2", "input", "B"),
    ]


def test_broken_library_files_are_reported_by_file_and_field(tmp_path: Path) -> None:
    broken_panel = PANEL.replace("rear_port: R1, rear_port_position: 2", "rear_port: R9")
    bad_units = SWITCH.replace("weight_unit: kg", "weight_unit: stone").replace(
        "u_height: 1\n", "u_height: 1.3\n"
    )
    unknown = MODULE.replace("part_number:", "partnumber:")
    root = library(
        tmp_path / "lib",
        {
            "device-types/Generic/lc-24.yaml": broken_panel,
            "device-types/Cisco/c9300.yaml": bad_units,
            "module-types/Cisco/nm.yaml": unknown,
            "device-types/Broken/syntax.yaml": "manufacturer: X\nmodel: [oops\n",
        },
    )
    with session_scope() as session, pytest.raises(InvalidInput) as caught:
        service.import_paths(session=session, paths=[root])
    assert "malformed YAML" in caught.value.message and "syntax.yaml" in caught.value.message
    (root / "device-types/Broken/syntax.yaml").unlink()
    with session_scope() as session, pytest.raises(InvalidInput) as caught:
        service.import_paths(session=session, paths=[root])
    errors = {(e["where"], e["field"]) for e in caught.value.details["errors"]}
    assert errors == {
        ("device-types/Cisco/c9300.yaml", "u_height"),
        ("device-types/Cisco/c9300.yaml", "weight_unit"),
        ("device-types/Generic/lc-24.yaml", "templates.front-ports[F2].rear_port"),
        ("module-types/Cisco/nm.yaml", "partnumber"),
    }
    with session_scope(readonly=True) as session:
        assert service.list_objects(session=session, otype="device_model", args={})["count"] == 0
