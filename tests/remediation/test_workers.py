"""Executions on real workers: a worker killed mid-step is never left "running"."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from popcorn_testing import Processes, wait_until
from remediation_kit import detail, drain, start, steps
from sqlalchemy import update

from popcorn import jobs
from popcorn.db import session_scope, utcnow
from popcorn.remediation import service
from popcorn.remediation.models import RunbookExecution, StepRun

pytestmark = pytest.mark.usefixtures("test_packs")


def status(execution_id: int) -> str:
    return str(detail(execution_id)["status"])


def test_an_execution_runs_on_a_worker_process(processes: Processes, api: Any) -> None:
    processes.start("worker")
    created = api.post(
        "/api/v1/remediation/executions", json={"runbook": "testing.trivial", "inputs": {"n": 3}}
    )
    execution_id = created.json["id"]
    wait_until(lambda: status(execution_id) == "succeeded", timeout=60)
    assert steps(execution_id)["think"]["outputs"] == {"double": 6}


def test_a_worker_killed_mid_step_resumes_from_the_last_completed_step(
    processes: Processes, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    worker = processes.start("worker", log=tmp_path / "worker-1.log")
    execution_id = start("testing.slow", {"marker": str(marker), "sleep": 60})
    wait_until(lambda: marker.exists() and "wait" in marker.read_text(), timeout=60)
    assert status(execution_id) == "running"
    processes.kill(worker)  # SIGKILL: the worker and its work horse die at once

    job_id = detail(execution_id)["job_id"]
    wait_until(lambda: jobs.reap_lost(lost_after=1) > 0, timeout=30)
    with session_scope() as session:  # skip the retry's backoff
        session.execute(
            update(jobs.JobRecord)
            .where(jobs.JobRecord.id == job_id)
            .values(run_at=utcnow() - timedelta(seconds=1))
        )
    assert jobs.promote_due() == 1
    with session_scope() as session:  # the second attempt of the long step need not be long
        execution = session.get(RunbookExecution, execution_id)
        assert execution is not None
        execution.inputs = {**execution.inputs, "sleep": 0}
    processes.start("worker", log=tmp_path / "worker-2.log")
    wait_until(lambda: status(execution_id) == "succeeded", timeout=60)

    found = steps(execution_id)
    assert found["before"]["attempts"] == 1  # completed before the kill: not repeated
    assert found["wait"]["attempts"] == 2
    assert any("interrupted: its worker was lost" in e["message"] for e in found["wait"]["logs"])
    assert found["after"]["attempts"] == 1
    assert marker.read_text().splitlines() == ["before", "wait", "wait", "after"]
    with session_scope(readonly=True) as session:
        assert jobs.get_job(session=session, job_id=job_id).attempts == 2


def _orphan(execution_id: int, step: str) -> None:
    """As if the worker running `step` had died: the step is running under a stale claim."""
    with session_scope() as session:
        session.execute(
            update(StepRun)
            .where(StepRun.execution_id == execution_id, StepRun.name == step)
            .values(status="running", attempts=1, started_at=utcnow())
        )
        session.execute(
            update(RunbookExecution)
            .where(RunbookExecution.id == execution_id)
            .values(status="running", claim=uuid.uuid4().hex, started_at=utcnow())
        )


def test_an_interrupted_remediation_that_is_not_idempotent_fails() -> None:
    execution_id = start("testing.stubborn")
    _orphan(execution_id, "once")
    result = service.run_execution(execution_id)
    assert result["status"] == "failed"
    shown = detail(execution_id)
    assert "not repeated because the step is not idempotent" in shown["error"]
    assert steps(execution_id)["once"]["attempts"] == 1


def test_housekeeping_fails_executions_whose_job_gave_up() -> None:
    execution_id = start("testing.trivial")
    job_id = detail(execution_id)["job_id"]
    _orphan(execution_id, "look")
    old = utcnow() - timedelta(seconds=service.ORPHAN_GRACE_SECONDS + 5)
    with session_scope() as session:
        session.execute(
            update(jobs.JobRecord)
            .where(jobs.JobRecord.id == job_id)
            .values(status="failed", error="worker lost: no heartbeat for 30s")
        )
        session.execute(
            update(RunbookExecution)
            .where(RunbookExecution.id == execution_id)
            .values(updated_at=old)
        )
    assert service.housekeeping()["orphans"] == 1
    shown = detail(execution_id)
    assert shown["status"] == "failed"
    assert shown["error"] == (
        f"the execution's worker stopped: job {job_id} failed (worker lost: no heartbeat for 30s)"
    )
    assert steps(execution_id)["look"]["status"] == "skipped"
    drain()  # nothing left to run
    assert status(execution_id) == "failed"


def test_a_duplicate_delivery_does_not_run_steps_twice(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    execution_id = start("testing.flaky", {"marker": str(marker)})
    assert service.run_execution(execution_id)["status"] == "succeeded"
    assert service.run_execution(execution_id)["status"] == "succeeded"
    assert marker.read_text().splitlines() == ["first", "shaky"]


def test_a_distant_retry_releases_the_worker_and_comes_back_as_a_delayed_job(
    tmp_path: Path,
) -> None:
    execution_id = start("testing.patient", {"marker": str(tmp_path / "marker")})
    first_job = detail(execution_id)["job_id"]
    drain()
    shown = detail(execution_id)
    assert shown["status"] == "pending" and shown["job_id"] != first_job
    later = steps(execution_id)["later"]
    assert later["status"] == "retrying" and later["attempts"] == 1
    with session_scope(readonly=True) as session:
        job = jobs.get_job(session=session, job_id=shown["job_id"])
        assert job.status == "scheduled"
        assert (job.run_at - utcnow()).total_seconds() > 100
    assert service.housekeeping()["orphans"] == 0  # waiting for its retry is not orphaned
    with session_scope() as session:  # two minutes later
        past = utcnow() - timedelta(seconds=1)
        session.execute(
            update(jobs.JobRecord).where(jobs.JobRecord.id == shown["job_id"]).values(run_at=past)
        )
        session.execute(
            update(StepRun).where(StepRun.execution_id == execution_id).values(next_attempt_at=past)
        )
    assert jobs.promote_due() == 1
    drain()
    assert status(execution_id) == "succeeded"
    assert steps(execution_id)["later"]["attempts"] == 2
