"""Imports and exports: every bad row reported by line, dry runs, idempotency, round trips."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from inventory_world import events  # type: ignore[import-not-found]
from sqlalchemy import func, select

from popcorn.audit import AuditRecord
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory import bulk, service
from popcorn.inventory.models import Component, Device

BASE = "/api/v1/inventory"

GOOD_CSV = """name,role,model,site,serial,status,throughput_gbps,storage_tb,tags
oca-iad1-01,storage-appliance,oca-storage-gen4,iad1,NFX-2001,active,100G,360TB,"oca,gen4"
oca-iad1-02,storage-appliance,oca-storage-gen4,iad1,NFX-2002,staged,100Gbps,360,
rtr-iad1-02,router,juniper-mx204,iad1,JN-3,planned,,,
"""


def upload(api: Any, text: str, query: str, role: str = "operator") -> Any:
    return api.post(f"{BASE}/import?{query}", data=text, role=role, content_type="text/plain")


def count(model: Any) -> int:
    with session_scope(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_csv_import_dry_run_then_real_then_idempotent(world: Any, api: Any) -> None:
    dry = upload(api, GOOD_CSV, "type=devices&format=csv&dry_run=1")
    assert dry.status_code == 200, dry.json
    assert dry.json["dry_run"] is True
    assert dry.json["counts"]["devices"] == {"create": 3, "update": 0, "unchanged": 0}
    assert dry.json["counts"]["interfaces"]["create"] == 8
    assert count(Device) == 5
    real = upload(api, GOOD_CSV, "type=devices&format=csv&filename=devices.csv")
    assert real.json["counts"] == dry.json["counts"] and real.json["dry_run"] is False
    assert count(Device) == 8
    again = upload(api, GOOD_CSV, "type=devices&format=csv")
    assert again.json["counts"] == {"devices": {"create": 0, "update": 0, "unchanged": 3}}
    tagged = api.get(f"{BASE}/devices?tag=gen4").json["items"]
    assert [d["name"] for d in tagged] == ["oca-iad1-01"]
    assert tagged[0]["tags"] == ["gen4", "oca"]
    changed = GOOD_CSV.replace("NFX-2002,staged", "NFX-2002,active")
    moved = upload(api, changed, "type=devices&format=csv")
    assert moved.json["counts"]["devices"] == {"create": 0, "update": 1, "unchanged": 2}
    assert events("inventory.device.status_changed")[-1].payload["to"] == "active"


def test_every_bad_row_is_reported_with_line_and_field(world: Any, api: Any) -> None:
    bad = (
        "name,role,model,site,serial,status,throughput_gbps\n"  # line 1
        "ok-1,router,juniper-mx204,iad1,S-1,active,10G\n"  # line 2: fine
        "bad-site,router,juniper-mx204,atlantis,S-2,active,10G\n"  # line 3
        "bad-model,router,mx-nope,iad1,S-3,active,10G\n"  # line 4
        "dup-serial,router,juniper-mx204,iad1,NFX-0001,active,10G\n"  # line 5
        '"multi\nline",router,juniper-mx204,iad1,S-4,active,10 furlongs\n'  # lines 6-7
        "oca-ams1-01,router,juniper-mx204,ams1,NFX-0001,planned,\n"  # line 8: bad transition
        "ok-1,router,juniper-mx204,iad1,S-5,active,10G\n"  # line 9: duplicate of line 2
        "dup-serial2,router,juniper-mx204,iad1,S-1,active,\n"  # line 10: serial of line 2
    )
    response = upload(api, bad, "type=devices&format=csv&filename=bad.csv")
    assert response.status_code == 422
    errors = response.json["error"]["details"]["errors"]
    found = [(e["line"], e["field"]) for e in errors]
    assert found == [
        (3, "site"),
        (4, "model"),
        (5, "serial"),
        (6, "throughput_gbps"),
        (8, "status"),
        (9, "name"),
        (10, "serial"),
    ]
    assert "unknown site 'atlantis'" in errors[0]["message"]
    assert "first at line 2" in errors[5]["message"]
    assert "line 2" in errors[6]["message"]
    assert response.json["error"]["message"].endswith("nothing was written")
    assert count(Device) == 5


def test_malformed_files_are_clear_errors(world: Any, api: Any) -> None:
    ragged = "name,role,model,site\nx,router,juniper-mx204\n"
    response = upload(api, ragged, "type=devices&format=csv")
    assert response.status_code == 422
    assert response.json["error"]["details"]["errors"][0]["line"] == 2
    assert "expected 4 fields, got 3" in response.json["error"]["details"]["errors"][0]["message"]
    unknown = upload(api, "name,colour\nx,red\n", "type=devices&format=csv")
    assert unknown.json["error"]["details"]["errors"][0] == {
        "section": "devices",
        "line": 1,
        "field": "colour",
        "message": "unknown column",
    }
    broken_yaml = upload(api, "devices:\n  - name: x\n    role: [router\n", "format=yaml")
    assert broken_yaml.status_code == 422
    assert "malformed YAML" in broken_yaml.json["error"]["message"]
    assert broken_yaml.json["error"]["details"]["errors"][0]["line"] is not None
    broken_json = upload(api, '{"devices": [\n {"name": "x",}\n]}', "format=json")
    assert broken_json.status_code == 422
    assert "line 2" in broken_json.json["error"]["message"]
    no_type = upload(api, "[]", "format=json")
    assert no_type.status_code == 422 and "give the type" in no_type.json["error"]["message"]
    binary = api.post(f"{BASE}/import?format=csv&type=devices", data=b"name\n\xff\xfe\n")
    assert binary.status_code == 422 and "UTF-8" in binary.json["error"]["message"]
    assert count(Device) == 5


def test_yaml_and_json_errors_point_at_lines(world: Any, api: Any) -> None:
    doc = """devices:
  - name: good-1
    role: router
    model: juniper-mx204
    site: iad1
  - name: bad-1
    role: router
    model: juniper-mx204
    site: iad1
    components:
      - {name: psu9, kind: psu}
      - {name: sfp0, kind: module, bay: Slot9}
      - {name: fan0, kind: fan, status: melting}
