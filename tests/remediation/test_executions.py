"""Executions: each step recorded; retries back off; timeouts, stops, dry runs, cancel, rerun."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from popcorn_testing import wait_until
from remediation_kit import detail, drain, events, start, steps

from popcorn.audit import records_for
from popcorn.db import session_scope
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.remediation import service
from popcorn.remediation.cli import group

pytestmark = pytest.mark.usefixtures("test_packs")


def test_a_runbook_runs_its_steps_in_order_and_records_each(api: Any) -> None:
    created = api.post(
        "/api/v1/remediation/executions",
        role="operator",
        json={"runbook": "testing.trivial", "inputs": {"n": 21}},
    )
    assert created.status_code == 202, created.json
    execution_id = created.json["id"]
    assert created.json["status"] == "pending"
    assert created.json["created_by"] == "token:test-operator"
    drain()
    shown = api.get(f"/api/v1/remediation/executions/{execution_id}", role="viewer").json
    assert shown["status"] == "succeeded"
    assert [(s["name"], s["kind"], s["status"]) for s in shown["steps"]] == [
        ("look", "diagnose", "succeeded"),
        ("think", "decide", "succeeded"),
        ("act", "remediate", "succeeded"),
    ]
    look, think, act = shown["steps"]
    assert look["outputs"] == {"n": 21}
    assert look["logs"][0]["message"] == "looking" and look["logs"][0]["data"] == {"n": 21}
    assert think["outputs"] == {"double": 42}
    assert think["inputs"]["uses"] == ["look"]
    assert act["outputs"] == {"acted": True, "saw": ["look", "think"]}
    assert act["inputs"]["inputs"]["n"] == 21
    for step in shown["steps"]:
        assert step["attempts"] == 1
        started = datetime.fromisoformat(step["started_at"])
        assert datetime.fromisoformat(step["ended_at"]) >= started
        assert step["duration_ms"] >= 0
    assert shown["started_at"] and shown["ended_at"]


def test_domain_events_and_audit_follow_the_execution() -> None:
    execution_id = start("testing.trivial", {"n": 2})
    drain()
    seen = [
        (t, p.get("step"), p.get("status")) for t, oid, p in events() if oid == str(execution_id)
    ]
    assert seen[0] == ("remediation.execution.started", None, "running")
    assert ("remediation.step.finished", "look", "succeeded") in seen
    assert ("remediation.testing.acted", "act", None) in seen
    assert seen[-1] == ("remediation.execution.finished", None, "succeeded")
    with session_scope(readonly=True) as session:
        changes = records_for(session, "remediation_execution", execution_id)
        assert next(c.action for c in changes) == "create"
        assert changes[-1].after == {"status": "succeeded", "error": ""}


def test_unknown_runbooks_and_bad_inputs_are_refused_clearly(api: Any) -> None:
    unknown = api.post(
        "/api/v1/remediation/executions", json={"runbook": "testing.nope", "inputs": {}}
    )
    assert unknown.status_code == 404
    assert "testing.trivial" in unknown.json["error"]["details"]["available"]
    bad = api.post(
        "/api/v1/remediation/executions",
        json={"runbook": "testing.trivial", "inputs": {"n": "many"}},
    )
    assert bad.status_code == 422
    assert "inputs.n" in bad.json["error"]["message"]
    extra = api.post(
        "/api/v1/remediation/executions",
        json={"runbook": "testing.trivial", "inputs": {"typo": 1}},
    )
    assert extra.status_code == 422 and "inputs.typo" in extra.json["error"]["details"]["fields"]
    no_target = api.post(
        "/api/v1/remediation/executions", json={"runbook": "testing.per_device", "inputs": {}}
    )
    assert no_target.status_code == 422 and "target" in no_target.json["error"]["message"]
    wrong_target = api.post(
        "/api/v1/remediation/executions",
        json={"runbook": "testing.single", "inputs": {}, "target": {"device": "x"}},
    )
    assert wrong_target.status_code == 422
    bad_scope = api.post(
        "/api/v1/remediation/executions",
        json={"runbook": "testing.per_device", "inputs": {}, "target": {"rack": "r1"}},
    )
    assert bad_scope.status_code == 422
    with session_scope(readonly=True) as session:
        assert service.list_executions(session=session, params=service.ListParams()).count == 0


def test_a_failing_step_is_retried_with_exponential_backoff(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    execution_id = start("testing.flaky", {"marker": str(marker), "fail_times": 2})
    drain()
    found = steps(execution_id)
    assert detail(execution_id)["status"] == "succeeded"
    assert found["shaky"]["attempts"] == 3
    retries = [
        entry["message"] for entry in found["shaky"]["logs"] if "retrying" in entry["message"]
    ]
    assert retries == [
        "attempt 1 failed: RuntimeError: planned failure 1; retrying in 0.05s",
        "attempt 2 failed: RuntimeError: planned failure 2; retrying in 0.1s",
    ]
    assert found["last"]["outputs"] == {"shaky": {"runs": 3}}


def test_a_step_out_of_retries_fails_the_execution_and_can_be_rerun_from_it(
    tmp_path: Path, api: Any
) -> None:
    marker = tmp_path / "marker"
    execution_id = start("testing.flaky", {"marker": str(marker), "fail_times": 3})
    drain()
    failed = detail(execution_id)
    assert failed["status"] == "failed"
    assert failed["error"] == "step 'shaky' failed: RuntimeError: planned failure 3"
    found = steps(execution_id)
    assert found["shaky"]["status"] == "failed" and found["shaky"]["attempts"] == 3
    assert found["last"]["status"] == "skipped"
    rerun = api.post(f"/api/v1/remediation/executions/{execution_id}/rerun", json={})
    assert rerun.status_code == 202, rerun.json
    assert rerun.json["rerun_of"] == execution_id
    drain()
    again = steps(rerun.json["id"])
    assert detail(rerun.json["id"])["status"] == "succeeded"
    assert again["first"]["reused"] and again["first"]["status"] == "succeeded"
    assert again["shaky"]["outputs"] == {"runs": 4}
    assert marker.read_text().splitlines().count("first") == 1  # not run again
    assert (
        api.post(
            f"/api/v1/remediation/executions/{execution_id}/rerun", json={"from_step": "nope"}
        ).status_code
        == 422
    )
    assert (
        api.post(
            f"/api/v1/remediation/executions/{execution_id}/rerun", json={"from_step": "last"}
        ).status_code
        == 422
    )  # shaky had failed
    running = start("testing.trivial")
    assert api.post(f"/api/v1/remediation/executions/{running}/rerun", json={}).status_code == 409


def test_timeouts_bad_outputs_and_early_stops() -> None:
    timed_out = start("testing.quick", {"sleep": 5})
    stopped = start("testing.quick", {"n": 0})
    garbage = start("testing.quick", {"n": -1})
    drain()
    hurry = steps(timed_out)["hurry"]
    assert detail(timed_out)["status"] == "failed"
    assert hurry["attempts"] == 2 and hurry["error"] == "timed out after 0.3s"
    assert detail(stopped)["status"] == "succeeded"
    found = steps(stopped)
    assert found["fix"]["status"] == "skipped"
    assert found["fix"]["error"] == "not needed: nothing to do"
    assert "stopped the runbook: nothing to do" in found["maybe_stop"]["logs"][-1]["message"]
    bad = steps(garbage)["maybe_stop"]
    assert bad["status"] == "failed" and bad["attempts"] == 1
    assert "returned int" in bad["error"]


def test_dry_run_diagnoses_but_skips_remediation() -> None:
    execution_id = start("testing.trivial", {"n": 1}, dry_run=True)
    drain()
    found = steps(execution_id)
    assert detail(execution_id)["status"] == "succeeded"
    assert found["look"]["status"] == "succeeded" and found["think"]["status"] == "succeeded"
    assert found["act"]["status"] == "skipped"
    assert found["act"]["error"] == "dry run: remediate steps are skipped"
    assert not [e for e in events("remediation.testing.") if e[1] == str(execution_id)]


def test_cancel_stops_a_pending_or_running_execution(tmp_path: Path, api: Any) -> None:
    pending = start("testing.trivial")
    canceled = api.post(f"/api/v1/remediation/executions/{pending}/cancel", role="operator")
    assert canceled.status_code == 200 and canceled.json["status"] == "canceled"
    drain()
    assert detail(pending)["status"] == "canceled"
    assert {s["status"] for s in detail(pending)["steps"]} == {"canceled"}
    again = api.post(f"/api/v1/remediation/executions/{pending}/cancel")
    assert again.status_code == 409

    marker = tmp_path / "marker"
    running = start("testing.slow", {"marker": str(marker), "sleep": 30})
    worker = threading.Thread(target=drain)
    worker.start()
    wait_until(lambda: marker.exists() and "wait" in marker.read_text())
    assert api.post(f"/api/v1/remediation/executions/{running}/cancel").json["cancel_requested"]
    worker.join(timeout=20)
    assert not worker.is_alive()
    shown = detail(running)
    assert shown["status"] == "canceled"
    found = {s["name"]: s["status"] for s in shown["steps"]}
    assert found == {"before": "succeeded", "wait": "canceled", "after": "canceled"}


def test_executions_list_with_filters_and_paging(api: Any) -> None:
    ids = [start("testing.trivial", {"n": i}) for i in range(3)]
    start("testing.gated")
    drain()
    listed = api.get("/api/v1/remediation/executions?runbook=testing.trivial&limit=2").json
    assert listed["count"] == 3 and [e["id"] for e in listed["items"]] == ids[:2]
    waiting = api.get("/api/v1/remediation/executions?status=waiting_approval").json
    assert [e["runbook"] for e in waiting["items"]] == ["testing.gated"]
    assert api.get("/api/v1/remediation/executions?colour=red").status_code == 422
    assert api.get("/api/v1/remediation/executions/999").status_code == 404


def test_start_runbook_is_what_other_domains_call() -> None:
    with session_scope() as session:
        execution = service.start_runbook(
            session=session,
            runbook="trivial",  # bare name, unique across packs
            inputs={"n": 5},
            target=None,
            trigger={"source": "events", "rule": "r1", "event_id": 7},
            dry_run=False,
        )
        assert execution.runbook == "testing.trivial" and execution.status == "pending"
        execution_id = execution.id
    drain()
    shown = detail(execution_id)
    assert shown["trigger"] == {"source": "events", "rule": "r1", "event_id": 7}
    started = [p for t, _, p in events() if t == "remediation.execution.started"]
    assert started[0]["trigger"]["rule"] == "r1"
    with session_scope() as session, pytest.raises(NotFound):
        service.start_runbook(session=session, runbook="nope", inputs={})
    with session_scope() as session, pytest.raises(InvalidInput):
        service.start_runbook(session=session, runbook="testing.trivial", inputs={"n": []})
    with session_scope() as session, pytest.raises(Conflict):
        service.cancel_execution(session=session, execution_id=execution_id)


def test_cli_runs_shows_lists_and_cancels() -> None:
    runner = CliRunner()
    started = runner.invoke(group, ["run", "testing.trivial", "-i", "n=4", "--json"])
    assert started.exit_code == 0, started.output
    import json

    execution_id = json.loads(started.output)["id"]
    drain()
    shown = runner.invoke(group, ["executions", "show", str(execution_id)])
    assert shown.exit_code == 0
    assert "succeeded" in shown.output and "think" in shown.output
    listed = runner.invoke(group, ["executions", "list", "--status", "succeeded", "--json"])
    assert [e["id"] for e in json.loads(listed.output)["items"]] == [execution_id]
    bad = runner.invoke(group, ["run", "testing.trivial", "-i", "n=lots"])
    assert bad.exit_code == 1 and "inputs.n" in bad.output and "Traceback" not in bad.output
    unknown = runner.invoke(group, ["run", "no.such"])
    assert unknown.exit_code == 1 and "no runbook named 'no.such'" in unknown.output
    done = runner.invoke(group, ["executions", "cancel", str(execution_id)])
    assert done.exit_code == 1 and "already succeeded" in done.output
