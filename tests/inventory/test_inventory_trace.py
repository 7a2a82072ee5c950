"""Cable traces through patch panels, the way NetBox users expect them."""

from __future__ import annotations

from typing import Any

import pytest

from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory import service

CABLING = """
sites:
  - {code: fra1, name: Frankfurt 1}
device_models:
  - manufacturer: Generic
    model: Server 2x25G
    slug: server-2x25g
    interfaces:
      - {name: eth0, type: 25gbase-x-sfp28}
      - {name: eth1, type: 25gbase-x-sfp28}
  - manufacturer: Generic
    model: LC panel
    slug: lc-panel
    front-ports:
      - {name: F1, type: lc, rear_port: R1, rear_port_position: 1}
      - {name: F2, type: lc, rear_port: R1, rear_port_position: 2}
      - {name: F3, type: lc, rear_port: R2}
    rear-ports:
      - {name: R1, type: mpo, positions: 2}
      - {name: R2, type: lc}
devices:
  - {name: srv1, role: server, model: server-2x25g, site: fra1}
  - {name: srv2, role: server, model: server-2x25g, site: fra1}
  - {name: srv3, role: server, model: server-2x25g, site: fra1}
  - {name: pp1, role: patch-panel, model: lc-panel, site: fra1}
  - {name: pp2, role: patch-panel, model: lc-panel, site: fra1}
links:
  # two links through pp1's single-position rear port R2
  - {a_device: srv1, a_name: eth0, b_device: pp1, b_kind: front-port, b_name: F3}
  - {a_device: pp1, a_kind: rear-port, a_name: R2, b_device: srv2, b_name: eth0, type: smf}
  # three links over an MPO trunk: position 2 on both panels
  - {a_device: srv1, a_name: eth1, b_device: pp1, b_kind: front-port, b_name: F2}
  - {a_device: pp1, a_kind: rear-port, a_name: R1, b_device: pp2, b_kind: rear-port, b_name: R1}
  - {a_device: pp2, a_kind: front-port, a_name: F2, b_device: srv3, b_name: eth1}
  # dangling: patched into pp2's position 1 with nothing behind it
  - {a_device: srv3, a_name: eth0, b_device: pp2, b_kind: front-port, b_name: F1}
"""


@pytest.fixture
def cabled(api: Any) -> None:
    response = api.post("/api/v1/inventory/import?format=yaml", data=CABLING)
    assert response.status_code == 200, response.json


def hops(path: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (
            f"{h['near']['device']}:{h['near']['name']}",
            f"{h['far']['device']}:{h['far']['name']}" if h["far"] else "-",
        )
        for h in path["hops"]
    ]


def test_trace_through_two_links_both_ways(cabled: None) -> None:
    with session_scope(readonly=True) as session:
        forward = service.trace(session=session, device="srv1", name="eth0")
        back = service.trace(session=session, device="srv2", name="eth0")
    assert hops(forward) == [("srv1:eth0", "pp1:F3"), ("pp1:R2", "srv2:eth0")]
    assert forward["complete"] and forward["destination"]["device"] == "srv2"
    assert hops(back) == [("srv2:eth0", "pp1:R2"), ("pp1:F3", "srv1:eth0")]
    assert back["destination"]["name"] == "eth0" and back["destination"]["device"] == "srv1"


def test_trace_keeps_the_position_across_a_trunk(cabled: None, api: Any) -> None:
    path = api.get("/api/v1/inventory/devices/srv1/trace?interface=eth1").json
    assert hops(path) == [("srv1:eth1", "pp1:F2"), ("pp1:R1", "pp2:R1"), ("pp2:F2", "srv3:eth1")]
    assert path["complete"] is True
    iface = api.get("/api/v1/inventory/interfaces?device=srv3&name=eth1").json["items"][0]
    back = api.get(f"/api/v1/inventory/interfaces/{iface['id']}/trace").json
    assert hops(back) == [("srv3:eth1", "pp2:F2"), ("pp2:R1", "pp1:R1"), ("pp1:F2", "srv1:eth1")]


def test_incomplete_and_unconnected_traces(cabled: None, api: Any) -> None:
    dangling = api.get("/api/v1/inventory/devices/srv3/trace?interface=eth0").json
    assert dangling["complete"] is False and dangling["destination"] is None
    assert hops(dangling)[0] == ("srv3:eth0", "pp2:F1")
    lonely = api.get("/api/v1/inventory/devices/srv2/trace?interface=eth1").json
    assert lonely["hops"] == [{"near": lonely["origin"], "link": None, "far": None}]
    assert lonely["complete"] is False
    assert api.get("/api/v1/inventory/devices/srv2/trace?interface=eth7").status_code == 404
    panel = api.get("/api/v1/inventory/devices/pp1/trace?port=R1&kind=rear-port").json
    assert panel["destination"]["device"] == "pp2"


def test_cable_rules(cabled: None) -> None:
    taken = "links:\n  - {a_device: srv2, a_name: eth0, b_device: srv3, b_name: eth1}\n"
    twice = (
        "links:\n  - {a_device: srv2, a_name: eth1, b_device: pp2, b_kind: front-port,"
        " b_name: F3}\n  - {a_device: srv2, a_name: eth1, b_device: pp2, b_kind:"
        " rear-port, b_name: R2}\n"
    )
    itself = "links:\n  - {a_device: srv2, a_name: eth1, b_device: srv2, b_name: eth1}\n"
    for doc, field, message in (
        (taken, "a_name", "already connected"),
        (twice, "a_name", "already used by line 2"),
        (itself, "b_name", "two different ends"),
    ):
        with session_scope() as session, pytest.raises(InvalidInput) as caught:
            service.import_files(session=session, files=[("links.yaml", doc)])
        error = caught.value.details["errors"][0]
        assert (error["field"], message in error["message"]) == (field, True), error
