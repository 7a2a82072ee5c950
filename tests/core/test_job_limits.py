"""What people may submit is a declared list with limits, and it cannot hold up alerts."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import popcorn_test_plugins  # noqa: F401  (registers test tasks in this process too)
import pytest
from click.testing import CliRunner
from popcorn_testing import Processes, wait_until

from popcorn import jobs
from popcorn.cli import cli
from popcorn.commands import register
from popcorn.db import session_scope
from popcorn.supervisor import Supervisor

register(cli)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def status(job_id: int) -> str:
    with session_scope(readonly=True) as session:
        return jobs.get_job(session=session, job_id=job_id).status


@pytest.mark.parametrize(
    "body",
    [
        {"task": "core.sleep", "arguments": {"seconds": 3600}},  # past its 60 s
        {"task": "core.sleep", "arguments": {"seconds": -1}},
        {"task": "core.sleep", "arguments": {"seconds": 5, "extra": 1}},
        {"task": "core.sleep", "arguments": {"seconds": 5}, "timeout": 3600},
        {"task": "core.sleep", "arguments": {"seconds": 5}, "queue": "alerts"},
        {"task": "core.echo", "arguments": {"big": "x" * 10_000}},
        {"task": "core.echo", "retries": 20},
    ],
)
def test_submissions_outside_a_tasks_limits_are_refused(api: Any, body: dict[str, Any]) -> None:
    answer = api.post("/api/v1/jobs", role="operator", json=body)
    assert answer.status_code == 422, answer.json
    with session_scope(readonly=True) as session:
        assert session.query(jobs.JobRecord).count() == 0


def test_submission_within_limits_is_accepted(api: Any) -> None:
    body = {"task": "core.sleep", "arguments": {"seconds": 60}, "timeout": 90}
    answer = api.post("/api/v1/jobs", role="operator", json=body)
    assert answer.status_code == 202
    assert answer.json["arguments"] == {"seconds": 60} and answer.json["queue"] == "default"


def test_cli_submissions_keep_the_same_limits() -> None:
    too_long = run("jobs", "submit", "core.sleep", "seconds=3600")
    assert too_long.exit_code == 1 and "arguments outside" in too_long.output
    private = run("jobs", "submit", "test.flaky", "marker=x", "fail_times=0")
    assert private.exit_code == 1 and "cannot be submitted" in private.output
    reserved = run("jobs", "submit", "core.echo", "--queue", "alerts")
    assert reserved.exit_code == 2
    ok = run("jobs", "submit", "core.sleep", "seconds=1", "--delay", "600", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["status"] == "scheduled"


def test_a_public_task_cannot_be_declared_on_the_alerts_queue() -> None:
    with pytest.raises(ValueError, match="reserved"):
        jobs.task("test.greedy", queue="alerts", public=True)(lambda: None)
    with pytest.raises(ValueError, match="must declare its arguments"):
        jobs.task("test.unbounded", public=True)(lambda: None)
    assert "core.sleep" in [t.name for t in jobs.public_tasks()]
    assert all(t.queue not in jobs.RESERVED_QUEUES for t in jobs.public_tasks())


def test_worker_serves_only_the_alerts_queue_when_asked(processes: Processes) -> None:
    processes.start("worker", "--queue", "alerts", "--no-fork")
    with session_scope() as session:
        general = jobs.enqueue(session, "core.echo").id
        alert = jobs.enqueue(session, "core.echo", queue="alerts").id
    wait_until(lambda: status(alert) == "finished", timeout=30)
    assert status(general) == "pending"


@pytest.mark.slow
def test_alerts_run_while_long_user_jobs_hold_every_general_worker(
    api: Any, processes: Processes, tmp_path: Path
) -> None:
    """The workers `popcorn up` runs: two long sleeps cannot delay alert processing."""
    workers = [c for c in Supervisor("127.0.0.1", 0).children if c.name.startswith("worker")]
    assert [c.name for c in workers] == ["worker-1", "worker-2", "worker-alerts"]
    started = [processes.start(*c.argv[3:]) for c in workers]
    sleeps = [
        api.post(
            "/api/v1/jobs",
            role="operator",
            json={"task": "core.sleep", "arguments": {"seconds": 30}},
        ).json["id"]
        for _ in range(2)
    ]
    wait_until(lambda: all(status(j) == "running" for j in sleeps), timeout=30)
    with session_scope() as session:
        alert = jobs.enqueue(session, "test.alert", arguments={"log": str(tmp_path / "a")}).id
    wait_until(lambda: status(alert) == "finished", timeout=30)
    # handled while both user jobs still held the general workers
    assert [status(j) for j in sleeps] == ["running", "running"]
    for proc in started:
        processes.kill(proc, signal.SIGKILL)
