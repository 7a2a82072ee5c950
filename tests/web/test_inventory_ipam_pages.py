"""Console pages for prefixes, addresses, VLANs, circuits and power feeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from console_kit import Console, text_of

from popcorn.db import session_scope
from popcorn.inventory import service as dcim
from popcorn.inventory.ipam import service

WORLD = """
sites:
  - {code: fra1, name: Frankfurt 1}
device_models:
  - manufacturer: Generic
    model: OCA
    slug: oca
    interfaces:
      - {name: eth0, type: 100gbase-x-qsfp28}
    power-ports:
      - {name: PSU1, maximum_draw: 800, allocated_draw: 460}
devices:
  - {name: oca1, role: storage-appliance, model: oca, site: fra1}
"""


def _world() -> None:
    with session_scope() as session:
        dcim.import_files(session=session, files=[("w.yaml", WORLD)])
    rows: list[tuple[str, dict[str, Any]]] = [
        ("prefix", {"prefix": "10.0.0.0/16", "status": "container"}),
        ("prefix", {"prefix": "10.0.0.0/24", "site": "fra1"}),
        ("ip_address", {"address": "10.0.0.1/24", "device": "oca1", "interface": "eth0"}),
        ("vlan", {"vid": 120, "name": "oca-mgmt", "site": "fra1"}),
        ("provider", {"name": "Lumen"}),
        ("circuit_type", {"name": "Transit"}),
        ("circuit", {"cid": "LX-77", "provider": "lumen", "type": "transit",
                     "commit_rate": 40_000_000}),
        ("circuit_termination", {"circuit": "LX-77", "term_side": "A", "site": "fra1"}),
        ("power_panel", {"site": "fra1", "name": "PP-A"}),
        ("power_feed", {"power_panel": "PP-A", "name": "A1", "voltage": 230, "amperage": 16}),
    ]  # fmt: skip
    made = {}
    with session_scope() as session:
        for otype, data in rows:
            made[otype] = service.create_object(session=session, otype=otype, data=data)["id"]
        service.connect(
            session=session, otype="power_feed", ref="A1", data={"device": "oca1", "port": "PSU1"}
        )
        service.connect(
            session=session,
            otype="circuit_termination",
            ref=made["circuit_termination"],
            data={"device": "oca1", "interface": "eth0"},
        )


def test_ipam_circuit_and_power_pages(console: Callable[[str], Console]) -> None:
    _world()
    ui = console("viewer")
    prefixes = text_of(ui.page("/ui/inventory/prefixes"))
    assert "10.0.0.0/16" in prefixes and "0.391%" in prefixes  # one /24 of a /16
    assert "0.394%" in prefixes  # one address of 254
    addresses = text_of(ui.page("/ui/inventory/ip-addresses?device=oca1"))
    assert "10.0.0.1/24" in addresses and "oca1 eth0" in addresses
    assert "oca-mgmt" in text_of(ui.page("/ui/inventory/vlans?site=fra1"))
    circuits = text_of(ui.page("/ui/inventory/circuits"))
    assert "LX-77" in circuits and "40 Gbps" in circuits
    feeds = text_of(ui.page("/ui/inventory/power-feeds"))
    assert "PP-A/A1" in feeds and "2944 VA" in feeds and "460 W" in feeds and "15.6%" in feeds
    bad = text_of(ui.page("/ui/inventory/prefixes?vrf=nowhere", status=422))
    assert "no VRF 'nowhere'" in bad
    # the device page shows cables to a circuit and a feed, which have no device
    device = text_of(ui.page("/ui/inventory/devices/oca1"))
    assert "Lumen LX-77 A" in device and "PP-A/A1" in device
