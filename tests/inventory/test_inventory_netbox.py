"""`popcorn inventory import-netbox`: NetBox 3.x and 4.x dumps become a Popcorn inventory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from netbox_dumps import dump, rec  # type: ignore[import-not-found]

from popcorn.cli import cli
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory import models as m
from popcorn.inventory import service
from popcorn.inventory.cli import group
from popcorn.inventory.ipam.models import IpAddress
from popcorn.inventory.netbox import import_netbox

cli.add_command(group)


def write(tmp_path: Path, records: list[dict[str, Any]], name: str = "netbox.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["inventory", "import-netbox", *args], catch_exceptions=False)


@pytest.mark.parametrize("version", ["3.2", "4.2"])
def test_a_dump_becomes_an_inventory(tmp_path: Path, version: str, api: Any) -> None:
    result = run(str(write(tmp_path, dump(version))), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["devices"]["create"] == 2
    assert report["counts"]["links"]["create"] == 3  # to the router, the circuit, the feed
    user = "users.user" if version.startswith("4") else "auth.user"
    assert report["skipped"] == {
        "auth.permission": 2,
        "extras.objectchange": 1,
        "sessions.session": 1,
        user: 1,
    }

    mx = api.get("/api/v1/inventory/devices/mx1-ams1").json
    assert (mx["role"], mx["platform"], mx["rack"], mx["position"]) == (
        "router",
        "Junos",
        "R101",
        10.0,
    )
    assert mx["primary_ip4"] == "192.0.2.1" and mx["serial"] == "JN1234"
    assert mx["tags"] == ["edge"]
    assert mx["custom_fields"] == {
        "tier": "gold",
        "tenant": "Open Connect",
        "netbox_role": "core-router",
    }
    oca = api.get("/api/v1/inventory/devices/oca1-ams1").json
    assert (oca["role"], oca["status"], oca["tags"]) == (
        "storage-appliance",
        "maintenance",
        ["oca"],
    )
    assert oca["custom_fields"]["rma_case"] == "RMA-4411"
    site = api.get("/api/v1/inventory/sites/ams1").json
    assert (site["region"], site["latitude"], site["tags"]) == ("nl", 52.303, ["edge"])
    regions = {r["slug"]: r["parent"] for r in api.get("/api/v1/inventory/regions").json["items"]}
    assert regions == {"europe": None, "nl": "europe"}
    assert site["group"] == "tier-1-eu"
    groups = api.get("/api/v1/inventory/site-groups").json["items"]
    assert {g["slug"]: (g["parent"], g["description"]) for g in groups} == {
        "tier-1": (None, ""),
        "tier-1-eu": ("tier-1", "EU"),
    }
    in_tier_1 = api.get("/api/v1/inventory/sites?site_group=tier-1").json["items"]
    assert [s["code"] for s in in_tier_1] == ["ams1"]
    locations = api.get("/api/v1/inventory/locations?site=ams1").json["items"]
    assert {x["slug"]: (x["parent"], x["name"]) for x in locations} == {
        "floor-1": (None, "Floor 1"),
        "cage-a": ("floor-1", "Cage A"),
    }
    assert (oca["location"], api.get("/api/v1/inventory/racks").json["items"][0]["location"]) == (
        "cage-a",
        "cage-a",
    )
    on_floor = api.get("/api/v1/inventory/devices?location=floor-1").json["items"]
    assert sorted(d["name"] for d in on_floor) == ["mx1-ams1", "oca1-ams1"]
    ens = api.get("/api/v1/inventory/interfaces?device=oca1-ams1&name=ens1f0").json["items"][0]
    assert (ens["mac_address"], ens["mtu"]) == ("0C:C4:7A:00:00:01", 9000)
    with session_scope(readonly=True) as session:
        trace = service.trace(session=session, device="mx1-ams1", name="et-0/0/0", kind="interface")
        model = session.query(m.DeviceModel).filter_by(slug="juniper-mx204").one()
        pem = (
            session.query(m.ComponentTemplate)
            .filter_by(device_model_id=model.id, name="PEM0")
            .one()
        )
        ids = {(r.netbox_model, r.netbox_id): r.object_type for r in session.query(m.NetboxId)}
        device_id = (
            session.query(m.NetboxId).filter_by(netbox_model="dcim.device", netbox_id=2).one()
        )
        assert device_id.object_id == oca["id"]
    assert trace["complete"] and trace["destination"]["device"] == "oca1-ams1"
    assert trace["hops"][0]["link"]["label"] == "AMS1-0001"
    assert (model.weight, pem.extra) == (9.89, {"maximum_draw": 525, "allocated_draw": 350})
    assert ids[("dcim.cable", 1)] == "link" and ids[("dcim.interface", 5)] == "interface"
    assert ids[("dcim.module", 1)] == "component" and ids[("dcim.rack", 1)] == "rack"
    assert ids[("dcim.sitegroup", 2)] == "site_group"
    assert ids[("dcim.location", 2)] == "location"
    assert ids[("ipam.ipaddress", 1)] == "ip_address" and ids[("circuits.circuit", 1)] == "circuit"
    assert ids[("dcim.cable", 2)] == "link" and ids[("dcim.powerfeed", 1)] == "power_feed"


@pytest.mark.parametrize("version", ["3.2", "4.2"])
def test_addresses_circuits_and_power_come_through(tmp_path: Path, version: str, api: Any) -> None:
    with session_scope() as session:
        found = import_netbox(session=session, path=write(tmp_path, dump(version)))
    counts = found.result.counts
    assert counts["ip_addresses"]["create"] == 1 and counts["circuits"]["create"] == 1
    assert counts["power_feeds"]["create"] == 1 and counts["links"]["create"] == 3
    address = api.get("/api/v1/inventory/ip-addresses?device=mx1-ams1").json["items"]
    assert [(a["address"], a["dns_name"]) for a in address] == [
        ("192.0.2.1/31", "mx1.ams1.example")
    ]
    prefix = api.get("/api/v1/inventory/prefixes").json["items"][0]
    assert (prefix["prefix"], prefix["site"]) == ("192.0.2.0/24", "ams1")
    circuit = api.get("/api/v1/inventory/circuits").json["items"][0]
    assert (circuit["cid"], circuit["commit_rate"]) == ("AMSIX-12345", 100000000)
    assert api.get("/api/v1/inventory/vlans").json["items"][0]["vid"] == 100
    with session_scope(readonly=True) as session:
        trace = service.trace(session=session, device="mx1-ams1", name="et-0/0/1", kind="interface")
        power = service.trace(session=session, device="mx1-ams1", name="PEM0", kind="power-port")
    # the appliance's interface, through the cable, to the IX circuit's termination
    assert trace["hops"][0]["link"]["label"] == "XC-77"
    assert trace["hops"][0]["far"]["type"] == "circuit_termination"
    assert trace["hops"][0]["far"]["circuit"]["cid"] == "AMSIX-12345"
    assert power["hops"][0]["far"]["type"] == "power_feed"
    with session_scope() as session:
        again = import_netbox(session=session, path=write(tmp_path, dump(version), "again.json"))
    assert again.result.totals["create"] == 0 and again.result.totals["update"] == 0
    assert again.ids == {"added": 0, "changed": 0}


def test_the_same_dump_again_changes_nothing_and_a_newer_one_updates(tmp_path: Path) -> None:
    first = write(tmp_path, dump("4.1"))
    with session_scope() as session:
        import_netbox(session=session, path=first)
    with session_scope() as session:
        again = import_netbox(session=session, path=first)
    assert again.result.totals["create"] == 0 and again.result.totals["update"] == 0
    assert again.ids == {"added": 0, "changed": 0}
    # The 3.x dump of the same NetBox is the same inventory.
    with session_scope() as session:
        older = import_netbox(session=session, path=write(tmp_path, dump("3.7"), "old.json"))
    assert older.result.totals["create"] == 0 and older.result.totals["update"] == 0
    newer = write(tmp_path, dump("4.2", serial="JN9999", extra_interface=True), "newer.json")
    with session_scope() as session:
        found = import_netbox(session=session, path=newer)
    assert found.result.counts["devices"]["update"] == 1
    assert found.result.counts["interfaces"]["create"] == 1
    assert found.ids["added"] == 1
    with session_scope(readonly=True) as session:
        assert session.query(m.Device).filter_by(name="mx1-ams1").one().serial == "JN9999"

    renamed = dump("4.1")
    for record in renamed:
        if record["model"] == "ipam.ipaddress":
            record["fields"]["dns_name"] = "edge1.ams1.example"
    with session_scope() as session:
        changed = import_netbox(session=session, path=write(tmp_path, renamed, "renamed.json"))
    assert changed.result.counts["ip_addresses"] == {"create": 0, "update": 1, "unchanged": 0}
    assert changed.result.counts["circuits"] == {"create": 0, "update": 0, "unchanged": 1}
    with session_scope(readonly=True) as session:
        assert session.query(IpAddress).one().dns_name == "edge1.ams1.example"


def test_a_broken_dump_writes_nothing_and_names_the_record(tmp_path: Path) -> None:
    records = dump("4.2")
    records.append(
        rec("dcim.device", 7, name="ghost", device_type=42, role=1, site=1, status="active")
    )
    result = run(str(write(tmp_path, records)))
    assert result.exit_code == 1
    assert "dcim.device 7" in result.stderr and "nothing was written" in result.stderr
    with session_scope(readonly=True) as session:
        assert session.query(m.Device).count() == 0
        assert session.query(m.NetboxId).count() == 0


def test_dry_run_and_not_a_dump(tmp_path: Path) -> None:
    dry = run(str(write(tmp_path, dump("4.2"))), "--dry-run")
    assert dry.exit_code == 0 and "dry run" in dry.stdout and "auth.permission" in dry.stdout
    with session_scope(readonly=True) as session:
        assert session.query(m.Device).count() == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "dcim.site"}')
    result = run(str(bad))
    assert result.exit_code == 1 and "expected a list" in result.output
    with pytest.raises(InvalidInput, match="record 0"), session_scope() as session:
        import_netbox(session=session, path=write(tmp_path, [{"pk": 1}], "odd.json"))


def test_a_large_import_is_one_audit_record_with_every_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from popcorn.audit import AuditRecord
    from popcorn.inventory import bulk
    from popcorn.inventory.ipam import batch

    monkeypatch.setattr(bulk, "PER_OBJECT_LIMIT", 0)  # every batch counts as large
    monkeypatch.setattr(batch, "PER_OBJECT_LIMIT", 0)
    with session_scope() as session:
        import_netbox(session=session, path=write(tmp_path, dump("4.2")))
    with session_scope(readonly=True) as session:
        records = session.query(AuditRecord).all()
    # cables to a circuit or a feed too: the summary counts them with the others
    assert [(r.action, r.object_type) for r in records] == [("import", "import")]
    counts = records[0].after["counts"]  # type: ignore[index]
    assert counts["ip_addresses"]["create"] == 1 and counts["power_feeds"]["create"] == 1
    assert counts["links"]["create"] == 3
    assert counts["devices"]["create"] == 2


def test_an_address_twice_in_the_dump_writes_nothing(tmp_path: Path) -> None:
    records = dump("4.2")
    records.append(rec("ipam.ipaddress", 99, address="192.0.2.1/24", vrf=1, status="active"))
    result = run(str(write(tmp_path, records)))
    assert result.exit_code == 1
    assert "ipam.ipaddress 99" in result.stderr and "192.0.2.1" in result.stderr
    with session_scope(readonly=True) as session:
        assert session.query(m.Device).count() == 0
        assert session.query(IpAddress).count() == 0


def test_a_power_panel_keeps_its_netbox_location(tmp_path: Path, api: Any) -> None:
    records = dump("4.2")
    for record in records:
        if record["model"] == "dcim.powerpanel":
            record["fields"]["location"] = 2  # Cage A
    with session_scope() as session:
        import_netbox(session=session, path=write(tmp_path, records))
    panel = api.get("/api/v1/inventory/power-panels").json["items"][0]
    assert (panel["name"], panel["location"]) == ("PP-A", "cage-a")