"""
    response = upload(api, doc, "format=yaml")
    errors = response.json["error"]["details"]["errors"]
    assert [(e["line"], e["section"], e["field"]) for e in errors] == [
        (12, "components", "bay"),
        (13, "components", "status"),
    ]
    assert "has no module bay 'Slot9'" in errors[0]["message"]
    as_json = json.dumps(
        {"sites": [{"code": "ok1", "name": "Ok"}, {"code": "bad site!"}]}, indent=1
    )
    response = upload(api, as_json, "format=json")
    errors = response.json["error"]["details"]["errors"]
    lines = {(e["line"], e["field"]) for e in errors}
    assert lines == {(7, "code")}
    assert count(Component) == 7


def test_units_are_checked(world: Any, api: Any) -> None:
    doc = """device_models:
  - {manufacturer: Arista, model: 7280R3, slug: arista-7280r3, u_height: 1.25}
  - {manufacturer: Arista, model: 7050X3, slug: arista-7050x3, weight: 9.5}
  - {manufacturer: Arista, model: 7060X, slug: arista-7060x, weight: 9, weight_unit: stone}
interfaces:
  - {device: rtr-iad1-01, name: xe-0, type: 10gbase-x-sfpp, speed: 10GB}
ports:
  - {device: rtr-iad1-01, kind: power-port, name: PSU3, maximum_draw: 1.2kWh}
