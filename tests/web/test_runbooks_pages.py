"""Runbook pages: executions, step timeline, logs, approvals by role, catalog and start."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from console_kit import Console, drain, text_of, waiting_execution

from popcorn.db import session_scope
from popcorn.remediation import service

pytestmark = pytest.mark.usefixtures("console_pack")


def test_fresh_install_lists_the_catalog_and_no_executions(
    console: Callable[[str], Console],
) -> None:
    page = text_of(console("viewer").page("/ui/runbooks"))
    assert "No runbook has run yet" in page
    assert "console.gated" in page and "storage.disk_failure" in page
    assert "closed" in page  # the safety circuit


def test_waiting_step_is_approved_by_an_operator_with_its_payload(
    console: Callable[[str], Console],
) -> None:
    execution_id = waiting_execution()
    viewer = console("viewer")
    listing = text_of(viewer.page("/ui/runbooks"))
    assert "Waiting for approval" in listing and "Restart the cache?" in listing
    page = viewer.page(f"/ui/runbooks/executions/{execution_id}")
    assert "waits for approval" in text_of(page) and "looked at the service" in text_of(page)
    assert ">Approve</button>" not in page and "an operator must answer" in text_of(page)
    with session_scope(readonly=True) as session:
        (approval,) = service.approvals_of(session=session, execution_id=execution_id)
    path = f"/ui/runbooks/approvals/{approval.id}/approve"
    assert viewer.post(path, {"payload.ticket": "CHG-7"}).status_code == 403

    operator = console("operator")
    page = operator.page(f"/ui/runbooks/executions/{execution_id}")
    assert 'name="payload.ticket"' in page and 'name="payload.window_minutes"' in page
    assert operator.post(path, {"payload.ticket": "CHG-7"}, csrf=False).status_code == 400
    wrong = operator.post(path, {"payload.ticket": "please"})
    assert wrong.status_code == 302
    assert "Not approved: payload.ticket" in text_of(
        operator.page(f"/ui/runbooks/executions/{execution_id}")
    )
    done = operator.post(path, {"payload.ticket": "CHG-7", "payload.window_minutes": "45"})
    assert done.status_code == 302
    drain()
    detail = text_of(operator.page(f"/ui/runbooks/executions/{execution_id}"))
    assert "Step 'restart' approved." in detail and "succeeded" in detail
    assert "test-operator" in detail and "CHG-7" in detail
    with session_scope(readonly=True) as session:
        steps = {s.name: s for s in service.step_runs(session=session, execution_id=execution_id)}
    assert steps["restart"].outputs == {"ticket": "CHG-7"}
    assert steps["restart"].inputs["approval"] == {"ticket": "CHG-7", "window_minutes": 45}


def test_reject_ends_the_execution(console: Callable[[str], Console]) -> None:
    execution_id = waiting_execution()
    with session_scope(readonly=True) as session:
        (approval,) = service.approvals_of(session=session, execution_id=execution_id)
    operator = console("operator")
    operator.post(f"/ui/runbooks/approvals/{approval.id}/reject", {"comment": "not now"})
    page = text_of(operator.page(f"/ui/runbooks/executions/{execution_id}"))
    assert "rejected" in page and "not now" in page
    assert "Re-run" in page


def test_start_from_the_catalog_and_cancel(console: Callable[[str], Console]) -> None:
    viewer = console("viewer")
    assert "Start" not in text_of(viewer.page("/ui/runbooks/catalog/console.gated"))
    operator = console("operator")
    page = operator.page("/ui/runbooks/catalog/console.gated")
    assert "Restart the cache?" not in page and "needs approval" in text_of(page)
    bad = operator.post("/ui/runbooks/catalog/console.gated/start", {"inputs.depth": "deep"})
    assert bad.status_code == 422 and "depth" in text_of(bad.get_data(as_text=True))
    started = operator.post(
        "/ui/runbooks/catalog/console.gated/start", {"inputs.service": "api", "inputs.depth": "2"}
    )
    assert started.status_code == 302
    execution_id = int(started.headers["Location"].rsplit("/", 1)[1])
    with session_scope(readonly=True) as session:
        execution = service.get_execution(session=session, execution_id=execution_id)
        assert execution.inputs == {"service": "api", "depth": 2}
    operator.post(f"/ui/runbooks/executions/{execution_id}/cancel")
    assert "canceled" in text_of(operator.page(f"/ui/runbooks/executions/{execution_id}"))
    assert viewer.post(f"/ui/runbooks/executions/{execution_id}/rerun").status_code == 403


def test_unknown_execution_or_runbook_is_a_404_page(console: Callable[[str], Console]) -> None:
    ui = console("viewer")
    assert "no execution 4242" in text_of(ui.page("/ui/runbooks/executions/4242", status=404))
    ui.page("/ui/runbooks/catalog/nope.nothing", status=404)


def test_overview_shows_waiting_approvals(console: Callable[[str], Console]) -> None:
    execution_id = waiting_execution()
    page = text_of(console("viewer").page("/ui/"))
    assert f"#{execution_id} restart: needs approval" in page
