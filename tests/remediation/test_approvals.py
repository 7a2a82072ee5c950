"""Approvals: a waiting step frees its worker; answers are checked; deadlines expire."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from remediation_kit import detail, drain, events, start, steps
from sqlalchemy import select

from popcorn import jobs
from popcorn.context import acting_as
from popcorn.db import session_scope, utcnow
from popcorn.errors import Forbidden
from popcorn.remediation import service
from popcorn.remediation.cli import group

pytestmark = pytest.mark.usefixtures("test_packs")


def _pending_approval(api: Any) -> dict[str, Any]:
    listed = api.get("/api/v1/remediation/approvals?status=pending", role="viewer").json
    assert listed["count"] == 1
    return dict(listed["items"][0])


def test_waiting_for_approval_releases_the_worker_and_approval_resumes(api: Any) -> None:
    execution_id = start("testing.gated")
    assert drain() == 1
    shown = detail(execution_id)
    assert shown["status"] == "waiting_approval"
    assert steps(execution_id)["restart"]["status"] == "waiting_approval"
    with session_scope(readonly=True) as session:
        job = jobs.get_job(session=session, job_id=shown["job_id"])
        assert job.status == "finished"  # the worker moved on
    approval = _pending_approval(api)
    assert approval["roles"] == ["operator"] and approval["message"] == "restart?"
    assert approval["payload_schema"]["required"] == ["ticket"]
    waiting = [p for t, _, p in events() if t == "remediation.execution.waiting_approval"]
    assert waiting[0]["approval_id"] == approval["id"] and waiting[0]["step"] == "restart"

    answer = api.post(
        f"/api/v1/remediation/approvals/{approval['id']}/approve",
        role="operator",
        json={"payload": {"ticket": "CHG-42"}, "comment": "go"},
    )
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "approved"
    assert answer.json["answered_by"] == "token:test-operator"
    assert detail(execution_id)["status"] == "pending"
    drain()
    assert detail(execution_id)["status"] == "succeeded"
    restart = steps(execution_id)["restart"]
    assert restart["outputs"] == {"ticket": "CHG-42"}
    assert restart["inputs"]["approval"] == {"ticket": "CHG-42", "window_minutes": 30}
    again = api.post(
        f"/api/v1/remediation/approvals/{approval['id']}/approve",
        json={"payload": {"ticket": "CHG-1"}},
    )
    assert again.status_code == 409


def test_answers_are_validated_against_the_payload_schema_and_roles(api: Any) -> None:
    start("testing.gated")
    drain()
    approval_id = _pending_approval(api)["id"]
    path = f"/api/v1/remediation/approvals/{approval_id}"
    missing = api.post(path + "/approve", json={"payload": {}})
    assert missing.status_code == 422 and "payload.ticket" in missing.json["error"]["message"]
    wrong = api.post(path + "/approve", json={"payload": {"ticket": "please"}})
    assert wrong.status_code == 422
    too_long = api.post(
        path + "/approve", json={"payload": {"ticket": "CHG-1", "window_minutes": 999}}
    )
    assert "payload.window_minutes" in too_long.json["error"]["details"]["fields"]
    viewer = api.post(path + "/approve", role="viewer", json={"payload": {"ticket": "CHG-1"}})
    assert viewer.status_code == 403
    with session_scope() as session, acting_as("someone", "viewer"), pytest.raises(Forbidden):
        service.answer_approval(
            session=session, approval_id=approval_id, approve=True, payload={"ticket": "CHG-1"}
        )
    assert _pending_approval(api)["status"] == "pending"  # nothing was half-applied


def test_rejection_ends_the_execution_as_rejected(api: Any) -> None:
    execution_id = start("testing.gated")
    drain()
    approval_id = _pending_approval(api)["id"]
    answer = api.post(
        f"/api/v1/remediation/approvals/{approval_id}/reject",
        role="operator",
        json={"comment": "not during the evening peak"},
    )
    assert answer.status_code == 200 and answer.json["status"] == "rejected"
    drain()
    shown = detail(execution_id)
    assert shown["status"] == "rejected"
    assert "not during the evening peak" in shown["error"]
    assert steps(execution_id)["restart"]["status"] == "rejected"


def test_deadlines_expire_through_the_housekeeping_task() -> None:
    execution_id = start("testing.gated")
    drain()
    with session_scope(readonly=True) as session:
        assert (
            session.scalar(
                select(jobs.Schedule.task).where(
                    jobs.Schedule.name == service.HOUSEKEEPING_SCHEDULE
                )
            )
            == service.HOUSEKEEPING_TASK
        )
    assert service.housekeeping()["expired"] == 0
    with session_scope() as session:
        assert service.expire_approvals(session=session, now=utcnow() + timedelta(hours=1)) == 1
    shown = detail(execution_id)
    assert shown["status"] == "failed" and "expired" in shown["error"]
    assert shown["approvals"][0]["status"] == "expired"
    assert ("remediation.approval.expired") in [t for t, _, _ in events()]


def test_canceling_a_waiting_execution_cancels_its_approval(api: Any) -> None:
    execution_id = start("testing.gated")
    drain()
    approval_id = _pending_approval(api)["id"]
    api.post(f"/api/v1/remediation/executions/{execution_id}/cancel")
    assert api.get(f"/api/v1/remediation/approvals/{approval_id}").json["status"] == "canceled"
    late = api.post(
        f"/api/v1/remediation/approvals/{approval_id}/approve",
        json={"payload": {"ticket": "CHG-9"}},
    )
    assert late.status_code == 409


def test_cli_lists_and_answers_approvals() -> None:
    runner = CliRunner()
    execution_id = start("testing.gated")
    drain()
    listed = runner.invoke(group, ["approvals", "list"])
    assert listed.exit_code == 0 and "restart" in listed.output
    with session_scope(readonly=True) as session:
        approval_id = service.approvals_of(session=session, execution_id=execution_id)[0].id
    bad = runner.invoke(group, ["approvals", "approve", str(approval_id), "-p", "ticket=nope"])
    assert bad.exit_code == 1 and "payload.ticket" in bad.output
    good = runner.invoke(group, ["approvals", "approve", str(approval_id), "-p", "ticket=CHG-7"])
    assert good.exit_code == 0, good.output
    drain()
    assert detail(execution_id)["status"] == "succeeded"