"""
    errors = upload(api, doc, "format=yaml").json["error"]["details"]["errors"]
    found = {(e["line"], e["field"]): e["message"] for e in errors}
    assert "multiple of 0.5" in found[(2, "u_height")]
    assert "required when weight is given" in found[(3, "weight_unit")]
    assert "'kg'" in found[(4, "weight_unit")]
    assert "unknown unit 'GB'" in found[(6, "speed")]
    assert "unknown unit 'kWh'" in found[(8, "maximum_draw")]


def test_export_round_trip_changes_nothing(world: Any, api: Any) -> None:
    for fmt in ("yaml", "json"):
        exported = api.get(f"{BASE}/export?format={fmt}", role="viewer")
        assert exported.status_code == 200
        again = upload(api, exported.get_data(as_text=True), f"format={fmt}")
        assert again.status_code == 200, again.json
        totals = again.json["totals"]
        assert totals["create"] == 0 and totals["update"] == 0, again.json["counts"]
        assert totals["unchanged"] > 40
    csv_text = api.get(f"{BASE}/export?format=csv&type=devices&site=ams1").get_data(as_text=True)
    assert csv_text.splitlines()[0].startswith("name,role,model,site,rack,position")
    assert len(csv_text.splitlines()) == 4
    again = upload(api, csv_text, "format=csv&type=devices")
    assert again.json["counts"] == {"devices": {"create": 0, "update": 0, "unchanged": 3}}


def test_export_reimports_into_an_empty_inventory(world: Any, api: Any) -> None:
    exported = api.get(f"{BASE}/export?format=json").get_data(as_text=True)
    before = {
        t: api.get(f"{BASE}/{t}?limit=1").json["count"]
        for t in ("devices", "components", "interfaces", "ports", "bays", "links")
    }
    with session_scope() as session:
        names = [d.name for d in session.scalars(select(Device))]
        service.delete_objects(session=session, otype="device", refs=names)
    restored = upload(api, exported, "format=json")
    assert restored.status_code == 200, restored.json
    after = {t: api.get(f"{BASE}/{t}?limit=1").json["count"] for t in before}
    assert after == before
    path = api.get(f"{BASE}/devices/oca-ams1-01/trace?interface=eth0").json
    assert path["destination"]["device"] == "rtr-ams1-01"


def test_multipart_upload_of_several_files_is_one_batch(world: Any, api: Any) -> None:
    sites = "code,name,region,kind,country\nlhr1,London 1,europe,cdn-ix,GB\n"
    devices = "name,role,model,site\nrtr-lhr1-01,router,juniper-mx204,lhr1\n"
    response = api.post(
        f"{BASE}/import",
        data={
            "file": [
                (io.BytesIO(sites.encode()), "sites.csv"),
                (io.BytesIO(devices.encode()), "devices.csv"),
            ]
        },
    )
    assert response.status_code == 200, response.json
    assert response.json["counts"]["sites"]["create"] == 1
    assert response.json["counts"]["devices"]["create"] == 1
    broken = api.post(
        f"{BASE}/import",
        data={
            "file": [
                (io.BytesIO(b"code,name\nmad1,Madrid\n"), "sites.csv"),
                (io.BytesIO(b"name,role,model,site\nx,router,nope,mad1\n"), "devices.csv"),
            ]
        },
    )
    assert broken.status_code == 422
    assert broken.json["error"]["details"]["errors"][0]["where"] == "devices.csv"
    assert api.get(f"{BASE}/sites/mad1").status_code == 404


def test_imports_audit_one_summary_plus_objects_when_small(world: Any, api: Any) -> None:
    with session_scope(readonly=True) as session:
        summary = session.scalars(select(AuditRecord).where(AuditRecord.action == "import")).all()
        per_device = session.scalar(
            select(func.count()).where(
                AuditRecord.object_type == "device", AuditRecord.action == "create"
            )
        )
    assert len(summary) == 1
    assert summary[0].object_id == "world.yaml"
    assert summary[0].after is not None and summary[0].after["totals"]["create"] == 50
    assert per_device == 5
    completed = events("inventory.import.completed")[-1]
    assert completed.payload["devices_added_by_site"] == {"ams1": 3, "bru-isp1": 1, "iad1": 1}


def test_large_batches_audit_one_record(world: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "PER_OBJECT_LIMIT", 10)
    rows = "name,role,model,site\n" + "".join(
        f"sw-iad1-{i:02d},switch,juniper-mx204,iad1\n" for i in range(12)
    )
    with session_scope() as session:
        service.import_files(session=session, files=[("switches.csv", rows)], otype="devices")
    with session_scope(readonly=True) as session:
        creates = session.scalar(
            select(func.count()).where(
                AuditRecord.object_type == "device", AuditRecord.action == "create"
            )
        )
        imports = session.scalars(select(AuditRecord).where(AuditRecord.action == "import")).all()
    assert creates == 5  # only the world's devices
    assert imports[-1].after is not None
    assert imports[-1].after["counts"]["devices"]["create"] == 12


def test_service_raises_invalid_input_with_all_errors() -> None:
    with session_scope() as session, pytest.raises(InvalidInput) as caught:
        service.import_files(session=session, files=[("sites.csv", "code,name\n,x\ny,\n")])
    assert [(e["line"], e["field"]) for e in caught.value.details["errors"]] == [
        (2, "code"),
        (3, "name"),
    ]


def test_duplicate_parts_in_one_file_and_part_updates(world: Any, api: Any) -> None:
    doc = """components:
  - {device: oca-bru-01, name: ssd0, kind: disk}
  - {device: oca-bru-01, name: ssd0, kind: disk}
interfaces:
  - {device: oca-bru-01, name: eth0, description: uplink A}
  - {device: oca-bru-01, name: eth0, description: uplink B}
"""
    errors = upload(api, doc, "format=yaml").json["error"]["details"]["errors"]
    assert [(e["line"], e["section"], e["field"]) for e in errors] == [
        (3, "components", "name"),
        (6, "interfaces", "name"),
    ]
    assert "duplicate component 'ssd0'" in errors[0]["message"]
    changed = """components:
  - {device: oca-ams1-01, name: disk0, firmware: SN05}
  - {device: oca-ams1-01, name: disk1, kind: disk}
interfaces:
  - {device: oca-ams1-01, name: eth1, description: uplink B, mtu: 9000}
"""
    result = upload(api, changed, "format=yaml").json
    assert result["counts"]["components"] == {"create": 0, "update": 1, "unchanged": 1}
    assert result["counts"]["interfaces"] == {"create": 0, "update": 1, "unchanged": 0}
    disk = api.get(f"{BASE}/components?device=oca-ams1-01&name=disk0").json["items"][0]
    assert disk["firmware"] == "SN05" and disk["serial"] == "HDD-1"
    history = api.get(f"{BASE}/components/{disk['id']}/history").json["items"]
    assert history[-1]["diff"] == {"firmware": ["SN04", "SN05"]}
