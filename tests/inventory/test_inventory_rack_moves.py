"""A moved rack takes its devices with it (site and location), as NetBox does, through the API,
the service and imports; a move that would break a rule is refused and writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from inventory_world import events  # type: ignore[import-not-found]

from popcorn.cli import cli
from popcorn.db import session_scope
from popcorn.errors import Conflict, InvalidInput
from popcorn.inventory import service
from popcorn.inventory.cli import group

cli.add_command(group)

BASE = "/api/v1/inventory"
RACKED = ("oca-ams1-01", "oca-ams1-02")  # in rack R01 at ams1 (inventory_world)


def where(api: Any, device: str) -> tuple[str, str | None, str | None]:
    found = api.get(f"{BASE}/devices/{device}", role="viewer")
    assert found.status_code == 200, found.json
    return found.json["site"], found.json["rack"], found.json["location"]


def ams1_id(api: Any) -> int:
    site: int = api.get(f"{BASE}/sites/ams1").json["id"]
    return site


def rack_id(api: Any) -> int:
    rack: int = api.get(f"{BASE}/racks?site=ams1&name=R01").json["items"][0]["id"]
    return rack


def location(api: Any, site: str, slug: str) -> None:
    made = api.post(f"{BASE}/locations", json={"site": site, "slug": slug, "name": slug.title()})
    assert made.status_code == 201, made.json


def test_devices_follow_their_rack_to_another_site(world: Any, api: Any) -> None:
    ident = rack_id(api)
    moved = api.patch(f"{BASE}/racks/{ident}", role="operator", json={"site": "iad1"})
    assert moved.status_code == 200, moved.json
    assert moved.json["site"] == "iad1"
    for name in RACKED:
        assert where(api, name) == ("iad1", "R01", None)
    assert where(api, "rtr-ams1-01") == ("ams1", None, None)  # not in the rack: stays
    in_iad = api.get(f"{BASE}/devices?site=iad1", role="viewer").json["items"]
    assert sorted(d["name"] for d in in_iad) == [*RACKED, "rtr-iad1-01"]

    # The rack's record names the devices that moved; each device has its own record.
    rack_history = api.get(f"{BASE}/racks/{ident}/history").json["items"]
    assert rack_history[-1]["action"] == "update"
    assert rack_history[-1]["after"]["moved_devices"] == list(RACKED)
    device = api.get(f"{BASE}/devices/oca-ams1-01").json
    device_history = api.get(f"{BASE}/devices/{device['id']}/history").json["items"]
    assert device_history[-1]["action"] == "update"
    assert device_history[-1]["diff"]["site_id"] == [ams1_id(api), moved.json["site_id"]]
    assert set(device_history[-1]["diff"]) == {"site_id"}
    assert device_history[-1]["request_id"] == rack_history[-1]["request_id"]
    updated = events("inventory.rack.updated")
    assert updated[-1].payload["moved_devices"] == list(RACKED)
    added = [e.payload for e in events("inventory.device.added_to_site")]
    assert {"device": "oca-ams1-02", "site": "iad1"} in added
    removed = [e.payload for e in events("inventory.device.removed_from_site")]
    assert {"device": "oca-ams1-02", "site": "ams1"} in removed


def test_devices_follow_their_rack_between_locations(world: Any, api: Any) -> None:
    location(api, "ams1", "cage-a")
    location(api, "ams1", "cage-b")
    location(api, "iad1", "hall-1")
    ident = rack_id(api)
    assert api.patch(f"{BASE}/racks/{ident}", json={"location": "cage-a"}).status_code == 200
    for name in RACKED:
        assert where(api, name) == ("ams1", "R01", "cage-a")
    # Within the site, to another location.
    assert api.patch(f"{BASE}/racks/{ident}", json={"location": "cage-b"}).status_code == 200
    for name in RACKED:
        assert where(api, name) == ("ams1", "R01", "cage-b")
    # To another site and a location there, in one change.
    both = api.patch(f"{BASE}/racks/{ident}", json={"site": "iad1", "location": "hall-1"})
    assert both.status_code == 200, both.json
    for name in RACKED:
        assert where(api, name) == ("iad1", "R01", "hall-1")
    # Out of any location: its devices too.
    assert api.patch(f"{BASE}/racks/{ident}", json={"location": None}).status_code == 200
    for name in RACKED:
        assert where(api, name) == ("iad1", "R01", None)


def test_invalid_rack_moves_are_refused_and_write_nothing(world: Any, api: Any) -> None:
    location(api, "ams1", "cage-a")
    location(api, "iad1", "hall-1")
    ident = rack_id(api)
    assert api.patch(f"{BASE}/racks/{ident}", json={"location": "cage-a"}).status_code == 200
    audit_before = api.get("/api/v1/audit?limit=1000").json["count"]

    def refused(body: dict[str, Any], status: int, message: str) -> None:
        answer = api.patch(f"{BASE}/racks/{ident}", json=body)
        assert answer.status_code == status, answer.json
        assert message in answer.json["error"]["message"]
        for name in RACKED:
            assert where(api, name) == ("ams1", "R01", "cage-a")
        rack = api.get(f"{BASE}/racks/{ident}").json
        assert (rack["site"], rack["location"]) == ("ams1", "cage-a")

    # A location of another site is not a place for this rack.
    refused({"location": "hall-1"}, 422, "no location 'hall-1' in site 'ams1'")
    # A rack in a location cannot change site without a location there (or none).
    refused({"site": "iad1"}, 422, "give its location there")
    refused({"site": "nowhere"}, 422, "unknown site 'nowhere'")
    # The target site already has a rack of that name.
    assert api.post(f"{BASE}/racks", json={"site": "iad1", "name": "R01"}).status_code == 201
    audit_before += 1
    refused({"site": "iad1", "location": "hall-1"}, 409, "already")
    assert api.get("/api/v1/audit?limit=1000").json["count"] == audit_before


def test_power_feed_keeps_its_rack_at_the_panel_site(world: Any, api: Any) -> None:
    panel = api.post(f"{BASE}/power-panels", json={"site": "ams1", "name": "PP-A"})
    assert panel.status_code == 201, panel.json
    feed = api.post(
        f"{BASE}/power-feeds", json={"power_panel": "PP-A", "rack": "R01", "name": "A1"}
    )
    assert feed.status_code == 201, feed.json
    ident = rack_id(api)
    answer = api.patch(f"{BASE}/racks/{ident}", json={"site": "iad1"})
    assert answer.status_code == 422, answer.json
    assert "power feed 'A1'" in answer.json["error"]["message"]
    assert where(api, "oca-ams1-01") == ("ams1", "R01", None)
    # Within its site the rack still moves freely.
    location(api, "ams1", "cage-a")
    assert api.patch(f"{BASE}/racks/{ident}", json={"location": "cage-a"}).status_code == 200


def test_service_import_and_cli_moves(world: Any) -> None:
    with session_scope() as session:
        rack = service.get_object(session=session, otype="rack", ref=_rack(session))
        service.update_object(session=session, otype="rack", ref=rack.id, data={"site": "iad1"})
    with session_scope(readonly=True) as session:
        for name in RACKED:
            assert service.get_device(session=session, ref=name).site.code == "iad1"

    # An import that moves the rack and, in the same file, keeps a device at the old site
    # with that rack is refused whole.
    rows = {
        "racks": [{"site": "iad1", "name": "R01", "id": rack.id, "location": None}],
        "devices": [{"name": "oca-ams1-01", "site": "iad1", "rack": "R01"}],
    }
    with session_scope() as session:
        rows["racks"][0]["site"] = "bru-isp1"
        with pytest.raises(InvalidInput) as refused:
            service.import_files(session=session, files=[("move.json", json.dumps(rows).encode())])
        assert "rack 'R01' is in site 'bru-isp1'" in json.dumps(refused.value.details)
    with session_scope(readonly=True) as session:
        for name in RACKED:
            assert service.get_device(session=session, ref=name).site.code == "iad1"
    with session_scope() as session:
        rows["devices"][0]["site"] = "bru-isp1"
        service.import_files(session=session, files=[("move.json", json.dumps(rows).encode())])
    with session_scope(readonly=True) as session:
        for name in RACKED:
            assert service.get_device(session=session, ref=name).site.code == "bru-isp1"

    runner = CliRunner()
    moved = runner.invoke(
        cli, ["inventory", "update", "rack", str(rack.id), "site=ams1"], catch_exceptions=False
    )
    assert moved.exit_code == 0, moved.output
    with session_scope(readonly=True) as session:
        for name in RACKED:
            assert service.get_device(session=session, ref=name).site.code == "ams1"
    with session_scope() as session, pytest.raises((Conflict, InvalidInput)):
        service.update_object(
            session=session, otype="rack", ref=rack.id, data={"location": "nowhere"}
        )


def _rack(session: Any) -> int:
    from sqlalchemy import select

    from popcorn.inventory import models as m

    found = session.scalar(select(m.Rack.id).where(m.Rack.name == "R01"))
    assert found is not None
    return int(found)


def test_a_large_bulk_move_counts_the_devices_in_its_summary(
    world: Any, api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from popcorn.inventory import bulk

    monkeypatch.setattr(bulk, "PER_OBJECT_LIMIT", 0)  # every batch counts as large
    ident = rack_id(api)
    moved = api.patch(f"{BASE}/racks/bulk", json=[{"id": ident, "site": "iad1"}])
    assert moved.status_code == 200, moved.json
    assert moved.json["counts"]["devices"]["update"] == 2
    for name in RACKED:
        assert where(api, name) == ("iad1", "R01", None)
    summary = api.get("/api/v1/audit?object_type=import&limit=1000").json["items"][-1]
    assert summary["after"]["devices_moved_with_racks"] == 2


def test_a_device_moved_into_a_rack_takes_the_racks_location(world: Any, api: Any) -> None:
    location(api, "ams1", "cage-a")
    ident = rack_id(api)
    assert api.patch(f"{BASE}/racks/{ident}", json={"location": "cage-a"}).status_code == 200
    # rtr-ams1-01 is at ams1 in no rack and no location: racked, it is in the rack's cage
    device = api.get(f"{BASE}/devices/rtr-ams1-01").json
    placed = api.patch(f"{BASE}/devices/{device['id']}", role="operator", json={"rack": "R01"})
    assert placed.status_code == 200, placed.json
    assert where(api, "rtr-ams1-01") == ("ams1", "R01", "cage-a")
    # naming another location than the rack's is refused, and nothing changes
    location(api, "ams1", "cage-b")
    other = api.patch(f"{BASE}/devices/{device['id']}", json={"location": "cage-b"})
    assert other.status_code == 422, other.json
    assert "cage-a" in json.dumps(other.json)
    assert where(api, "rtr-ams1-01") == ("ams1", "R01", "cage-a")
    # out of the rack, it keeps the location it was in
    unracked = api.patch(f"{BASE}/devices/{device['id']}", json={"rack": None})
    assert unracked.status_code == 200, unracked.json
    assert where(api, "rtr-ams1-01") == ("ams1", None, "cage-a")
