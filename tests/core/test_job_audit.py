"""Submitting and canceling a job writes one audit record, from the API and from the CLI."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from popcorn_testing import Api
from sqlalchemy import select

from popcorn import jobs
from popcorn.audit import AuditRecord
from popcorn.cli import cli
from popcorn.commands import register
from popcorn.db import session_scope

register(cli)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def audit_of(job_id: int) -> list[tuple[str, str]]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(
            select(AuditRecord)
            .where(AuditRecord.object_type == "job", AuditRecord.object_id == str(job_id))
            .order_by(AuditRecord.id)
        )
        return [(r.action, r.actor) for r in rows]


def test_api_submit_and_cancel_are_audited_once(api: Any) -> None:
    body = {"task": "core.echo", "delay_seconds": 600}
    job_id = api.post("/api/v1/jobs", role="operator", json=body).json["id"]
    assert api.post(f"/api/v1/jobs/{job_id}/cancel", role="operator").status_code == 200
    assert audit_of(job_id) == [
        ("submit", "token:test-operator"),
        ("cancel", "token:test-operator"),
    ]


def test_cli_submit_and_cancel_are_audited_once() -> None:
    submitted = run("jobs", "submit", "core.echo", "x=1", "--delay", "600", "--json")
    job_id = json.loads(submitted.stdout)["id"]
    assert run("jobs", "cancel", str(job_id)).exit_code == 0
    trail = audit_of(job_id)
    assert [action for action, _ in trail] == ["submit", "cancel"]
    assert all(actor.startswith("cli:") for _, actor in trail)


def test_refused_cancel_writes_no_record(api: Any) -> None:
    job_id = api.post("/api/v1/jobs", json={"task": "core.echo", "delay_seconds": 600}).json["id"]
    api.post(f"/api/v1/jobs/{job_id}/cancel")
    assert api.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 409
    assert [action for action, _ in audit_of(job_id)] == ["submit", "cancel"]


def test_cli_lists_jobs_with_the_services_filters() -> None:
    run("jobs", "submit", "core.echo", "--delay", "600")
    run("jobs", "submit", "core.sleep", "seconds=1", "--delay", "600")
    listed = json.loads(run("jobs", "list", "--task", "core.sleep", "--json").stdout)["items"]
    assert [j["task"] for j in listed] == ["core.sleep"]
    assert json.loads(run("jobs", "list", "--status", "running", "--json").stdout)["items"] == []


def test_viewers_read_one_line_of_a_failed_jobs_error_operators_the_traceback(api: Api) -> None:
    traceback = 'Traceback (most recent call last):\n  File "/srv/secret/path.py"\nValueError: x'
    with session_scope() as session:
        record = jobs.enqueue(session, "core.echo")
        record.status = "failed"
        record.error = traceback
        job_id = record.id
    viewer = api.get(f"/api/v1/jobs/{job_id}", role="viewer").json
    assert viewer["error"] == "Traceback (most recent call last): (details hidden)"
    listed = api.get("/api/v1/jobs", role="viewer").json["items"]
    assert [j["error"] for j in listed if j["id"] == job_id] == [viewer["error"]]
    operator = api.get(f"/api/v1/jobs/{job_id}", role="operator").json
    assert operator["error"] == traceback
