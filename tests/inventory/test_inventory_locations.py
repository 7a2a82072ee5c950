"""Locations: nested within one site, named by racks and devices of that site, through the API,
imports and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from inventory_world import events  # type: ignore[import-not-found]

from popcorn.cli import cli
from popcorn.inventory.cli import group

cli.add_command(group)

BASE = "/api/v1/inventory"


def names(api: Any, otype: str, query: str) -> list[str]:
    response = api.get(f"{BASE}/{otype}?{query}", role="viewer")
    assert response.status_code == 200, response.json
    return sorted(o["name"] for o in response.json["items"])


def test_locations_nest_in_a_site_and_place_racks_and_devices(world: Any, api: Any) -> None:
    body = {"site": "ams1", "slug": "floor-1", "name": "Floor 1"}
    assert api.post(f"{BASE}/locations", role="viewer", json=body).status_code == 403
    floor = api.post(f"{BASE}/locations", role="operator", json=body)
    assert floor.status_code == 201, floor.json
    cage = api.post(
        f"{BASE}/locations",
        role="operator",
        json={"site": "ams1", "slug": "cage-a", "name": "Cage A", "parent": "Floor 1"},
    )
    assert cage.status_code == 201, cage.json
    assert (cage.json["site"], cage.json["parent"]) == ("ams1", "floor-1")
    # The same slug in another site is another location; a parent must be in the same site.
    other = api.post(f"{BASE}/locations", json={"site": "iad1", "slug": "floor-1", "name": "F1"})
    assert other.status_code == 201, other.json
    cross = api.post(
        f"{BASE}/locations",
        json={"site": "bru-isp1", "slug": "room", "name": "Room", "parent": "cage-a"},
    )
    assert cross.status_code == 422 and "unknown location 'cage-a'" in json.dumps(cross.json)
    dup = api.post(f"{BASE}/locations", json={"site": "ams1", "slug": "floor-1", "name": "X"})
    assert dup.status_code == 409

    rack = api.patch(f"{BASE}/racks/{_rack_id(api)}", json={"location": "cage-a"})
    assert rack.status_code == 200, rack.json
    assert (rack.json["location"], rack.json["location_id"]) == ("cage-a", cage.json["id"])
    device = api.patch(f"{BASE}/devices/oca-ams1-01", json={"location": "cage-a"})
    assert device.status_code == 200 and device.json["location"] == "cage-a"
    assert api.patch(f"{BASE}/devices/rtr-ams1-01", json={"location": "floor-1"}).status_code == 200
    wrong = api.patch(f"{BASE}/devices/oca-bru-01", json={"location": "cage-a"})
    assert wrong.status_code == 422
    assert "no location 'cage-a' in site 'bru-isp1'" in json.dumps(wrong.json)
    assert api.get(f"{BASE}/devices/oca-bru-01").json["location"] is None
    # A device in a rack is where its rack is.
    elsewhere = api.patch(f"{BASE}/devices/oca-ams1-02", json={"location": "floor-1"})
    assert elsewhere.status_code == 422
    assert "rack 'R01' is in location 'cage-a'" in json.dumps(elsewhere.json)
    racked = api.post(
        f"{BASE}/devices",
        json={
            "name": "oca-ams1-03",
            "role": "storage-appliance",
            "model": "oca-storage-gen4",
            "site": "ams1",
            "rack": "R01",
            "position": 5,
        },
    )
    assert racked.status_code == 201 and racked.json["location"] == "cage-a"

    # Filters take in sub-locations, by slug, name or id (oca-ams1-02 went with its rack).
    assert names(api, "devices", "location=floor-1") == [
        "oca-ams1-01",
        "oca-ams1-02",
        "oca-ams1-03",
        "rtr-ams1-01",
    ]
    in_cage = ["oca-ams1-01", "oca-ams1-02", "oca-ams1-03"]
    assert names(api, "devices", "location=cage-a") == in_cage
    assert names(api, "devices", f"location_id={cage.json['id']}") == in_cage
    assert names(api, "racks", "location=Floor 1") == ["R01"]
    assert api.get(f"{BASE}/devices?location=nowhere").status_code == 404
    assert api.get(f"{BASE}/sites?location=floor-1").status_code == 422
    in_ams = api.get(f"{BASE}/locations?site=ams1").json["items"]
    assert sorted(x["slug"] for x in in_ams) == ["cage-a", "floor-1"]

    loop = api.patch(f"{BASE}/locations/{floor.json['id']}", json={"parent": "cage-a"})
    assert loop.status_code == 422
    moved = api.patch(f"{BASE}/locations/{cage.json['id']}", json={"site": "iad1"})
    assert moved.status_code == 422 and "another site" in json.dumps(moved.json)
    in_use = api.delete(f"{BASE}/locations/{cage.json['id']}")
    assert in_use.status_code == 409
    assert in_use.json["error"]["details"]["in_use_by"] == "racks"

    history = api.get(f"{BASE}/locations/{cage.json['id']}/history").json["items"]
    assert [h["action"] for h in history] == ["create"]
    created = events("inventory.location.created")
    assert [e.payload["slug"] for e in created] == ["floor-1", "cage-a", "floor-1"]


def _rack_id(api: Any) -> int:
    rack: int = api.get(f"{BASE}/racks?site=ams1").json["items"][0]["id"]
    return rack


def test_import_export_and_cli(tmp_path: Path) -> None:
    path = tmp_path / "places.yaml"
    path.write_text(
        "sites:\n"
        "  - {code: ams1, name: Amsterdam 1}\n"
        "  - {code: lhr1, name: London 1}\n"
        "locations:\n"
        "  - {site: ams1, slug: cage-a, name: Cage A, parent: floor-1}\n"
        "  - {site: ams1, slug: floor-1, name: Floor 1}\n"
        "  - {site: lhr1, slug: floor-1, name: Floor 1, status: planned}\n"
        "racks:\n"
        "  - {site: ams1, name: R01, location: cage-a}\n"
        "  - {site: lhr1, name: R01, location: Floor 1}\n"
    )
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["inventory", *args], catch_exceptions=False)

    imported = run("import", str(path), "--json")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output)["counts"]["locations"]["create"] == 3
    again = json.loads(run("import", str(path), "--json").output)
    assert again["totals"]["create"] == 0 and again["totals"]["update"] == 0

    listed = json.loads(run("list", "locations", "site=ams1", "--json").output)
    assert {x["slug"]: x["parent"] for x in listed["items"]} == {
        "cage-a": "floor-1",
        "floor-1": None,
    }
    racks = json.loads(run("list", "racks", "location=floor-1", "--json").output)
    assert sorted((r["site"], r["location"]) for r in racks["items"]) == [
        ("ams1", "cage-a"),
        ("lhr1", "floor-1"),
    ]
    made = run("create", "location", "site=lhr1", "slug=cage-b", "name=Cage B", "parent=floor-1")
    assert made.exit_code == 0, made.output
    exported = tmp_path / "export.yaml"
    assert run("export", "-o", str(exported)).exit_code == 0
    text = exported.read_text()
    assert "locations:" in text and "location: cage-a" in text
    same = json.loads(run("import", str(exported), "--json").output)
    assert same["totals"]["create"] == 0 and same["totals"]["update"] == 0

    bad = runner.invoke(
        cli, ["inventory", "create", "location", "site=ams1", "slug=x", "name=X", "parent=cage-b"]
    )
    assert bad.exit_code == 1 and "unknown location 'cage-b'" in bad.output
    rack = runner.invoke(cli, ["inventory", "create", "rack", "site=ams1", "name=R9", "location=x"])
    assert rack.exit_code == 1 and "no location 'x' in site 'ams1'" in rack.output
