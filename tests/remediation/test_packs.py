"""Packs: discovered from Popcorn, entry points and the packs directory; listed with steps."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from popcorn.remediation import packs
from popcorn.remediation.cli import group
from popcorn.remediation.engine import Approval, Pack, Runbook, StepContext, step

pytestmark = pytest.mark.usefixtures("test_packs")


@pytest.fixture
def rescan() -> Iterator[None]:
    yield
    packs.reload()


def test_shipped_and_directory_packs_are_listed_with_versions_and_steps(api: Any) -> None:
    listed = api.get("/api/v1/remediation/packs", role="viewer").json
    by_name = {p["name"]: p for p in listed["items"]}
    assert {"storage", "service", "testing"} <= set(by_name)
    assert by_name["testing"]["version"] == "1.0.0"
    assert by_name["testing"]["source"].endswith("packs/testing_pack.py")
    disk = next(r for r in by_name["storage"]["runbooks"] if r["name"] == "storage.disk_failure")
    assert [(s["name"], s["kind"]) for s in disk["steps"]] == [
        ("check_disks", "diagnose"),
        ("decide", "decide"),
        ("take_out_of_service", "remediate"),
        ("shift_traffic", "remediate"),
        ("verify", "verify"),
    ]
    assert disk["target"] == "required"
    assert disk["inputs_schema"]["properties"]["disk"]
    gated = api.get("/api/v1/remediation/runbooks/testing.gated").json
    restart = gated["steps"][1]
    assert restart["approval"]["roles"] == ["operator"]
    assert restart["approval"]["payload_schema"]["properties"]["ticket"]["pattern"] == r"^CHG-\d+$"
    assert api.get("/api/v1/remediation/runbooks/nope.nope").status_code == 404
    runbooks = api.get("/api/v1/remediation/runbooks").json
    assert "service.high_error_rate" in [r["name"] for r in runbooks["items"]]


def test_a_broken_pack_file_is_reported_and_the_others_still_load(
    test_packs: Path, rescan: None
) -> None:
    broken = test_packs / "broken_pack.py"
    broken.write_text("import no_such_module_anywhere\n")
    try:
        found = packs.reload()
        assert "testing" in found.packs
        assert any(
            e["source"].endswith("broken_pack.py") and "no_such_module_anywhere" in e["error"]
            for e in found.errors
        )
    finally:
        broken.unlink()


def test_packs_from_an_entry_point_group(tmp_path: Path, rescan: None) -> None:
    """An installed distribution declares `[popcorn.packs] net = netpack:pack`."""
    (tmp_path / "netpack.py").write_text(
        "from popcorn.remediation.engine import Pack, Runbook, step\n"
        "pack = Pack('net', version='2.3.1')\n"
        "@pack.runbook\n"
        "class Flap(Runbook):\n"
        "    name = 'link_flap'\n"
        "    @step(kind='diagnose')\n"
        "    def look(self, ctx):\n"
        "        return {}\n"
    )
    dist = tmp_path / "netpack-2.3.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: netpack\nVersion: 2.3.1\n")
    (dist / "entry_points.txt").write_text("[popcorn.packs]\nnet = netpack:pack\n")
    sys.path.insert(0, str(tmp_path))
    try:
        found = packs.reload()
        assert found.packs["net"].version == "2.3.1"
        assert found.packs["net"].source == "entry point net (netpack:pack)"
        assert packs.get_runbook("net.link_flap").full_name() == "net.link_flap"
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("netpack", None)


def test_a_pack_registered_from_code_and_a_duplicate_name(rescan: None) -> None:
    extra = Pack("extra", version="0.1")

    @extra.runbook
    class Hello(Runbook):
        name = "hello"

        @step(kind="verify")
        def say(self, ctx: StepContext) -> dict[str, str]:
            return {"hello": "world"}

    packs.register_pack(extra)
    assert packs.get_runbook("extra.hello") is Hello
    clash = Pack("testing", version="9.9")
    packs.register_pack(clash, source="plugin")
    found = packs.reload()
    assert found.packs["testing"].version == "1.0.0"
    assert any("already loaded" in e["error"] for e in found.errors)
    packs._extra.clear()


def test_runbook_definitions_are_checked_when_written() -> None:
    pack = Pack("checks", version="1")
    with pytest.raises(ValueError, match="step kind"):
        step(kind="fix")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no steps"):

        @pack.runbook
        class Empty(Runbook):
            name = "empty"

    with pytest.raises(ValueError, match="not an earlier step"):

        class Backwards(Runbook):
            name = "backwards"

            @step(kind="decide", uses=("later",))
            def first(self, ctx: StepContext) -> None:
                return None

            @step(kind="diagnose")
            def later(self, ctx: StepContext) -> None:
                return None

    with pytest.raises(ValueError, match="unknown role"):
        Approval(roles=("boss",))
    with pytest.raises(ValueError, match="pack name"):
        Pack("Bad Name", version="1")

    class NotAModel:
        pass

    with pytest.raises(ValueError, match="Inputs must be a pydantic model"):

        @pack.runbook
        class Wrong(Runbook):
            name = "wrong"
            Inputs = NotAModel  # type: ignore[assignment]

            @step()
            def a(self, ctx: StepContext) -> None:
                return None

    class Fine(BaseModel):
        x: int = 0

    @pack.runbook
    class Good(Runbook):
        name = "good"
        Inputs = Fine

        @step()
        def a(self, ctx: StepContext) -> None:
            return None

    assert Good.full_name() == "checks.good"


def test_cli_lists_packs_and_shows_a_runbook() -> None:
    runner = CliRunner()
    listed = runner.invoke(group, ["packs", "--json"])
    assert listed.exit_code == 0
    names = [p["name"] for p in json.loads(listed.output)["packs"]]
    assert {"storage", "service", "testing"} <= set(names)
    shown = runner.invoke(group, ["runbooks", "show", "storage.disk_failure"])
    assert shown.exit_code == 0 and "take_out_of_service" in shown.output
    table = runner.invoke(group, ["runbooks", "list"])
    assert "testing.flaky" in table.output
    missing = runner.invoke(group, ["runbooks", "show", "nope"])
    assert missing.exit_code == 1 and "no runbook named 'nope'" in missing.output


def test_packs_dir_setting_reads_several_directories_from_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rescan: None
) -> None:
    """`packs_dir` in popcorn.toml names directories joined with `:`; each pack there loads."""
    dirs = [tmp_path / "team-a", tmp_path / "team-b"]
    for index, folder in enumerate(dirs):
        folder.mkdir()
        (folder / f"team{index}.py").write_text(
            "from popcorn.remediation.engine import Pack\n"
            f"pack = Pack('team{index}', version='1.0.{index}')\n"
        )
    config = tmp_path / "popcorn.toml"
    config.write_text(f'[popcorn]\npacks_dir = "{dirs[0]}:{dirs[1]}"\n')
    monkeypatch.setenv("POPCORN_CONFIG", str(config))
    monkeypatch.delenv("POPCORN_PACKS_DIR", raising=False)
    from popcorn.config import reset_settings

    reset_settings()
    try:
        assert packs.packs_dirs() == dirs
        found = packs.reload()
        assert found.packs["team0"].version == "1.0.0"
        assert found.packs["team1"].version == "1.0.1"
    finally:
        monkeypatch.delenv("POPCORN_CONFIG")
        reset_settings()
