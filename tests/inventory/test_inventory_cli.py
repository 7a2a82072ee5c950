"""`popcorn inventory …` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from inventory_world import WORLD  # type: ignore[import-not-found]

from popcorn.cli import cli
from popcorn.inventory.cli import group

cli.add_command(group)


@pytest.fixture
def run() -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(cli, ["inventory", *args], catch_exceptions=False)

    return invoke


@pytest.fixture
def imported(tmp_path: Path, run: Any) -> Path:
    path = tmp_path / "world.yaml"
    path.write_text(WORLD)
    result = run("import", str(path), "--json")
    assert result.exit_code == 0, result.output
    return path


def test_import_dry_run_then_real_then_nothing_changes(tmp_path: Path, run: Any) -> None:
    path = tmp_path / "world.yaml"
    path.write_text(WORLD)
    dry = run("import", str(path), "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["counts"]["devices"]["create"] == 5
    assert json.loads(run("devices", "--json").output)["count"] == 0
    real = run("import", str(path))
    assert real.exit_code == 0 and "imported in" in real.output
    again = json.loads(run("import", str(path), "--json").output)
    assert again["totals"]["create"] == 0 and again["totals"]["update"] == 0


def test_import_errors_list_every_row_and_exit_1(tmp_path: Path, run: Any, imported: Path) -> None:
    bad = tmp_path / "devices.csv"
    bad.write_text(
        "name,role,model,site\nx1,router,juniper-mx204,nowhere\n"
        "x2,rooter,juniper-mx204,ams1\nx3,router,juniper-mx204,ams1\n"
    )
    result = CliRunner().invoke(cli, ["inventory", "import", str(bad)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert "line 2" in lines[0] and "unknown site 'nowhere'" in lines[0]
    assert "line 3" in lines[1] and "role" in lines[1]
    assert lines[-1] == "error: 2 problem(s); nothing was written"
    listed = json.loads(run("devices", "--json", "q=x3").output)
    assert listed["count"] == 0


def test_queries_show_and_trace(run: Any, imported: Path) -> None:
    devices = json.loads(run("devices", "--site", "ams1", "--role", "router", "--json").output)
    assert [d["name"] for d in devices["items"]] == ["rtr-ams1-01"]
    region = json.loads(run("devices", "--region", "europe", "status=maintenance", "--json").output)
    assert [d["name"] for d in region["items"]] == ["oca-ams1-02"]
    table = run("devices", "--model", "oca-storage-gen4")
    assert "NFX-0003" in table.output and "3 of 3 devices" in table.output
    sites = json.loads(run("sites", "--region", "benelux", "--json").output)
    assert {s["code"] for s in sites["items"]} == {"ams1", "bru-isp1"}
    models = run("models", "--manufacturer", "juniper")
    assert "juniper-mx204" in models.output
    shown = json.loads(run("show", "oca-ams1-01", "--json").output)
    assert shown["device"]["serial"] == "NFX-0001"
    assert {c["name"] for c in shown["components"]} == {"disk0", "disk1", "nic1", "optic0", "fan1"}
    trace = run("trace", "oca-ams1-01", "eth0")
    assert "trace (complete)" in trace.output and "rtr-ams1-01:et-0/0/0" in trace.output
    listed = json.loads(run("list", "interfaces", "device=rtr-iad1-01", "--json").output)
    assert [i["name"] for i in listed["items"]] == ["et-0/0/0", "et-0/0/1"]


def test_create_update_status_fail_delete(run: Any, imported: Path) -> None:
    created = run(
        "create",
        "device",
        "name=rtr-bru-01",
        "role=router",
        "model=juniper-mx204",
        "site=bru-isp1",
        "throughput_gbps=100G",
        "--json",
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["throughput_gbps"] == 100.0
    dup = run(
        "create", "device", "name=rtr-bru-01", "role=router", "model=juniper-mx204", "site=bru-isp1"
    )
    assert dup.exit_code == 1 and "already exists" in dup.output
    updated = json.loads(
        run("update", "device", "rtr-bru-01", "os_version=22.4R1", "--json").output
    )
    assert updated["os_version"] == "22.4R1"
    assert run("status", "rtr-bru-01", "maintenance", "--reason", "linecard").exit_code == 0
    bad = run("status", "rtr-bru-01", "planned")
    assert bad.exit_code == 1 and "cannot go from maintenance to planned" in bad.output
    failed = json.loads(run("fail", "oca-ams1-01", "disk0", "--json").output)
    assert failed["status"] == "failed"
    report = run("report", "failed")
    assert "oca-ams1-01" in report.output and "disk0 (disk)" in report.output
    assert "throughput_gbps" in run("report", "capacity", "--by", "region").output
    history = run("history", "device", "rtr-bru-01")
    assert "update" in history.output
    noted = run(
        "journal",
        "device",
        "rtr-bru-01",
        "--add",
        "linecard 2 reseated",
        "--kind",
        "success",
        "--json",
    )
    assert json.loads(noted.output)["items"][0]["comments"] == "linecard 2 reseated"
    deleted = run("delete", "device", "rtr-bru-01")
    assert deleted.exit_code == 0 and "deleted 1 devices" in deleted.output
    in_use = run("delete", "site", "ams1")
    assert in_use.exit_code == 1 and "still has" in in_use.output


def test_export_to_file_and_reimport(tmp_path: Path, run: Any, imported: Path) -> None:
    out = tmp_path / "devices.csv"
    result = run("export", "--type", "devices", "--format", "csv", "-o", str(out), "site=ams1")
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 4
    again = json.loads(run("import", str(out), "--json").output)
    assert again["counts"] == {"devices": {"create": 0, "update": 0, "unchanged": 3}}
    everything = run("export", "--format", "json")
    assert set(json.loads(everything.output)) >= {"sites", "devices", "components", "links"}
