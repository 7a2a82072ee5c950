"""`popcorn traffic …`: the same service through the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from popcorn_testing import Processes

from popcorn.cli import cli
from popcorn.traffic.cli import group

cli.add_command(group)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["traffic", *args], catch_exceptions=False)


def ok(*args: str) -> Any:
    result = run(*args)
    assert result.exit_code == 0, result.output
    if "--json" not in args:
        return result.output
    data = json.loads(result.output)
    # a list prints as {"items": [...]}, like every list of the CLI
    return data["items"] if isinstance(data, dict) and list(data) == ["items"] else data


def test_a_generated_world_is_planned_evacuated_and_returned(tmp_path: Path) -> None:
    world = ok("generate", "--groups", "12", "--json")
    assert world["regions"] == ["us-east-1", "us-west-2", "eu-west-1"]
    regions = ok("regions", "list", "kind=cloud", "--json")
    assert [r["instances"] for r in regions] == [10, 10, 10]
    assert len(ok("groups", "list", "--json")) == 12

    plan = ok("plan", "--json")
    assert plan["feasible"] is True
    evac = ok("evacuate", "us-east-1", "--steps", "4", "--json")
    assert evac["feasible"] is True and evac["summary"]["scale_up"]
    table = ok("show", str(evac["id"]), "--png", str(tmp_path / "ramp.png"))
    assert "loads per step" in table
    assert (tmp_path / "ramp.png").read_bytes().startswith(b"\x89PNG")
    back = ok("return", str(evac["id"]), "--json")
    assert back["parent_id"] == evac["id"]
    assert [p["kind"] for p in ok("plans", "--json")] == ["steering", "evacuation", "return"]


def test_errors_are_one_line_and_exit_one(tmp_path: Path) -> None:
    ok("generate", "--groups", "3")
    everything = run("evacuate", "us-east-1", "us-west-2", "eu-west-1")
    assert everything.exit_code == 1
    assert everything.output.strip() == (
        "Error: evacuate: cannot evacuate every region: traffic has nowhere to go (field: evacuate)"
    )
    negative = run("plan", "--demand", "g000=-3")
    assert negative.exit_code == 1 and "must be >= 0" in negative.output
    costs = tmp_path / "costs.csv"
    costs.write_text("group,us-east-1,us-west-2\ng000,1\n")
    wrong = run("costs", "load", str(costs))
    assert wrong.exit_code == 1
    assert "line 2 has 1 costs, expected 2" in wrong.output
    assert run("show", "999").exit_code == 1


def test_regions_groups_costs_and_settings_by_hand(tmp_path: Path) -> None:
    ok("regions", "add", "east", "--capacity", "100")
    ok("regions", "add", "west", "--instances", "4", "--throughput-per-instance", "25")
    ok("regions", "update", "west", "--max-instances", "8", "--set", "route53_target=w.example")
    ok("groups", "add", "a", "--demand", "60", "--kind", "country")
    ok("groups", "add", "b", "--selector", 'demand{g="b"}')
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"a": {"east": 1, "west": 2}}))
    assert "2 cost pair(s) stored" in ok("costs", "load", str(costs))
    matrix = ok("costs", "show", "--json")
    assert matrix["matrix"] == [[1.0, 2.0], [None, None]]
    groups = {g["name"]: g for g in ok("groups", "list", "--json")}
    assert groups["b"]["demand_source"] == "signals"
    ok("groups", "remove", "b")
    west = ok("regions", "list", "name=west", "--json")[0]
    assert west["max_instances"] == 8 and west["route53_target"] == "w.example"
    settings = ok("settings", "--set", "aws_endpoint_url=http://127.0.0.1:4566", "--json")
    assert settings["aws_endpoint_url"] == "http://127.0.0.1:4566"
    bad = run("settings", "--set", "poll_seconds=-1")
    assert bad.exit_code == 1 and "poll_seconds" in bad.output


def test_forecast_and_placement_from_files(tmp_path: Path) -> None:
    history = tmp_path / "history.csv"
    rows = ["value"] + [str(100 + (i % 24) * 3) for i in range(24 * 15)]
    history.write_text("\n".join(rows) + "\n")
    forecast = ok(
        "forecast", "--history", str(history), "--step-seconds", "3600", "--horizon", "6", "--json"
    )
    assert len(forecast["values"]) == 6 and forecast["backtest"]["mape"]["combined"] < 5

    popularity = tmp_path / "pop.csv"
    popularity.write_text("site,title,requests\ns1,t1,10\ns1,t2,8\ns2,t2,3\n")
    sizes = tmp_path / "sizes.csv"
    sizes.write_text("title,size\nt1,3\nt2,1\n")
    storage = tmp_path / "storage.csv"
    storage.write_text("site,storage\ns1,1\ns2,5\n")
    placed = ok(
        "placement",
        "--popularity",
        str(popularity),
        "--sizes",
        str(sizes),
        "--storage",
        str(storage),
        "--json",
    )
    sites = {site["site"]: site["titles"] for site in placed["result"]["sites"]}
    assert sites == {"s1": ["t2"], "s2": ["t2"]}


@pytest.mark.slow
def test_execute_waits_for_the_worker_and_shows_the_steps(
    sandbox: dict[str, Any], processes: Processes, aws_env: dict[str, str]
) -> None:
    processes.env.update(aws_env)
    processes.start("worker")
    evac = ok("evacuate", "us-east-1", "--steps", "3", "--json")
    out = ok("execute", str(evac["id"]), "--dwell-seconds", "0", "--poll-seconds", "0.1", "--wait")
    assert "succeeded" in out and "shift step 3 of 3" in out
    executions = ok("executions", "--json")
    assert [e["status"] for e in executions] == ["succeeded"]
    assert "already ended" in run("cancel", str(executions[0]["id"])).output
