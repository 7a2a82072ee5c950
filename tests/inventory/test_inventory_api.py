"""Devices and friends through the API: CRUD, lifecycle, templates, filters, bulk, history."""

from __future__ import annotations

from typing import Any

from inventory_world import events  # type: ignore[import-not-found]
from sqlalchemy import func, select

from popcorn.db import session_scope
from popcorn.inventory.models import Component, Device, Interface

BASE = "/api/v1/inventory"


def count(model: Any) -> int:
    with session_scope(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_world_import_counts_and_template_instantiation(world: dict[str, Any], api: Any) -> None:
    counts = world["counts"]
    assert counts["devices"] == {"create": 5, "update": 0, "unchanged": 0}
    # 3 OCAs x 3 interfaces + 2 routers x 2 + 2 from the NIC module
    assert counts["interfaces"]["create"] == 15
    ifaces = api.get(f"{BASE}/interfaces?device=oca-ams1-01&fields=name,module,mgmt_only").json
    assert {i["name"]: (i["module"], i["mgmt_only"]) for i in ifaces["items"]} == {
        "eth0": (None, False),
        "eth1": (None, False),
        "mgmt0": (None, True),
        "nic1p0": ("nic1", False),
        "nic1p1": ("nic1", False),
    }
    ports = api.get(f"{BASE}/ports?device=oca-bru-01").json["items"]
    assert [(p["kind"], p["name"], p["maximum_draw"]) for p in ports] == [
        ("power-port", "PSU1", 750),
        ("power-port", "PSU2", 750),
    ]
    fan = api.get(f"{BASE}/components?device=oca-bru-01").json["items"]
    assert [(c["name"], c["kind"]) for c in fan] == [("fan1", "fan")]
    optic = api.get(f"{BASE}/components?serial=OPT-1").json["items"][0]
    assert optic["parent"] == "nic1"


def test_create_device_instantiates_templates_and_emits_events(world: Any, api: Any) -> None:
    created = api.post(
        f"{BASE}/devices",
        role="operator",
        json={
            "name": "oca-ams1-03",
            "role": "storage-appliance",
            "model": "oca-storage-gen4",
            "site": "ams1",
            "serial": "NFX-0004",
            "throughput_gbps": "0.1Tbps",
            "storage_tb": "0.5PB",
        },
    )
    assert created.status_code == 201, created.json
    body = created.json
    assert (body["model"], body["site"], body["status"]) == ("oca-storage-gen4", "ams1", "active")
    assert body["throughput_gbps"] == 100.0 and body["storage_tb"] == 500.0
    names = [i["name"] for i in api.get(f"{BASE}/interfaces?device_id={body['id']}").json["items"]]
    assert names == ["eth0", "eth1", "mgmt0"]
    kinds = [
        e.type for e in events() if (e.object_type, e.object_id) == ("device", str(body["id"]))
    ]
    assert kinds == ["inventory.device.created", "inventory.device.added_to_site"]
    assert events("inventory.device.added_to_site")[-1].payload == {
        "device": "oca-ams1-03",
        "site": "ams1",
    }


def test_lifecycle_only_valid_transitions(world: Any, api: Any) -> None:
    bad = api.post(f"{BASE}/devices/oca-ams1-01/status", json={"status": "planned"})
    assert bad.status_code == 422
    assert "cannot go from active to planned" in bad.json["error"]["message"]
    assert "maintenance" in bad.json["error"]["details"]["fields"]["status"][0]
    for status in ("maintenance", "failed", "active", "decommissioned"):
        moved = api.post(
            f"{BASE}/devices/oca-ams1-01/status", json={"status": status, "reason": f"to {status}"}
        )
        assert moved.status_code == 200, moved.json
        assert moved.json["status"] == status
    final = api.patch(f"{BASE}/devices/oca-ams1-01", json={"status": "active"})
    assert final.status_code == 422
    assert "none: it is final" in final.json["error"]["message"]
    changes = [
        (e.payload["from"], e.payload["to"], e.payload["reason"])
        for e in events("inventory.device.status_changed")
    ]
    assert changes == [
        ("active", "maintenance", "to maintenance"),
        ("maintenance", "failed", "to failed"),
        ("failed", "active", "to active"),
        ("active", "decommissioned", "to decommissioned"),
    ]


def test_bad_input_names_the_field_and_writes_nothing(world: Any, api: Any) -> None:
    before = count(Device)
    cases = [
        ({"site": "nowhere"}, 422, "site", "unknown site 'nowhere'"),
        ({"model": "mx9000"}, 422, "model", "unknown device model 'mx9000'"),
        ({"serial": "NFX-0001"}, 409, "serial", "already the serial of device 'oca-ams1-01'"),
        ({"name": "oca-ams1-01"}, 409, "name", "already exists"),
        ({"throughput_gbps": "100GB"}, 422, "throughput_gbps", "unknown unit 'GB'"),
        ({"storage_tb": "12 parsecs"}, 422, "storage_tb", "unknown unit 'parsecs'"),
        ({"primary_ip4": "2001:db8::1"}, 422, "primary_ip4", "not an IPv4 address"),
        ({"rack": "R99"}, 422, "rack", "no rack 'R99' in site 'ams1'"),
        ({"rack": "R01", "position": 2}, 422, "position", "U2 is taken by 'oca-ams1-01'"),
        ({"rack": "R01", "position": 42}, 422, "position", "does not fit in rack"),
        ({"colour": "red"}, 422, "colour", "Extra inputs"),
    ]
    good = {
        "name": "new-oca",
        "role": "storage-appliance",
        "model": "oca-storage-gen4",
        "site": "ams1",
    }
    for change, status, field, message in cases:
        response = api.post(f"{BASE}/devices", json={**good, **change})
        assert response.status_code == status, (change, response.json)
        fields = response.json["error"]["details"]["fields"]
        assert field in fields, (change, fields)
        assert message in " ".join(fields[field]), (change, fields)
    assert count(Device) == before


def test_filters_lookups_brief_fields_and_paging(world: Any, api: Any) -> None:
    def names(query: str) -> list[str]:
        response = api.get(f"{BASE}/devices?{query}", role="viewer")
        assert response.status_code == 200, response.json
        return [d["name"] for d in response.json["items"]]

    assert names("site=ams1&role=router") == ["rtr-ams1-01"]
    assert names("region=europe") == ["oca-ams1-01", "oca-ams1-02", "oca-bru-01", "rtr-ams1-01"]
    assert names("region=americas") == ["rtr-iad1-01"]
    assert names("status=maintenance") == ["oca-ams1-02"]
    assert names("status__n=maintenance&role=storage-appliance") == ["oca-ams1-01", "oca-bru-01"]
    assert names("manufacturer=juniper") == ["rtr-ams1-01", "rtr-iad1-01"]
    assert names("model=juniper-mx204&site__in=iad1,bru-isp1") == ["rtr-iad1-01"]
    assert names("tag=oca") == ["oca-ams1-01"]
    assert names("serial__isw=jn-") == ["rtr-ams1-01", "rtr-iad1-01"]
    assert names("throughput_gbps__gte=100") == ["oca-ams1-01", "oca-ams1-02", "rtr-iad1-01"]
    assert names("rack=R01&position__gt=2") == ["oca-ams1-02"]
    assert names("q=nfx-0003") == ["oca-bru-01"]
    assert names("q=FX-000") == ["oca-ams1-01", "oca-ams1-02", "oca-bru-01"]
    assert names("q=ru") == ["oca-bru-01"]  # under three characters: a plain scan
    api.patch(f"{BASE}/devices/oca-bru-01", json={"description": "Spare unit"})
    assert names("q=spare un") == ["oca-bru-01"]
    brief = api.get(f"{BASE}/devices?brief=1&site=bru-isp1").json["items"]
    assert brief == [
        {"id": brief[0]["id"], "name": "oca-bru-01", "status": "active", "site": "bru-isp1"}
    ]
    picked = api.get(f"{BASE}/devices?fields=name,storage_tb&name=oca-bru-01").json["items"]
    assert picked == [{"name": "oca-bru-01", "storage_tb": 240.0}]
    first = api.get(f"{BASE}/devices?limit=2").json
    assert first["count"] == 5 and len(first["items"]) == 2 and first["next"]
    rest = api.get(f"{BASE}/devices?limit=10&cursor={first['next']}").json["items"]
    assert len(rest) == 3
    assert api.get(f"{BASE}/devices?colour=red").status_code == 422
    assert api.get(f"{BASE}/devices?fields=nope").status_code == 422
    assert api.get(f"{BASE}/devices?region=atlantis").status_code == 404
    sites = api.get(f"{BASE}/sites?region=benelux&tag=ix").json["items"]
    assert [s["code"] for s in sites] == ["ams1"]


def test_roles_viewer_reads_operator_writes(world: Any, api: Any) -> None:
    assert api.get(f"{BASE}/devices", role="viewer").status_code == 200
    body = {"code": "lhr1", "name": "London 1"}
    assert api.post(f"{BASE}/sites", role="viewer", json=body).status_code == 403
    assert api.post(f"{BASE}/sites", role="operator", json=body).status_code == 201
    assert api.delete(f"{BASE}/sites/lhr1", role="viewer").status_code == 403
    assert api.post(f"{BASE}/import", role="viewer", data="[]").status_code == 403
    assert api.get(f"{BASE}/devices").status_code == 200
    assert api.client.get(f"{BASE}/devices").status_code == 401


def test_bulk_create_is_all_or_nothing_and_reports_every_item(world: Any, api: Any) -> None:
    items = [
        {
            "name": f"oca-iad1-{i:02d}",
            "role": "storage-appliance",
            "model": "oca-storage-gen4",
            "site": "iad1",
            "serial": f"NFX-1{i:03d}",
        }
        for i in range(5)
    ]
    items[1]["site"] = "mars1"
    items[3]["serial"] = "NFX-0001"
    rejected = api.post(f"{BASE}/devices/bulk", json=items)
    assert rejected.status_code == 422
    errors = rejected.json["error"]["details"]["errors"]
    assert [(e["where"], e["field"]) for e in errors] == [("[1]", "site"), ("[3]", "serial")]
    assert count(Device) == 5
    items[1]["site"], items[3]["serial"] = "iad1", "NFX-9999"
    created = api.post(f"{BASE}/devices/bulk", json=items)
    assert created.status_code == 201, created.json
    assert created.json["counts"]["devices"]["create"] == 5
    assert len(created.json["items"]) == 5
    updated = api.patch(
        f"{BASE}/devices/bulk",
        json=[
            {"name": "oca-iad1-00", "status": "maintenance"},
            {"name": "oca-iad1-01", "status": "failed"},
        ],
    )
    assert updated.status_code == 200, updated.json
    assert {d["name"]: d["status"] for d in updated.json["items"]} == {
        "oca-iad1-00": "maintenance",
        "oca-iad1-01": "failed",
    }
    missing = api.patch(f"{BASE}/devices/bulk", json=[{"name": "ghost", "status": "failed"}])
    assert missing.status_code == 422
    deleted = api.request("DELETE", f"{BASE}/devices/bulk", json=["oca-iad1-00", "oca-iad1-01"])
    assert deleted.json == {"deleted": 2}
    assert api.request("DELETE", f"{BASE}/devices/bulk", json=["nope"]).status_code == 404


def test_history_and_journal(world: Any, api: Any) -> None:
    api.patch(f"{BASE}/devices/oca-bru-01", json={"os_version": "12.3", "platform": "freebsd"})
    history = api.get(f"{BASE}/devices/oca-bru-01/history", role="viewer").json["items"]
    assert [h["action"] for h in history] == ["create", "update"]
    assert history[1]["diff"]["os_version"] == ["", "12.3"]
    assert history[1]["actor"] == "token:test-admin"
    note = api.post(
        f"{BASE}/devices/oca-bru-01/journal",
        role="operator",
        json={"kind": "warning", "comments": "PSU2 fan noisy, RMA 4411"},
    )
    assert note.status_code == 201
    entries = api.get(f"{BASE}/devices/oca-bru-01/journal").json["items"]
    assert [(e["kind"], e["comments"], e["created_by"]) for e in entries] == [
        ("warning", "PSU2 fan noisy, RMA 4411", "token:test-operator")
    ]
    bad = api.post(f"{BASE}/devices/oca-bru-01/journal", json={"kind": "gossip", "comments": "x"})
    assert bad.status_code == 422
    site_history = api.get(f"{BASE}/sites/ams1/history").json["items"]
    assert site_history[0]["action"] == "create"


def test_delete_rules(world: Any, api: Any) -> None:
    in_use = api.delete(f"{BASE}/sites/ams1")
    assert in_use.status_code == 409
    assert in_use.json["error"]["details"]["in_use_by"] == "devices"
    assert api.delete(f"{BASE}/device-models/juniper-mx204").status_code == 409
    parts = count(Component), count(Interface)
    assert api.delete(f"{BASE}/devices/oca-ams1-01").status_code == 204
    assert count(Component) == parts[0] - 5  # disks, NIC module, optic, fan
    assert count(Interface) == parts[1] - 5
    assert api.get(f"{BASE}/links").json["count"] == 0
    router = api.get(f"{BASE}/interfaces?device=rtr-ams1-01&name=et-0/0/0").json["items"][0]
    assert router["link_id"] is None
    assert events("inventory.device.removed_from_site")[-1].payload["site"] == "ams1"
    assert api.get(f"{BASE}/devices/oca-ams1-01").status_code == 404


def test_custom_fields_are_typed_and_declared_per_type(world: Any, api: Any) -> None:
    for decl in (
        {"object_type": "device", "name": "rma_ticket", "type": "integer"},
        {"object_type": "device", "name": "tier", "type": "select", "choices": ["gold", "silver"]},
    ):
        assert api.post(f"{BASE}/custom-fields", json=decl).status_code == 201
    assert (
        api.post(
            f"{BASE}/custom-fields", json={"object_type": "device", "name": "x", "type": "select"}
        ).status_code
        == 422
    )
    bad = api.patch(
        f"{BASE}/devices/oca-bru-01",
        json={"custom_fields": {"rma_ticket": "soon", "tier": "bronze", "owner": 1}},
    )
    assert bad.status_code == 422
    assert set(bad.json["error"]["details"]["fields"]) == {
        "custom_fields.rma_ticket",
        "custom_fields.tier",
        "custom_fields.owner",
    }
    good = api.patch(
        f"{BASE}/devices/oca-bru-01", json={"custom_fields": {"rma_ticket": "4411", "tier": "gold"}}
    )
    assert good.json["custom_fields"] == {"rma_ticket": 4411, "tier": "gold"}
    found = api.get(f"{BASE}/devices?cf_rma_ticket__gte=4000&cf_tier=gold").json["items"]
    assert [d["name"] for d in found] == ["oca-bru-01"]


def test_trace_endpoints_and_component_failure(world: Any, api: Any) -> None:
    path = api.get(f"{BASE}/devices/oca-ams1-01/trace?interface=eth0").json
    assert path["complete"] is True
    assert path["destination"]["device"] == "rtr-ams1-01"
    assert path["destination"]["name"] == "et-0/0/0"
    disk = api.get(f"{BASE}/components?serial=HDD-1").json["items"][0]
    failed = api.post(f"{BASE}/components/{disk['id']}/fail", json={"reason": "SMART"})
    assert failed.status_code == 200 and failed.json["status"] == "failed"
    event = events("inventory.component.failed")[-1]
    assert event.payload["device"] == "oca-ams1-01" and event.payload["serial"] == "HDD-1"
    assert event.payload["reason"] == "SMART"
    report = api.get(f"{BASE}/reports/failed-components").json["items"]
    assert [(r["device"], [c["name"] for c in r["failed"]]) for r in report] == [
        ("oca-ams1-01", ["disk0"])
    ]


def test_openapi_lists_inventory_routes(client: Any) -> None:
    paths = client.get("/openapi.json").json["paths"]
    for path in (
        "/api/v1/inventory/devices",
        "/api/v1/inventory/devices/{ref}",
        "/api/v1/inventory/devices/bulk",
        "/api/v1/inventory/import",
        "/api/v1/inventory/devices/{ref}/trace",
    ):
        assert path in paths


def test_database_conflicts_are_409_not_500(world: Any, api: Any) -> None:
    clash = api.post(f"{BASE}/manufacturers", json={"name": "Juniper", "slug": "jnpr"})
    assert clash.status_code == 409
    assert "conflicts with stored data" in clash.json["error"]["message"]
    assert api.get(f"{BASE}/manufacturers?slug=jnpr").json["count"] == 0
