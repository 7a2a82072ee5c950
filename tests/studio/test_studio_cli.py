"""`popcorn studio ...`: lists with --json, find with JSON filters, create, status set."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from popcorn.cli import cli
from popcorn.studio.cli import group

cli.add_command(group)


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, ["studio", *args])
    return result


def test_lists_find_create_and_status(show: dict[str, Any]) -> None:
    shots = run("shots", "--project", "Popcorn Show", "--sequence", "SEQ020", "--json")
    assert shots.exit_code == 0, shots.output
    assert [s["code"] for s in json.loads(shots.output)["items"]] == [
        "SEQ020_0010",
        "SEQ020_0020",
        "SEQ020_0030",
    ]
    table = run("shots", "--project", "Popcorn Show")
    assert table.exit_code == 0 and "1030" in table.output
    projects = json.loads(run("projects", "--json").output)["items"]
    assert [p["name"] for p in projects] == ["Popcorn Show"]
    filters = json.dumps(
        [["entity.Shot.code", "starts_with", "SEQ010"], ["step.Step.short_name", "is", "anim"]]
    )
    found = run(
        "find", "Task", "--filters", filters, "--fields", "content,entity.Shot.code", "--json"
    )
    assert sorted(t["entity.Shot.code"] for t in json.loads(found.output)["items"]) == [
        "SEQ010_0010",
        "SEQ010_0020",
        "SEQ010_0030",
    ]
    proj = json.dumps(show["proj"])
    created = run("create", "Playlist", f"project={proj}", "code=dailies", "--json")
    assert created.exit_code == 0, created.output
    assert (
        json.loads(run("playlists", "--project", "Popcorn Show", "--json").output)["items"][0][
            "code"
        ]
        == "dailies"
    )
    shot_id = str(show["shots"][0]["id"])
    moved = run("status", "set", "Shot", shot_id, "ip", "--json")
    assert json.loads(moved.output)["sg_status_list"] == "ip"
    refused = run("status", "set", "Shot", shot_id, "bogus")
    assert refused.exit_code == 1 and "sg_status_list" in refused.output
    bad = run("find", "Shot", "--filters", "[[")
    assert bad.exit_code == 1 and "--filters" in bad.output
    assert json.loads(run("versions", "--json").output)["items"] == []
    assert "Version" in run("status", "workflows").output
