"""Safety rails: concurrency limits hold under racing starts; the budget trips the circuit."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from click.testing import CliRunner
from remediation_kit import detail, drain, events, make_devices, start, steps

from popcorn.db import session_scope
from popcorn.errors import Conflict
from popcorn.remediation import service
from popcorn.remediation.cli import group

pytestmark = pytest.mark.usefixtures("test_packs")


def _race(count: int, runbook: str, **kwargs: Any) -> list[tuple[int, str]]:
    """`count` threads start the same runbook at the same moment."""
    barrier = threading.Barrier(count)
    results: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            barrier.wait()
            with session_scope() as session:
                execution = service.start_runbook(session=session, runbook=runbook, **kwargs)
                found = (execution.id, execution.status)
            with lock:
                results.append(found)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return sorted(results)


def test_racing_starts_on_one_device_admit_one_and_queue_the_rest() -> None:
    make_devices("oca-1")
    results = _race(6, "testing.per_device", inputs={}, target={"device": "oca-1"})
    assert [status for _, status in results].count("pending") == 1
    assert [status for _, status in results].count("queued") == 5
    queued = [p for t, _, p in events() if t == "remediation.execution.queued"]
    assert len(queued) == 5
    drain()
    finished = [detail(i) for i, _ in results]
    assert {e["status"] for e in finished} == {"succeeded"}
    # FIFO: each queued execution started after the one before it ended.
    order = sorted(finished, key=lambda e: e["started_at"])
    assert [e["id"] for e in order[1:]] == sorted(e["id"] for e in order[1:])
    for before, after in itertools.pairwise(order):
        assert after["started_at"] >= before["ended_at"]


def test_different_devices_run_side_by_side_and_a_scope_holds_each_device() -> None:
    make_devices("oca-1", "oca-2", "oca-3")
    one = start("testing.per_device", target={"device": "oca-1"})
    other = start("testing.per_device", target={"device": "oca-2"})
    whole_site = start("testing.per_device", target={"site": "lax1"})
    statuses = [detail(i)["status"] for i in (one, other, whole_site)]
    assert statuses == ["pending", "pending", "queued"]
    assert [t["name"] for t in detail(whole_site)["targets"]] == ["oca-1", "oca-2", "oca-3"]
    drain()
    assert steps(whole_site)["touch"]["outputs"] == {"devices": ["oca-1", "oca-2", "oca-3"]}


def test_drop_policy_records_the_extra_execution_as_dropped() -> None:
    results = _race(4, "testing.single", inputs={})
    statuses = [status for _, status in results]
    assert statuses.count("pending") == 1 and statuses.count("dropped") == 3
    dropped = next(i for i, s in results if s == "dropped")
    assert "concurrency limit" in detail(dropped)["error"]
    assert "remediation.execution.dropped" in [t for t, _, _ in events()]
    drain()
    assert detail(start("testing.single"))["status"] == "pending"  # the slot is free again


def test_a_canceled_queued_execution_gives_way() -> None:
    make_devices("oca-1")
    first = start("testing.per_device", target={"device": "oca-1"})
    second = start("testing.per_device", target={"device": "oca-1"})
    third = start("testing.per_device", target={"device": "oca-1"})
    with session_scope() as session:
        service.cancel_execution(session=session, execution_id=second)
        service.cancel_execution(session=session, execution_id=first)
    assert detail(third)["status"] == "pending"
    drain()
    assert [detail(i)["status"] for i in (first, second, third)] == [
        "canceled",
        "canceled",
        "succeeded",
    ]


def test_the_budget_trips_the_circuit_and_an_admin_resets_it(api: Any) -> None:
    configured = api.patch("/api/v1/remediation/circuit", json={"budget": 2, "window_seconds": 600})
    assert configured.status_code == 200 and configured.json["budget"] == 2
    assert (
        api.patch("/api/v1/remediation/circuit", role="operator", json={"budget": 9}).status_code
        == 403
    )
    ids = [start("testing.trivial", {"n": i}) for i in range(3)]
    drain()
    assert [detail(i)["status"] for i in ids] == ["succeeded", "succeeded", "failed"]
    refused = detail(ids[2])
    assert refused["error"].startswith("automation stopped: 2 remediations in the last 600s")
    assert steps(ids[2])["act"]["status"] == "failed"
    assert steps(ids[2])["look"]["status"] == "succeeded"  # diagnostics still ran
    tripped = [p for t, _, p in events() if t == "remediation.circuit.tripped"]
    assert len(tripped) == 1 and tripped[0]["used"] == 2 and tripped[0]["execution_id"] == ids[2]
    status = api.get("/api/v1/remediation/circuit", role="viewer").json
    assert status["state"] == "open" and status["used"] == 2

    blocked = api.post(
        "/api/v1/remediation/executions", json={"runbook": "testing.trivial", "inputs": {}}
    )
    assert blocked.status_code == 409 and "circuit is open" in blocked.json["error"]["message"]
    dry = api.post(
        "/api/v1/remediation/executions",
        json={"runbook": "testing.trivial", "inputs": {}, "dry_run": True},
    )
    assert dry.status_code == 202  # diagnosis stays available
    assert api.post("/api/v1/remediation/circuit/reset", role="operator").status_code == 403
    reset = api.post("/api/v1/remediation/circuit/reset", role="admin")
    assert reset.status_code == 200 and reset.json["state"] == "closed"
    assert reset.json["reset_by"] == "token:test-admin"
    assert "remediation.circuit.reset" in [t for t, _, _ in events()]
    with session_scope() as session:
        service.configure_circuit(session=session, budget=100)
    again = start("testing.trivial")
    drain()
    assert detail(again)["status"] == "succeeded"


def test_an_open_circuit_fails_remediations_already_under_way() -> None:
    with session_scope() as session:
        service.configure_circuit(session=session, budget=0)
    execution_id = start("testing.trivial")
    drain()
    assert detail(execution_id)["status"] == "failed"
    with session_scope() as session, pytest.raises(Conflict):
        service.start_runbook(session=session, runbook="testing.trivial", inputs={})
    with session_scope() as session:
        assert service.circuit_status(session=session)["state"] == "open"


def test_cli_shows_configures_and_resets_the_circuit() -> None:
    runner = CliRunner()
    assert runner.invoke(group, ["circuit", "configure", "--budget", "0"]).exit_code == 0
    start("testing.trivial")
    drain()
    shown = runner.invoke(group, ["circuit", "status"])
    assert shown.exit_code == 0 and "open" in shown.output
    assert runner.invoke(group, ["circuit", "reset"]).exit_code == 0
    with session_scope() as session:
        assert service.circuit_status(session=session)["state"] == "closed"
    nothing = runner.invoke(group, ["circuit", "configure"])
    assert nothing.exit_code == 1
