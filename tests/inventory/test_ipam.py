"""IPAM, circuits and power: what NetBox users rely on, through the API and the service."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from popcorn.db import session_scope
from popcorn.errors import Conflict, InvalidInput
from popcorn.inventory import service as dcim_service
from popcorn.inventory.ipam import service

BASE = "/api/v1/inventory"

WORLD = """
sites:
  - {code: fra1, name: Frankfurt 1}
  - {code: ams1, name: Amsterdam 1}
racks:
  - {site: fra1, name: R1}
  - {site: ams1, name: R9}
device_models:
  - manufacturer: Generic
    model: OCA 2x100G
    slug: oca
    interfaces:
      - {name: eth0, type: 100gbase-x-qsfp28}
      - {name: eth1, type: 100gbase-x-qsfp28}
    power-ports:
      - {name: PSU1, type: iec-60320-c14, maximum_draw: 800, allocated_draw: 450}
      - {name: PSU2, type: iec-60320-c14, maximum_draw: 800, allocated_draw: 450}
devices:
  - {name: oca1, role: storage-appliance, model: oca, site: fra1, rack: R1}
  - {name: rtr1, role: router, model: oca, site: ams1}
"""


@pytest.fixture
def world(api: Any) -> None:
    response = api.post(f"{BASE}/import?format=yaml", data=WORLD)
    assert response.status_code == 200, response.json


def post(api: Any, path: str, body: Any, status: int = 201, role: str = "operator") -> Any:
    response = api.post(f"{BASE}/{path}", json=body, role=role)
    assert response.status_code == status, response.json
    return response.json


def test_prefix_hierarchy_and_utilisation(world: None, api: Any) -> None:
    top = post(api, "prefixes", {"prefix": "10.0.0.0/16", "status": "container"})
    post(api, "prefixes", {"prefix": "10.0.0.0/24"})
    post(api, "prefixes", {"prefix": "10.0.1.0/24"})
    # host bits are dropped, as NetBox does
    leaf = post(api, "prefixes", {"prefix": "10.0.0.77/26"})
    assert leaf["prefix"] == "10.0.0.64/26"
    for host in range(1, 11):
        post(api, "ip-addresses", {"address": f"10.0.0.{64 + host}/26"})
    post(
        api,
        "ip-ranges",
        {"start_address": "10.0.0.100/26", "end_address": "10.0.0.109/26", "mark_utilized": True},
    )
    shown = {p["prefix"]: p for p in api.get(f"{BASE}/prefixes?limit=100").json["items"]}
    assert shown["10.0.0.0/16"]["depth"] == 0 and shown["10.0.0.0/16"]["children"] == 3
    assert shown["10.0.0.0/24"]["depth"] == 1 and shown["10.0.0.64/26"]["depth"] == 2
    # container: two /24 of a /16 in use
    assert shown["10.0.0.0/16"]["utilization"] == pytest.approx(2 / 256)
    # a /26 has 62 usable addresses: 10 addresses and a 10-address range
    assert shown["10.0.0.64/26"]["utilization"] == pytest.approx(20 / 62)
    within = api.get(f"{BASE}/prefixes?within=10.0.0.0/24").json
    assert {p["prefix"] for p in within["items"]} == {"10.0.0.0/24", "10.0.0.64/26"}
    assert api.get(f"{BASE}/prefixes/{top['id']}").json["children"] == 3


def test_ipv6_next_free_prefix_and_address(world: None, api: Any) -> None:
    parent = post(api, "prefixes", {"prefix": "2001:db8::/48", "status": "container"})
    post(api, "prefixes", {"prefix": "2001:db8::/64"})
    post(api, "prefixes", {"prefix": "2001:db8:0:2::/64"})
    free = api.get(f"{BASE}/prefixes/{parent['id']}/available-prefixes?prefix_length=64&count=2")
    assert free.status_code == 200, free.json
    assert free.json["items"] == ["2001:db8:0:1::/64", "2001:db8:0:3::/64"]
    made = post(
        api, f"prefixes/{parent['id']}/available-prefixes", {"prefix_length": 56, "create": True}
    )
    assert made["items"] == ["2001:db8:0:100::/56"] and len(made["created"]) == 1
    subnet = api.get(f"{BASE}/prefixes?prefix=2001:db8:0:100::/56").json["items"][0]
    assert subnet["id"] == made["created"][0]
    post(api, "ip-addresses", {"address": "2001:db8:0:100::/56"})
    ips = api.get(f"{BASE}/prefixes/{subnet['id']}/available-ips?count=2").json
    assert ips["items"] == ["2001:db8:0:100::1/56", "2001:db8:0:100::2/56"]


def test_next_free_ipv4_address_skips_network_used_and_ranges(world: None, api: Any) -> None:
    net = post(api, "prefixes", {"prefix": "192.0.2.0/29"})
    post(api, "ip-addresses", {"address": "192.0.2.1/29"})
    post(api, "ip-ranges", {"start_address": "192.0.2.2/29", "end_address": "192.0.2.4/29"})
    got = post(api, f"prefixes/{net['id']}/available-ips", {"count": 2, "create": True})
    assert got["items"] == ["192.0.2.5/29", "192.0.2.6/29"] and len(got["created"]) == 2
    # .7 is the broadcast address: the prefix is now full
    full = api.post(
        f"{BASE}/prefixes/{net['id']}/available-ips", json={"count": 1}, role="operator"
    )
    assert full.status_code == 409 and full.json["error"]["code"] == "conflict"
    wide = api.get(f"{BASE}/prefixes/{net['id']}/available-prefixes?prefix_length=24")
    assert wide.status_code == 422


def test_duplicate_addresses_refused_unless_the_vrf_allows(world: None, api: Any) -> None:
    post(api, "ip-addresses", {"address": "10.9.0.1/24"})
    again = api.post(f"{BASE}/ip-addresses", json={"address": "10.9.0.1/32"}, role="operator")
    assert again.status_code == 409 and "global table" in again.json["error"]["message"]
    post(api, "vrfs", {"name": "customers", "rd": "65000:1"})
    post(api, "vrfs", {"name": "lab", "enforce_unique": False})
    post(api, "ip-addresses", {"address": "10.9.0.1/24", "vrf": "customers"})
    dup = api.post(
        f"{BASE}/ip-addresses", json={"address": "10.9.0.1/24", "vrf": "65000:1"}, role="operator"
    )
    assert dup.status_code == 409
    post(api, "ip-addresses", {"address": "10.9.0.1/24", "vrf": "lab"})
    post(api, "ip-addresses", {"address": "10.9.0.1/24", "vrf": "lab"})
    # a VIP may share its address even where addresses are unique
    post(api, "ip-addresses", {"address": "10.9.0.1/24", "role": "vip"})
    post(api, "prefixes", {"prefix": "10.9.0.0/24"})
    assert (
        api.post(f"{BASE}/prefixes", json={"prefix": "10.9.0.0/24"}, role="operator").status_code
        == 409
    )
    listed = api.get(f"{BASE}/ip-addresses?vrf=lab").json
    assert listed["count"] == 2


def test_addresses_on_interfaces_and_primary_ip(world: None, api: Any) -> None:
    four = post(
        api,
        "ip-addresses",
        {
            "address": "198.51.100.10/24",
            "device": "oca1",
            "interface": "eth0",
            "dns_name": "oca1.example.net",
        },
    )
    six = post(
        api, "ip-addresses", {"address": "2001:db8::10/64", "device": "oca1", "interface": "eth0"}
    )
    assert four["device"] == "oca1" and four["interface"] == "eth0" and not four["primary"]
    assert post(api, f"ip-addresses/{four['id']}/primary", None, status=200)["primary"]
    post(api, f"ip-addresses/{six['id']}/primary", None, status=200)
    device = api.get(f"{BASE}/devices/oca1").json
    assert (device["primary_ip4"], device["primary_ip6"]) == ("198.51.100.10", "2001:db8::10")
    listed = api.get(f"{BASE}/devices/oca1/ip-addresses").json["items"]
    assert [a["address"] for a in listed] == ["198.51.100.10/24", "2001:db8::10/64"]
    assert all(a["primary"] for a in listed)
    # moving or deleting a primary address clears the device's primary, as in NetBox
    api.patch(f"{BASE}/ip-addresses/{six['id']}", json={"interface": None}, role="operator")
    assert api.get(f"{BASE}/devices/oca1").json["primary_ip6"] is None
    assert api.delete(f"{BASE}/ip-addresses/{four['id']}", role="operator").status_code == 204
    assert api.get(f"{BASE}/devices/oca1").json["primary_ip4"] is None
    loose = post(api, "ip-addresses", {"address": "198.51.100.11/24"})
    refused = api.post(f"{BASE}/ip-addresses/{loose['id']}/primary", role="operator")
    assert refused.status_code == 422
    missing = api.post(
        f"{BASE}/ip-addresses",
        role="operator",
        json={"address": "198.51.100.12/24", "device": "oca1", "interface": "eth9"},
    )
    assert missing.status_code == 404


def test_vlans_unique_within_their_group(world: None, api: Any) -> None:
    post(
        api, "vlan-groups", {"name": "FRA1 access", "site": "fra1", "min_vid": 100, "max_vid": 199}
    )
    vlan = post(api, "vlans", {"vid": 100, "name": "mgmt", "group": "fra1-access"})
    assert vlan["group"] == "fra1-access"
    dup = api.post(
        f"{BASE}/vlans", json={"vid": 100, "name": "other", "group": "fra1-access"}, role="operator"
    )
    assert dup.status_code == 409
    out = api.post(
        f"{BASE}/vlans", json={"vid": 300, "name": "x", "group": "fra1-access"}, role="operator"
    )
    assert out.status_code == 422 and "outside" in out.json["error"]["message"]
    elsewhere = api.post(
        f"{BASE}/vlans",
        role="operator",
        json={"vid": 101, "name": "x", "group": "fra1-access", "site": "ams1"},
    )
    assert elsewhere.status_code == 422
    post(api, "vlans", {"vid": 100, "name": "mgmt"})  # no group: no clash


def test_trace_from_an_appliance_through_a_circuit(world: None, api: Any) -> None:
    post(api, "providers", {"name": "Telia Carrier", "asn": 1299})
    post(api, "circuit-types", {"name": "Transit"})
    circuit = post(
        api,
        "circuits",
        {
            "cid": "IC-123",
            "provider": "telia-carrier",
            "type": "transit",
            "commit_rate": 10_000_000,
        },
    )
    a = post(
        api,
        "circuit-terminations",
        {"circuit": circuit["id"], "term_side": "A", "site": "fra1", "port_speed": 100_000_000},
    )
    z = post(
        api,
        "circuit-terminations",
        {"circuit": "IC-123", "provider": "Telia Carrier", "term_side": "Z", "site": "ams1"},
    )
    connected = post(
        api,
        f"circuit-terminations/{a['id']}/cable",
        {"device": "oca1", "interface": "eth0", "type": "smf"},
    )
    assert connected["connected_device"] == "oca1" and connected["link_id"]
    shown = api.get(f"{BASE}/circuits/{circuit['id']}").json
    assert (shown["a_site"], shown["z_site"]) == ("fra1", "ams1")

    # the far end has no cable: the trace ends at the circuit's Z side, at its site
    path = api.get(f"{BASE}/devices/oca1/trace?interface=eth0").json
    assert path["complete"] and path["destination"]["site"] == "ams1"
    assert path["destination"]["name"] == "Telia Carrier IC-123 Z"
    assert [h["link"]["type"] for h in path["hops"]] == ["smf", "circuit"]
    assert path["hops"][1]["link"]["cid"] == "IC-123"

    post(api, f"circuit-terminations/{z['id']}/cable", {"device": "rtr1", "interface": "eth1"})
    path = api.get(f"{BASE}/devices/oca1/trace?interface=eth0").json
    assert path["complete"] and path["destination"]["device"] == "rtr1"
    assert path["destination"]["name"] == "eth1" and len(path["hops"]) == 3
    back = api.get(f"{BASE}/devices/rtr1/trace?interface=eth1").json
    assert back["destination"]["device"] == "oca1"
    links = api.get(f"{BASE}/links?limit=10").json["items"]
    assert {(li["a_device"], li["b_kind"]) for li in links} == {
        ("oca1", "circuit_termination"),
        ("rtr1", "circuit_termination"),
    }

    again = api.post(
        f"{BASE}/circuit-terminations/{a['id']}/cable",
        role="operator",
        json={"device": "oca1", "interface": "eth0"},
    )
    assert again.status_code == 201 and again.json["link_id"] == connected["link_id"]
    busy = api.post(
        f"{BASE}/circuit-terminations/{a['id']}/cable",
        role="operator",
        json={"device": "oca1", "interface": "eth1"},
    )
    assert busy.status_code == 409
    dup = api.post(
        f"{BASE}/circuit-terminations",
        role="operator",
        json={"circuit": circuit["id"], "term_side": "A"},
    )
    assert dup.status_code == 409
    assert (
        api.delete(f"{BASE}/circuit-terminations/{a['id']}/cable", role="operator").status_code
        == 200
    )
    assert api.get(f"{BASE}/devices/oca1/trace?interface=eth0").json["complete"] is False
    # deleting the circuit takes its terminations and their cables
    assert api.delete(f"{BASE}/circuits/{circuit['id']}", role="operator").status_code == 204
    assert api.get(f"{BASE}/links").json["count"] == 0
    assert api.get(f"{BASE}/interfaces?device=rtr1&name=eth1").json["items"][0]["link_id"] is None


def test_power_feed_utilisation_from_what_it_powers(world: None, api: Any) -> None:
    post(api, "power-panels", {"site": "fra1", "name": "PP-A", "location_note": "hall 1"})
    single = post(
        api,
        "power-feeds",
        {
            "power_panel": "PP-A",
            "rack": "R1",
            "name": "A1",
            "voltage": 230,
            "amperage": 16,
            "max_utilization": 80,
        },
    )
    three = post(
        api,
        "power-feeds",
        {
            "power_panel": "PP-A",
            "name": "B1",
            "type": "redundant",
            "phase": "three-phase",
            "voltage": 400,
            "amperage": 32,
        },
    )
    assert single["available_power"] == round(230 * 16 * 0.8) == 2944
    assert three["available_power"] == round(400 * 32 * 0.8 * math.sqrt(3))
    post(api, f"power-feeds/{single['id']}/cable", {"device": "oca1", "port": "PSU1"})
    post(api, f"power-feeds/{three['id']}/cable", {"device": "oca1", "port": "PSU2"})
    feed = api.get(f"{BASE}/power-feeds/{single['id']}").json
    assert (feed["allocated_draw"], feed["maximum_draw"]) == (450, 800)
    assert feed["utilization"] == pytest.approx(450 / 2944)
    wrong_rack = api.post(
        f"{BASE}/power-feeds",
        role="operator",
        json={"power_panel": "PP-A", "rack": "R9", "name": "C1"},
    )
    assert wrong_rack.status_code == 404  # R9 is not at the panel's site
    trace = api.get(f"{BASE}/devices/oca1/trace?port=PSU1&kind=power-port").json
    assert trace["destination"]["name"] == "PP-A/A1"


def test_bad_input_and_roles(world: None, api: Any) -> None:
    bad = api.post(f"{BASE}/prefixes", json={"prefix": "10.0.0.0/33"}, role="operator")
    assert bad.status_code == 422 and bad.json["error"]["code"] == "validation_error"
    extra = api.post(f"{BASE}/vrfs", json={"name": "x", "colour": "red"}, role="operator")
    assert extra.status_code == 422
    assert api.post(f"{BASE}/rirs", json={"name": "RIPE"}, role="viewer").status_code == 403
    assert api.get(f"{BASE}/rirs", role="viewer").status_code == 200
    assert api.get(f"{BASE}/rirs", role=None).status_code == 401
    assert api.get(f"{BASE}/prefixes/99999").status_code == 404
    assert api.get(f"{BASE}/prefixes?colour=red").status_code == 422
    assert api.get(f"{BASE}/prefixes?within=nope").status_code == 422
    assert api.get(f"{BASE}/asns/x1").status_code == 404
    assert api.get(f"{BASE}/circuits?provider=nobody").status_code == 404
    reversed_range = api.post(
        f"{BASE}/ip-ranges",
        role="operator",
        json={"start_address": "10.0.0.9/24", "end_address": "10.0.0.1/24"},
    )
    assert reversed_range.status_code == 422
    post(api, "rirs", {"name": "RIPE NCC"})
    asn = post(api, "asns", {"asn": 2906, "rir": "ripe-ncc"})
    assert asn["rir"] == "RIPE NCC"
    used = api.delete(f"{BASE}/rirs/ripe-ncc", role="operator")
    assert used.status_code == 409
    # bulk: all or nothing, every bad item named
    bulk = api.post(
        f"{BASE}/vlans/bulk",
        role="operator",
        json=[{"vid": 10, "name": "a"}, {"vid": 5000, "name": "b"}, {"vid": 11}],
    )
    assert bulk.status_code == 422 and bulk.json["error"]["details"]["count"] == 2
    assert api.get(f"{BASE}/vlans").json["count"] == 0


def test_service_takes_plain_dicts_and_records_changes(world: None) -> None:
    with session_scope() as session:
        vrf = service.create_object(session=session, otype="vrf", data={"name": "oob"})
        made = service.create_object(
            session=session, otype="prefix", data={"prefix": "172.16.0.0/12", "vrf": vrf["id"]}
        )
        service.update_object(
            session=session, otype="prefix", ref=made["id"], data={"status": "reserved"}
        )
        with pytest.raises(InvalidInput):
            service.update_object(
                session=session, otype="prefix", ref=made["id"], data={"prefix": None}
            )
        with pytest.raises(Conflict):
            service.create_object(
                session=session, otype="prefix", data={"prefix": "172.16.0.0/12", "vrf": "oob"}
            )
    with session_scope(readonly=True) as session:
        history = dcim_service.history(session=session, otype="device", ref="oca1")
        assert history
        from popcorn.audit import records_for

        actions = [r.action for r in records_for(session, "prefix", made["id"])]
    assert actions == ["create", "update"]


def test_cli_lists_allocates_and_cables(world: None) -> None:
    from click.testing import CliRunner

    from popcorn.cli import cli
    from popcorn.inventory.cli import group

    cli.add_command(group)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["inventory", *args], catch_exceptions=False)

    assert run("create", "prefix", "prefix=10.20.0.0/16", "status=container").exit_code == 0
    made = run(
        "next-prefix", "10.20.0.0/16", "--length", "24", "--count", "2", "--create", "--json"
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["items"] == ["10.20.0.0/24", "10.20.1.0/24"]
    ips = run("next-ip", "10.20.1.0/24", "--json")
    assert json.loads(ips.output)["items"] == ["10.20.1.1/24"]
    listed = run("list", "prefixes", "status=container", "--json")
    items = json.loads(listed.output)["items"]
    assert [(p["prefix"], p["children"]) for p in items] == [("10.20.0.0/16", 2)]
    table = run("list", "prefixes")
    assert "0.781%" in table.output  # two /24 of a /16, for people
    run("create", "provider", "name=Lumen")
    run("create", "circuit-type", "name=Transit")
    run("create", "circuit", "cid=L-1", "provider=lumen", "type=transit", "commit_rate=10000000")
    assert "10 Gbps" in run("list", "circuits").output
    term = run("create", "circuit-termination", "circuit=L-1", "term_side=A", "site=fra1", "--json")
    ident = str(json.loads(term.output)["id"])
    cabled = run("cable", "circuit-termination", ident, "device=oca1", "interface=eth1", "--json")
    assert cabled.exit_code == 0 and json.loads(cabled.output)["connected_device"] == "oca1"
    bad = runner.invoke(cli, ["inventory", "create", "prefix", "prefix=nope"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    dup = runner.invoke(cli, ["inventory", "create", "prefix", "prefix=10.20.0.0/16"])
    assert dup.exit_code != 0 and "already exists" in dup.output
    assert run("delete", "prefixes", "10.20.0.0/24").exit_code == 0


def test_facade_gives_other_domains_addresses_circuits_and_feeds(world: None, api: Any) -> None:
    from popcorn.inventory import api as inventory_api

    four = post(
        api, "ip-addresses", {"address": "203.0.113.5/24", "device": "oca1", "interface": "eth0"}
    )
    post(api, f"ip-addresses/{four['id']}/primary", None, status=200)
    post(api, "providers", {"name": "DE-CIX"})
    post(api, "circuit-types", {"name": "IX port"})
    post(api, "circuits", {"cid": "DX-9", "provider": "de-cix", "type": "ix-port"})
    a = post(api, "circuit-terminations", {"circuit": "DX-9", "term_side": "A", "site": "fra1"})
    post(api, "circuit-terminations", {"circuit": "DX-9", "term_side": "Z", "site": "ams1"})
    post(api, f"circuit-terminations/{a['id']}/cable", {"device": "oca1", "interface": "eth1"})
    post(api, "power-panels", {"site": "fra1", "name": "PP-1"})
    feed = post(api, "power-feeds", {"power_panel": "PP-1", "name": "F1", "voltage": 230})
    post(api, f"power-feeds/{feed['id']}/cable", {"device": "oca1", "port": "PSU1"})
    with session_scope(readonly=True) as session:
        addresses = inventory_api.device_addresses(session=session, device="oca1")
        primary = inventory_api.primary_address(session=session, device="oca1")
        circuits = inventory_api.device_circuits(session=session, device="oca1")
        feeds = inventory_api.power_feeds(session=session, site="fra1")
        assert inventory_api.power_feeds(session=session, site="ams1") == []
    assert [(a.address, a.primary) for a in addresses] == [("203.0.113.5/24", True)]
    assert primary == "203.0.113.5"
    assert [(c.cid, c.interface, c.far_site) for c in circuits] == [("DX-9", "eth1", "ams1")]
    assert [(f.name, f.allocated_draw) for f in feeds] == [("F1", 450)]


def test_cli_trace_names_the_circuit(world: None, api: Any) -> None:
    from click.testing import CliRunner

    from popcorn.cli import cli
    from popcorn.inventory.cli import group

    cli.add_command(group)
    post(api, "providers", {"name": "Arelion"})
    post(api, "circuit-types", {"name": "Transit"})
    post(api, "circuits", {"cid": "AR-1", "provider": "arelion", "type": "transit"})
    a = post(api, "circuit-terminations", {"circuit": "AR-1", "term_side": "A", "site": "fra1"})
    post(api, "circuit-terminations", {"circuit": "AR-1", "term_side": "Z", "site": "ams1"})
    post(api, f"circuit-terminations/{a['id']}/cable", {"device": "oca1", "interface": "eth0"})
    shown = CliRunner().invoke(cli, ["inventory", "trace", "oca1", "eth0"])
    assert shown.exit_code == 0, shown.output
    assert "circuit Arelion AR-1" in shown.output and "Arelion AR-1 Z @ ams1" in shown.output


def test_file_export_leaves_out_cables_to_feeds_and_reimports(world: None, api: Any) -> None:
    post(api, "power-panels", {"site": "fra1", "name": "PP-1"})
    feed = post(api, "power-feeds", {"power_panel": "PP-1", "name": "F1"})
    post(api, f"power-feeds/{feed['id']}/cable", {"device": "oca1", "port": "PSU1"})
    exported = api.get(f"{BASE}/export?format=yaml")
    assert exported.status_code == 200
    again = api.post(f"{BASE}/import?format=yaml", data=exported.data, role="operator")
    assert again.status_code == 200, again.json
    assert api.get(f"{BASE}/power-feeds/{feed['id']}").json["allocated_draw"] == 450


def test_upsert_by_natural_key_is_idempotent(world: None, api: Any) -> None:
    rows = [
        ("vrf", {"name": "transit", "rd": "65000:9"}),
        ("prefix", {"prefix": "100.64.0.0/10", "vrf": "65000:9", "status": "container"}),
        ("ip_address", {"address": "100.64.0.1/10", "vrf": "65000:9", "device": "oca1",
                        "interface": "eth0"}),
        ("vlan_group", {"name": "AMS", "site": "ams1"}),
        ("vlan", {"vid": 7, "name": "seven", "group": "ams"}),
        ("provider", {"name": "Cogent"}),
        ("circuit_type", {"name": "Transit"}),
        ("circuit", {"cid": "C-1", "provider": "cogent", "type": "transit"}),
        ("circuit_termination", {"circuit": "C-1", "provider": "cogent", "term_side": "A"}),
        ("power_panel", {"site": "fra1", "name": "P"}),
        ("power_feed", {"power_panel": "P", "site": "fra1", "name": "F", "amperage": 16}),
        ("asn", {"asn": 64512}),
        ("rir", {"name": "RFC 6996", "is_private": True}),
        ("ip_range", {"start_address": "100.64.1.1/10", "end_address": "100.64.1.9/10"}),
    ]  # fmt: skip
    with session_scope() as session:
        first = [service.upsert_object(session=session, otype=o, data=d)[1] for o, d in rows]
    events = api.get("/api/v1/audit?limit=1000").json["count"]
    with session_scope() as session:
        second = [service.upsert_object(session=session, otype=o, data=d)[1] for o, d in rows]
        _, created = service.upsert_object(
            session=session, otype="power_feed",
            data={"power_panel": "P", "site": "fra1", "name": "F", "amperage": 32},
        )  # fmt: skip
    assert all(first) and not any(second) and not created
    assert api.get("/api/v1/audit?limit=1000").json["count"] == events + 1
    feed_id = api.get(f"{BASE}/power-feeds").json["items"][0]["id"]
    history = api.get(f"{BASE}/power-feeds/{feed_id}/history", role="viewer").json["items"]
    assert [h["action"] for h in history] == ["create", "update"]
    assert "amperage" in history[1]["diff"]
    feeds = api.get(f"{BASE}/power-feeds").json["items"]
    assert [(f["name"], f["amperage"]) for f in feeds] == [("F", 32)]
    bulk = api.post(
        f"{BASE}/vlans/bulk?mode=upsert",
        role="operator",
        json=[{"vid": 7, "name": "seven", "group": "ams", "status": "reserved"}],
    )
    assert bulk.status_code == 201, bulk.json
    assert api.get(f"{BASE}/vlans").json["items"][0]["status"] == "reserved"


PANEL = """
device_models:
  - manufacturer: Generic
    model: LC panel
    slug: lc-panel
    front-ports:
      - {name: F1, type: lc, rear_port: R1}
    rear-ports:
      - {name: R1, type: lc}
