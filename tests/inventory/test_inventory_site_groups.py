"""Site groups: nested like regions, named by a site, through the API, imports and the CLI."""

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


def codes(api: Any, query: str) -> list[str]:
    response = api.get(f"{BASE}/sites?{query}", role="viewer")
    assert response.status_code == 200, response.json
    return sorted(s["code"] for s in response.json["items"])


def test_groups_nest_filter_sites_and_keep_history(world: Any, api: Any) -> None:
    assert (
        api.post(f"{BASE}/site-groups", role="viewer", json={"slug": "x", "name": "X"}).status_code
        == 403
    )
    top = api.post(f"{BASE}/site-groups", role="operator", json={"slug": "isp", "name": "ISP"})
    assert top.status_code == 201, top.json
    sub = api.post(
        f"{BASE}/site-groups",
        role="operator",
        json={"slug": "isp-eu", "name": "ISP Europe", "parent": "ISP", "description": "EU ISPs"},
    )
    assert sub.status_code == 201 and sub.json["parent"] == "isp"
    assert api.patch(f"{BASE}/sites/bru-isp1", json={"group": "isp-eu"}).status_code == 200
    assert api.patch(f"{BASE}/sites/iad1", json={"group": "isp"}).status_code == 200

    site = api.get(f"{BASE}/sites/bru-isp1").json
    assert (site["group"], site["group_id"]) == ("isp-eu", sub.json["id"])
    assert codes(api, "site_group=isp") == ["bru-isp1", "iad1"]  # with its sub-groups
    assert codes(api, "site_group=isp-eu") == ["bru-isp1"]
    assert codes(api, f"site_group_id={sub.json['id']}") == ["bru-isp1"]
    devices = api.get(f"{BASE}/devices?site_group=isp-eu").json["items"]
    assert {d["site"] for d in devices} == {"bru-isp1"}
    unknown = api.get(f"{BASE}/sites?site_group=nowhere")
    assert unknown.status_code == 404 and "site group" in unknown.json["error"]["message"]
    children = api.get(f"{BASE}/site-groups?parent_id={top.json['id']}").json["items"]
    assert [g["slug"] for g in children] == ["isp-eu"]

    loop = api.patch(f"{BASE}/site-groups/isp", json={"parent": "isp-eu"})
    assert loop.status_code == 422 and api.get(f"{BASE}/site-groups/isp").json["parent"] is None
    in_use = api.delete(f"{BASE}/site-groups/isp-eu")
    assert in_use.status_code == 409
    assert in_use.json["error"]["details"]["in_use_by"] == "sites"

    history = api.get(f"{BASE}/site-groups/isp-eu/history").json["items"]
    assert [h["action"] for h in history] == ["create"]
    created = [e for e in events("inventory.site_group.created")]
    assert [e.payload["slug"] for e in created] == ["isp", "isp-eu"]
    assert api.patch(f"{BASE}/sites/bru-isp1", json={"group": None}).status_code == 200
    assert api.delete(f"{BASE}/site-groups/isp-eu").status_code == 204


def test_import_and_cli(tmp_path: Path) -> None:
    path = tmp_path / "groups.yaml"
    path.write_text(
        "site_groups:\n"
        "  - {slug: tier-1-eu, name: Tier 1 EU, parent: tier-1}\n"
        "  - {slug: tier-1, name: Tier 1}\n"
        "sites:\n"
        "  - {code: ams1, name: Amsterdam 1, group: tier-1-eu}\n"
        "  - {code: lhr1, name: London 1}\n"
    )
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, ["inventory", *args], catch_exceptions=False)

    imported = run("import", str(path), "--json")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.output)["counts"]["site_groups"]["create"] == 2
    again = json.loads(run("import", str(path), "--json").output)
    assert again["totals"]["create"] == 0 and again["totals"]["update"] == 0

    listed = json.loads(run("list", "site-groups", "--json").output)
    assert {g["slug"]: g["parent"] for g in listed["items"]} == {
        "tier-1": None,
        "tier-1-eu": "tier-1",
    }
    sites = json.loads(run("sites", "--site-group", "tier-1", "--json").output)
    assert [s["code"] for s in sites["items"]] == ["ams1"]
    made = run("create", "site-group", "slug=edge", "name=Edge", "parent=tier-1", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["parent"] == "tier-1"
    exported = tmp_path / "export.yaml"
    assert run("export", "-o", str(exported)).exit_code == 0
    text = exported.read_text()
    assert "site_groups:" in text and "group: tier-1-eu" in text
    same = json.loads(run("import", str(exported), "--json").output)
    assert same["totals"]["create"] == 0 and same["totals"]["update"] == 0
    bad = runner.invoke(
        cli, ["inventory", "create", "site-group", "slug=x", "name=X", "parent=nope"]
    )
    assert bad.exit_code == 1 and "unknown site group 'nope'" in bad.output
