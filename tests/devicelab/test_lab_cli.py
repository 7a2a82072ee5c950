"""`popcorn devicelab …`: lists with --json, catalog import, queries, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from lab_kit import catalog

from popcorn.cli import cli
from popcorn.devicelab.cli import group

cli.add_command(group)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["devicelab", *args])
    return result.exit_code, result.output


def test_catalog_import_query_and_json_lists(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("tests:\n" + "".join(f"  - {json.dumps(t)}\n" for t in catalog()))
    code, out = run("tests", "import", str(path))
    assert code == 0 and "4 created" in out
    code, out = run("tests", "--where", "component:playback and not tag:hdr", "--json")
    assert code == 0
    assert [t["name"] for t in json.loads(out)["items"]] == ["playback.start"]
    code, out = run("tests")
    assert "15.0 min" in out  # login.long, 900 s, shown for people
    code, out = run("devices", "add", "tv-x", "--platform", "tv", "--hdr", "hdr10")
    assert code == 0
    code, out = run("devices", "--where", "hdr:hdr10", "--json")
    assert [d["name"] for d in json.loads(out)["items"]] == ["tv-x"]


def test_bad_input_is_one_line_and_a_failure(tmp_path: Path) -> None:
    code, out = run("query", "component:playback or (tag:x")
    assert code == 1 and "position 28" in out and "Traceback" not in out
    run("devices", "add", "tv-y", "--platform", "tv")
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps({"tests": [{"name": "dv.only", "requires": {"hdr": "dolby_vision"}}]})
    )
    assert run("tests", "import", str(path))[0] == 0
    code, out = run("runs", "start", "--app-version", "1.0", "--query", "name:dv.only")
    assert code == 1 and "dv.only" in out and "no device" in out
    code, out = run("runs", "--json")
    assert json.loads(out) == {"items": []}


def test_selection_without_a_promoted_model_runs_everything_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"tests": catalog()}))
    assert run("tests", "import", str(path))[0] == 0
    run("devices", "add", "tv-z", "--platform", "tv", "--hdr", "dolby_vision")
    args = ["runs", "start", "--app-version", "2.0", "--suite", "smoke", "--select", "predicted"]
    code, out = run(*args)
    assert code == 0 and "no promoted test-failure model: every test runs" in out
    started = json.loads(run(*args, "--json")[1])
    assert started["selection"]["fallback"].startswith("no promoted test-failure model")
    code, out = run("predict", "--build", str(started["build_id"]), "--suite", "smoke")
    assert code == 1 and "popcorn ml run test-failure" in out and "Traceback" not in out
