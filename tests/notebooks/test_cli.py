"""`popcorn notebooks …`: the same checks and answers as the API, `--json` on lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbkit
from click.testing import CliRunner
from console_kit import Console  # type: ignore[import-not-found]

from popcorn.cli import cli
from popcorn.notebooks import execute
from popcorn.notebooks.cli import group

cli.add_command(group)


def call(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["notebooks", *args])
    return result


def test_define_run_show_archive_and_publish_from_the_cli(
    tmp_path: Path, client: Any, tokens: dict[str, str]
) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text('{"cells": 3}')
    refused = call("create", "bad", "--notebook", str(bad))
    assert refused.exit_code == 1 and "not a valid notebook" in refused.output
    assert "Traceback" not in refused.output
    good = tmp_path / "greet.ipynb"
    good.write_text(json.dumps(nbkit.GREETING))
    unknown = call("create", "greet", "--notebook", str(good), "-p", "whom=x")
    assert unknown.exit_code == 1 and "unknown parameter(s) whom" in unknown.output

    made = call(
        "create",
        "greet",
        "--notebook",
        str(good),
        "--cron",
        "0 6 * * 1-5",
        "--timezone",
        "Europe/Amsterdam",
        "-p",
        "times=2",
        "--json",
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["parameters"] == {"times": 2}
    listed = json.loads(call("definitions", "--json").output)
    assert [d["name"] for d in listed["items"]] == ["greet"]
    assert "greet" in call().output  # the group lists definitions by default

    started = json.loads(call("run", "greet", "-p", "who=cli", "--json").output)
    assert started["status"] == "queued"
    execute.run_attempt(started["id"])
    shown = json.loads(call("show", str(started["id"]), "--json").output)
    assert shown["outputs"]["message"] == "hello cli x2"
    runs = json.loads(call("runs", "--definition", "greet", "--json").output)
    assert [r["id"] for r in runs["items"]] == [started["id"]]
    out = tmp_path / "out.ipynb"
    assert call("output", str(started["id"]), "-o", str(out)).exit_code == 0
    assert "hello cli x2" in out.read_text()
    assert call("cancel", str(started["id"])).exit_code == 1

    assert call("archive", "team/greet.ipynb", str(good)).exit_code == 0
    versions = json.loads(call("versions", "team/greet.ipynb", "--json").output)
    assert [v["version"] for v in versions["items"]] == [1]
    published = json.loads(call("publish", "team/greet.ipynb", "--json").output)
    assert (
        published["slug"] == "team-greet"
        and published["link"] == "/ui/notebooks/published/team-greet"
    )
    assert json.loads(call("published", "--json").output)["items"][0]["version"] == 1

    # the stable link shows it read-only in the console, in a sandbox
    console = Console(client, tokens["viewer"])
    assert "team/greet.ipynb, version 1" in console.page(published["link"])
    content = console.get(published["link"] + "/content.html")
    assert content.status_code == 200 and "sandbox" in content.headers["Content-Security-Policy"]
    assert "celltag_parameters" in content.get_data(as_text=True)  # the notebook, rendered