devices:
  - {name: pp1, role: patch-panel, model: lc-panel, site: fra1}
links:
  - {a_device: oca1, a_name: eth1, b_device: pp1, b_kind: front-port, b_name: F1}
"""


def test_trace_through_a_patch_panel_to_a_circuit(world: None, api: Any) -> None:
    assert api.post(f"{BASE}/import?format=yaml", data=PANEL).status_code == 200
    post(api, "providers", {"name": "AMS-IX"})
    post(api, "circuit-types", {"name": "IX port"})
    post(api, "circuits", {"cid": "AMSIX-4", "provider": "ams-ix", "type": "ix-port"})
    a = post(api, "circuit-terminations", {"circuit": "AMSIX-4", "term_side": "A", "site": "fra1"})
    post(api, "circuit-terminations", {"circuit": "AMSIX-4", "term_side": "Z", "site": "ams1"})
    post(api, f"circuit-terminations/{a['id']}/cable", {"device": "pp1", "port": "R1"})
    path = api.get(f"{BASE}/devices/oca1/trace?interface=eth1").json
    steps = [(h["near"]["name"], h["far"]["name"]) for h in path["hops"]]
    assert steps == [
        ("eth1", "F1"),
        ("R1", "AMS-IX AMSIX-4 A"),
        ("AMS-IX AMSIX-4 A", "AMS-IX AMSIX-4 Z"),
    ]
    assert path["complete"] and path["destination"]["site"] == "ams1"
    power = api.post(
        f"{BASE}/circuit-terminations/{a['id']}/cable",
        role="operator",
        json={"device": "oca1", "port": "PSU1"},
    )
    assert power.status_code == 404  # a circuit does not land on a power port
    # deleting the panel takes its cable to the circuit with it
    post(api, f"circuit-terminations/{a['id']}/cable", {"device": "pp1", "port": "R1"})
    assert api.delete(f"{BASE}/devices/pp1", role="operator").status_code == 204
    assert api.get(f"{BASE}/circuit-terminations/{a['id']}").json["link_id"] is None


def test_cli_history_of_a_prefix(world: None, api: Any) -> None:
    from click.testing import CliRunner

    from popcorn.cli import cli
    from popcorn.inventory.cli import group

    cli.add_command(group)
    made = post(api, "prefixes", {"prefix": "10.30.0.0/24"})
    api.patch(f"{BASE}/prefixes/{made['id']}", json={"status": "reserved"}, role="operator")
    shown = CliRunner().invoke(cli, ["inventory", "history", "prefixes", str(made["id"]), "--json"])
    assert shown.exit_code == 0, shown.output
    assert [r["action"] for r in json.loads(shown.output)["items"]] == ["create", "update"]


def test_a_power_panel_stands_in_a_location_of_its_site(world: None, api: Any) -> None:
    post(api, "locations", {"site": "fra1", "slug": "hall-1", "name": "Hall 1"})
    post(api, "locations", {"site": "ams1", "slug": "cage-9", "name": "Cage 9"})
    panel = post(
        api,
        "power-panels",
        {"site": "fra1", "name": "PP-B", "location": "hall-1", "location_note": "north wall"},
    )
    assert (panel["location"], panel["location_note"]) == ("hall-1", "north wall")
    assert api.get(f"{BASE}/power-panels?location=hall-1").json["count"] == 1
    # a location of another site is not one of this panel's
    elsewhere = {"site": "fra1", "name": "PP-C", "location": "cage-9"}
    assert api.post(f"{BASE}/power-panels", json=elsewhere, role="operator").status_code == 404
    moved = api.patch(f"{BASE}/power-panels/{panel['id']}", json={"site": "ams1"}, role="operator")
    assert moved.status_code == 422 and "location" in moved.json["error"]["message"]
    cleared = api.patch(
        f"{BASE}/power-panels/{panel['id']}", json={"location": None}, role="operator"
    )
    assert cleared.status_code == 200 and cleared.json["location"] is None
    assert cleared.json["location_note"] == "north wall"  # the free text stays
