"""`popcorn events …` and `popcorn rules …` as users type them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from popcorn import jobs
from popcorn.cli import cli
from popcorn.db import session_scope
from popcorn.events.cli import extra_groups, group

for command in (group, *extra_groups):
    cli.add_command(command)
RULES_DIR = Path(__file__).resolve().parents[2] / "src" / "popcorn" / "events" / "rules.d"


def popcorn(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run_jobs() -> None:
    for _ in range(10):
        with session_scope() as session:
            ids = list(
                session.scalars(select(jobs.JobRecord.id).where(jobs.JobRecord.status == "pending"))
            )
        if not ids:
            return
        for job_id in ids:
            jobs.execute(job_id)


@pytest.fixture
def alert_file(tmp_path: Path, alertmanager_payload: dict[str, Any]) -> Path:
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(alertmanager_payload))
    return path


def test_shipped_rule_packs_load_and_explain_an_alert(alert_file: Path) -> None:
    loaded = popcorn("rules", "load", str(RULES_DIR))
    assert loaded.exit_code == 0, loaded.output
    assert "5 created, 0 updated, 0 unchanged" in loaded.output
    again = popcorn("rules", "load", str(RULES_DIR), "--json")
    assert json.loads(again.output)["unchanged"] == 5

    listed = json.loads(popcorn("rules", "list", "--json").output)["items"]
    assert {r["name"]: r["mode"] for r in listed}["alertmanager/disk-failure"] == "monitor"

    tested = popcorn("rules", "test", str(alert_file))
    assert tested.exit_code == 0, tested.output
    lines = tested.output.splitlines()
    assert lines[0].endswith("(alertmanager.alert.firing): 1 rule(s) match")
    assert "MATCH  alertmanager/incident: matched" in tested.output
    assert '-> incident: {"key": "alertmanager/8e1ac4f2d9b3c7a0"' in tested.output
    verbose = popcorn("rules", "test", str(alert_file), "-v")
    assert "no match  alertmanager/high-error-rate: condition failed" in verbose.output


def test_rules_test_with_candidate_rules_and_rule_history(tmp_path: Path, alert_file: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "disk.yaml").write_text(
        "name: disk\nevents: [alertmanager.alert.firing]\n"
        "conditions: {labels.severity: warning}\n"
        "actions: [{type: runbook, params: {runbook: '{{ labels.nope }}'}}]\n"
    )
    result = popcorn("rules", "test", str(alert_file), "--rules", str(rules), "--json")
    (first, second, third) = json.loads(result.output)["items"]
    assert [r["matched"] for r in second["rules"]] == [True]
    assert second["rules"][0]["actions"][0]["error"].startswith("actions[0].params.runbook")
    assert first["rules"][0]["matched"] is False and third["rules"][0]["matched"] is False

    assert popcorn("rules", "load", str(rules)).exit_code == 0
    (rules / "disk.yaml").write_text(
        (rules / "disk.yaml").read_text().replace("warning", "critical")
    )
    assert "0 created, 1 updated" in popcorn("rules", "load", str(rules)).output
    shown = popcorn("rules", "show", "disk", "--json")
    data = json.loads(shown.output)
    assert data["active_version"] == 2 and [v["version"] for v in data["versions"]] == [2, 1]
    assert "warning" in popcorn("rules", "show", "disk", "--version", "1").output
    assert popcorn("rules", "activate", "disk", "1").exit_code == 0
    assert popcorn("rules", "deactivate", "disk").output == "rule 'disk' deactivated\n"
    assert json.loads(popcorn("rules", "list", "--json").output)["items"] == []


def test_a_broken_rule_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: ok\nevents: [x]\nconditions:\n  labels.a: {between: [1, 2]}\n")
    result = CliRunner().invoke(cli, ["rules", "load", str(path)])
    assert result.exit_code == 1
    assert f"{path}:4" in result.output and "unknown operator 'between'" in result.output
    assert json.loads(popcorn("rules", "list", "--json", "--all").output)["items"] == []


def test_send_list_and_show(alert_file: Path, tmp_path: Path) -> None:
    sent = popcorn("events", "send", str(alert_file), "--json")
    assert [e["status"] for e in json.loads(sent.output)["items"]] == ["accepted"] * 3
    again = popcorn("events", "send", "-", input=alert_file.read_text())
    assert "0 accepted, 3 duplicate(s)" in again.output
    built = popcorn(
        "events", "send", "--type", "deploy.finished", "--id", "d-1", "--label", "region=eu",
        "--data", "version=2", "--json",
    )  # fmt: skip
    (item,) = json.loads(built.output)["items"]
    assert item["event_id"] == "d-1" and item["status"] == "accepted"

    listed = json.loads(popcorn("events", "list", "--label", "severity:critical", "--json").output)[
        "items"
    ]
    assert [e["labels"]["instance"] for e in listed] == ["oca-ams-003:9100", "oca-ams-017:9100"]
    assert len(json.loads(popcorn("events", "list", "-q", "91%", "--json").output)["items"]) == 1
    recent = json.loads(popcorn("events", "list", "--since", "1h", "--json").output)["items"]
    assert [e["event_id"] for e in recent] == ["d-1"]
    assert (
        len(
            json.loads(popcorn("events", "list", "--status", "processed", "--json").output)["items"]
        )
        == 4
    )

    shown = json.loads(popcorn("events", "show", "d-1", "--json").output)
    assert shown["data"] == {"version": 2} and shown["labels"] == {"region": "eu"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"specversion": "1.0", "id": "x", "source": "s", "type": 5}))
    result = CliRunner().invoke(cli, ["events", "send", str(bad)])
    assert result.exit_code == 1 and "type: must be a string" in result.output


def test_incidents_and_dead_letters(tmp_path: Path, alert_file: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "- name: inc\n  events: [alertmanager.alert.firing]\n"
        "  actions: [{type: incident,\n"
        "             params: {title: '{{ subject }}', key: '{{ labels.instance }}'}}]\n"
        "- name: broken-job\n  events: [alertmanager.alert.firing]\n"
        "  conditions: {labels.severity: critical}\n"
        "  actions: [{type: job, params: {job: core.missing}}]\n"
    )
    popcorn("rules", "load", str(rules))
    popcorn("events", "send", str(alert_file))
    run_jobs()
    incidents = json.loads(popcorn("events", "incidents", "list", "--json").output)["items"]
    assert [i["key"] for i in incidents] == ["oca-ams-017:9100", "oca-ams-021:9100"]
    detail = json.loads(
        popcorn("events", "incidents", "show", str(incidents[0]["id"]), "--json").output
    )
    assert [e["change"] for e in detail["events"]] == ["opened"]
    assert popcorn("events", "incidents", "resolve", str(incidents[0]["id"])).exit_code == 0
    open_now = json.loads(
        popcorn("events", "incidents", "list", "--status", "open", "--json").output
    )["items"]
    assert len(open_now) == 1

    dead = json.loads(popcorn("events", "dead-letters", "list", "--json").output)["items"]
    assert [(d["rule_name"], d["error"]) for d in dead] == [
        ("broken-job", "params.job: no registered task named 'core.missing'")
    ]
    replay = CliRunner().invoke(cli, ["events", "dead-letters", "replay", str(dead[0]["id"])])
    assert replay.exit_code == 0 and "failed" in replay.output  # still no such task
    text = popcorn("events", "show", str(dead[0]["event_id"])).output
    assert "rule broken-job v1: acted" in text and "rule inc v1: acted" in text


def test_secrets_and_settings() -> None:
    secret = popcorn(
        "events", "secrets", "set", "default", "--allow", "hooks.example.net"
    ).output.strip()
    assert len(secret) >= 32
    assert (
        json.loads(popcorn("events", "secrets", "list", "--json").output)["items"][0]["name"]
        == "default"
    )
    settings = json.loads(popcorn("events", "settings", "--retention-days", "30", "--json").output)
    assert settings["retention_days"] == 30
    result = CliRunner().invoke(cli, ["events", "settings", "--retention-days", "0"])
    assert result.exit_code == 1 and "retention_days" in result.output
