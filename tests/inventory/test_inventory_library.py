"""A device-type library checkout as it is: valid files in, newer fields warned, broken ones named.

The fixture under fixtures/devicetype-library copies the shapes of real library
files: routers and switches with power draw and weights, a storage chassis with
module and device bays, module types with weights, a typo'd key, a field the
library added later, a patch panel whose front port names a missing rear port
and a file with a wrong type.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from popcorn.cli import cli
from popcorn.db import session_scope
from popcorn.inventory import models as m
from popcorn.inventory import service
from popcorn.inventory.cli import group

cli.add_command(group)
FIXTURES = Path(__file__).parent / "fixtures"
SKIPPED = ["device-types/Generic/lc-24-panel.yaml", "device-types/Dell/poweredge-r650.yaml"]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "devicetype-library"
    shutil.copytree(FIXTURES / "devicetype-library", root)
    return root


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["inventory", "import", *args], catch_exceptions=False)


def _models() -> dict[str, m.DeviceModel]:
    with session_scope(readonly=True) as session:
        return {d.slug: d for d in session.query(m.DeviceModel)}


def test_library_imports_every_valid_file_and_names_the_skipped(checkout: Path) -> None:
    result = run(str(checkout))
    assert result.exit_code == 1
    err = result.stderr
    assert "device-types/Generic/lc-24-panel.yaml:14: templates.front-ports[2].rear_port" in err
    assert "no rear port 'R9'" in err
    assert "device-types/Dell/poweredge-r650.yaml:6: u_height" in err
    assert f"2 file(s) skipped: {', '.join(SKIPPED)}" in err
    assert "warning: device-types/Arista/dcs-7050sx3-48yc8.yaml:30: interfaces[2].descripton" in err
    assert "warning: module-types/Cisco/nim-es2-8.yaml:13: module-bays" in err
    assert "6 of 8 library file(s) imported, 3 warning(s)" in err
    assert "Traceback" not in result.output

    models = _models()
    assert sorted(models) == [
        "arista-dcs-7050sx3-48yc8",
        "juniper-mx204",
        "supermicro-sys-1029u-tn10rt",
    ]
    mx = models["juniper-mx204"]
    assert (mx.weight, mx.weight_unit, mx.airflow) == (9.89, "kg", "front-to-rear")
    with session_scope(readonly=True) as session:
        modules = {t.model: t for t in session.query(m.ModuleType)}
        assert (modules["MPC10E-15C-MRATE"].weight, modules["MPC10E-15C-MRATE"].weight_unit) == (
            10.4,
            "kg",
        )
        pem = (
            session.query(m.ComponentTemplate)
            .filter_by(module_type_id=modules["MPC10E-15C-MRATE"].id, kind="power-port")
            .one()
        )
        assert pem.extra == {"maximum_draw": 785, "allocated_draw": 700}
        arista_if = (
            session.query(m.ComponentTemplate)
            .filter_by(device_model_id=models["arista-dcs-7050sx3-48yc8"].id, name="Ethernet2")
            .one()
        )
        assert arista_if.description == ""  # the typo'd key was dropped, the port kept
        # Per file all or nothing: the broken panel left no model and no template behind.
        assert session.query(m.ComponentTemplate).filter_by(name="R1").count() == 0


def test_rerun_changes_nothing_and_json_lists_the_skipped(checkout: Path) -> None:
    run(str(checkout))
    again = run(str(checkout), "--json")
    assert again.exit_code == 1
    report = json.loads(again.stdout)
    assert report["totals"]["create"] == 0 and report["totals"]["update"] == 0
    assert report["skipped_files"] == SKIPPED
    assert report["imported_files"] == 6 and report["files"] == 8
    assert {w["file"] for w in report["warnings"]} == {
        "device-types/Arista/dcs-7050sx3-48yc8.yaml",
        "module-types/Cisco/nim-es2-8.yaml",
        "module-types/Generic/psu-1100w.yaml",
    }


def test_a_clean_library_exits_0(checkout: Path) -> None:
    for name in SKIPPED:
        (checkout / name).unlink()
    result = run(str(checkout))
    assert result.exit_code == 0, result.stderr
    assert "skipped" not in result.stderr


def test_strict_keeps_all_or_nothing(checkout: Path) -> None:
    result = run(str(checkout), "--strict")
    assert result.exit_code == 1
    assert "nothing was written" in result.stderr
    assert _models() == {}


def test_dry_run_writes_nothing_but_reports(checkout: Path) -> None:
    result = run(str(checkout), "--dry-run", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["counts"]["device_models"]["create"] == 3
    assert _models() == {}


def test_a_plain_file_beside_the_library_stays_all_or_nothing(
    checkout: Path, tmp_path: Path
) -> None:
    sites = tmp_path / "devices.yaml"
    sites.write_text(
        "sites:\n  - {code: ams1, name: Amsterdam 1}\n"
        "devices:\n  - {name: edge1, role: router, site: ams1,\n"
        "     model: generic-24-port-lc-patch-panel}\n"
    )
    result = run(str(checkout), str(sites))
    assert result.exit_code == 1
    assert "nothing was written" in result.stderr
    assert _models() == {}


def test_the_checkouts_own_json_schema_judges_its_files(checkout: Path) -> None:
    shutil.copytree(FIXTURES / "library-schema", checkout / "schema")
    mpc = checkout / "module-types/Juniper/mpc10e-15c.yaml"
    mpc.write_text(mpc.read_text().replace("type: 100gbase-x-qsfp28\n", "type: 100gbase-qsfp\n", 1))
    with session_scope() as session:
        found = service.import_library(session=session, paths=[checkout])
    assert found.skipped == [
        "device-types/Dell/poweredge-r650.yaml",
        "module-types/Juniper/mpc10e-15c.yaml",
        "device-types/Generic/lc-24-panel.yaml",
    ]
    problems = {(p.file, p.line): p.message for p in found.problems}
    assert "'one' is not of type 'number'" in problems[("device-types/Dell/poweredge-r650.yaml", 6)]
    assert "interfaces[0].type" in problems[("module-types/Juniper/mpc10e-15c.yaml", 15)]
    warnings = {(w.file, w.line): w.message for w in found.warnings}
    assert warnings[("device-types/Arista/dcs-7050sx3-48yc8.yaml", 30)] == (
        "interfaces[2].descripton: not in the library schema, ignored"
    )
    # Known to the library but with no place in Popcorn: kept out, said so.
    assert warnings[("module-types/Generic/psu-1100w.yaml", 11)] == (
        "power-ports[0]._is_power_source: not kept by Popcorn, ignored"
    )
