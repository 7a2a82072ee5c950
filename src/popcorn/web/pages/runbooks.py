"""Runbook pages: executions with their step timeline and logs, approvals waiting for a
person (operators approve with the payload the step asks for, or reject), the runbook
catalog with a start form, and the remediation circuit."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from popcorn.db import session_scope, utcnow
from popcorn.errors import PopcornError
from popcorn.listing import ListParams
from popcorn.remediation import service
from popcorn.remediation.schemas import ApprovalRead, ExecutionRead
from popcorn.web import auth as console_auth
from popcorn.web import forms, helpers
from popcorn.web.views import OVERVIEW_PANELS, bp

STATUSES = (
    "queued",
    "pending",
    "running",
    "waiting_approval",
    "succeeded",
    "failed",
    "canceled",
    "rejected",
    "dropped",
)
ACTIVE = ("queued", "pending", "running", "waiting_approval")
TIMELINE_COLORS = {
    "succeeded": "#1f7a44",
    "failed": "#b4231f",
    "rejected": "#b4231f",
    "running": "#a86200",
    "retrying": "#a86200",
    "waiting_approval": "#e0a100",
}


def _dump(schema: Any, row: Any) -> dict[str, Any]:
    data: dict[str, Any] = schema.model_validate(row).model_dump(mode="json")
    return data


def _pending_approvals(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    page = service.list_approvals(
        session=session, params=ListParams(limit=limit, filters={"status": ["pending"]})
    )
    return [_dump(ApprovalRead, a) for a in page.items]


@bp.get("/runbooks")
def runbooks() -> str:
    status = request.args.get("status", "")
    query = request.args.get("q", "").strip()
    filters = {"status": [status]} if status else {}
    with session_scope(readonly=True) as session:

        def fetch(params: ListParams) -> Any:
            params.q = query or None
            return service.list_executions(session=session, params=params)

        executions = helpers.newest(fetch, filters, page=helpers.page_number(request.args))
        executions["items"] = [_dump(ExecutionRead, e) for e in executions["items"]]
        approvals = _pending_approvals(session)
    with session_scope() as session:  # the first read creates the circuit's row
        circuit = service.circuit_status(session=session)
    catalog = service.list_packs()
    return render_template(
        "runbooks/index.html",
        executions=executions,
        approvals=approvals,
        circuit=circuit,
        catalog=catalog,
        status=status,
        query=query,
        statuses=STATUSES,
    )


def _timeline(steps: list[dict[str, Any]], approvals: list[dict[str, Any]]) -> str | None:
    """A horizontal bar per step from its start to its end (or now, while it runs), and one
    per approval from its request to its answer: where the time of an execution went."""
    now = utcnow()
    spans = []  # (label, start, end, status, seconds shown: the step's own duration_ms if any)
    for step in steps:
        start = helpers.as_datetime(step["started_at"])
        if start is None:
            continue
        end = helpers.as_datetime(step["ended_at"]) or now
        label = f"{step['position'] + 1}. {step['name']}"
        for approval in approvals:
            if approval["step"] != step["name"]:
                continue
            asked = helpers.as_datetime(approval["created_at"])
            answered = helpers.as_datetime(approval["answered_at"]) or now
            if asked is not None:
                seconds = (answered - asked).total_seconds()
                spans.append((f"{label}: approval", asked, answered, "waiting_approval", seconds))
        took = step.get("duration_ms")
        seconds = took / 1000 if took is not None else (end - start).total_seconds()
        spans.append((label, start, end, step["status"], seconds))
    if not spans:
        return None
    spans.sort(key=lambda span: span[1])
    total = (max(s[2] for s in spans) - min(s[1] for s in spans)).total_seconds() * 1000
    trace = {
        "type": "bar",
        "orientation": "h",
        "y": [s[0] for s in spans],
        # the shortest bars stay visible: at least 1% of the whole execution
        "x": [max((s[2] - s[1]).total_seconds() * 1000, total / 100, 1) for s in spans],
        "base": [s[1].isoformat() for s in spans],
        "marker": {"color": [TIMELINE_COLORS.get(s[3], "#667085") for s in spans]},
        "text": [
            # the same number as the step's row and `popcorn remediation show`
            f"{s[3].replace('_', ' ')} · {helpers.fmt_duration(s[4])}"
            for s in spans
        ],
        "textposition": "outside",
        "cliponaxis": False,
        "hovertemplate": "%{y}: %{text}<extra></extra>",
    }
    return helpers.chart(
        [trace],
        xaxis={"type": "date", "title": {"text": "time (UTC)"}},
        yaxis={"autorange": "reversed", "automargin": True},
        height=90 + 34 * len(spans),
        showlegend=False,
        hovermode="closest",
        margin={"l": 10, "r": 150, "t": 10, "b": 40},
    )


@bp.get("/runbooks/executions/<int:execution_id>")
def runbooks_execution(execution_id: int) -> str:
    with session_scope(readonly=True) as session:
        detail = service.execution_detail(session=session, execution_id=execution_id)
    for approval in detail["approvals"]:
        approval["fields"] = forms.schema_fields(approval["payload_schema"])
    figure = _timeline(detail["steps"], detail["approvals"])
    return render_template(
        "runbooks/execution.html",
        execution=detail,
        figure=figure,
        chart_page=figure is not None,
        active=detail["status"] in ACTIVE,
        inventory=helpers.has_endpoint("web.inventory_device"),
        signals=helpers.has_endpoint("web.signals_analysis"),
        has_events=helpers.has_endpoint("web.events_event"),
    )


def _back_to(execution_id: int) -> Any:
    return redirect(url_for("web.runbooks_execution", execution_id=execution_id))


@bp.post("/runbooks/approvals/<int:approval_id>/<any(approve, reject):answer>")
@console_auth.needs("operator")
def runbooks_answer(approval_id: int, answer: str) -> Any:
    with session_scope(readonly=True) as session:
        approval = service.get_approval(session=session, approval_id=approval_id)
        execution_id, schema, step = approval.execution_id, approval.payload_schema, approval.step
    comment = request.form.get("comment", "").strip()
    try:
        payload = (
            forms.parse_schema_form(schema, request.form, "payload.") if answer == "approve" else {}
        )
        with session_scope() as session:
            service.answer_approval(
                session=session,
                approval_id=approval_id,
                approve=answer == "approve",
                payload=payload or None,
                comment=comment,
            )
    except PopcornError as exc:
        flash(f"Not {answer}d: {exc.message}", "error")
    else:
        flash(f"Step {step!r} {answer}d.", "ok")
    return _back_to(execution_id)


@bp.post("/runbooks/executions/<int:execution_id>/cancel")
@console_auth.needs("operator")
def runbooks_cancel(execution_id: int) -> Any:
    try:
        with session_scope() as session:
            execution = service.cancel_execution(session=session, execution_id=execution_id)
            status = execution.status
    except PopcornError as exc:
        flash(exc.message, "error")
    else:
        flash(
            "Canceled."
            if status == "canceled"
            else "Cancel requested: the running step stops at its next check.",
            "ok",
        )
    return _back_to(execution_id)


@bp.post("/runbooks/executions/<int:execution_id>/rerun")
@console_auth.needs("operator")
def runbooks_rerun(execution_id: int) -> Any:
    from_step = request.form.get("from_step") or None
    try:
        with session_scope() as session:
            execution = service.rerun_execution(
                session=session, execution_id=execution_id, from_step=from_step
            )
            new_id = execution.id
    except PopcornError as exc:
        flash(exc.message, "error")
        return _back_to(execution_id)
    flash(f"Re-run of execution {execution_id} started.", "ok")
    return _back_to(new_id)


@bp.get("/runbooks/catalog/<name>")
def runbooks_runbook(name: str) -> tuple[str, int]:
    return _runbook_page(name)


def _runbook_page(name: str, error: Any = None, form: Any = None) -> tuple[str, int]:
    runbook = service.describe_runbook(name)
    return render_template(
        "runbooks/runbook.html",
        runbook=runbook,
        fields=forms.schema_fields(runbook["inputs_schema"]),
        error=error,
        form=form or {},
    ), 422 if error else 200


@bp.post("/runbooks/catalog/<name>/start")
@console_auth.needs("operator")
def runbooks_start(name: str) -> Any:
    runbook = service.describe_runbook(name)
    target: dict[str, Any] = {}
    for key in ("device", "site", "region", "role"):
        value = request.form.get(f"target.{key}", "").strip()
        if value:
            parts = value.split()
            target[key] = parts if key == "device" and len(parts) > 1 else value
    try:
        inputs = forms.parse_schema_form(runbook["inputs_schema"], request.form, "inputs.")
        with session_scope() as session:
            execution = service.start_runbook(
                session=session,
                runbook=name,
                inputs=inputs,
                target=target or None,
                trigger={"source": "console"},
                dry_run=request.form.get("dry_run") == "on",
            )
            execution_id = execution.id
    except PopcornError as exc:
        return _runbook_page(name, helpers.error_details(exc), request.form)
    flash(f"Started {runbook['name']}.", "ok")
    return _back_to(execution_id)


def runbooks_panel(session: Session) -> dict[str, Any]:
    rows: list[tuple[str, Any, str | None]] = []
    for approval in _pending_approvals(session, limit=5):
        rows.append(
            (
                f"#{approval['execution_id']} {approval['step']}: needs approval",
                "waiting",
                url_for("web.runbooks_execution", execution_id=approval["execution_id"]),
            )
        )
    running = service.list_executions(
        session=session,
        params=ListParams(limit=8, filters={"status": ["running", "pending", "queued"]}),
    )
    for execution in running.items:
        rows.append(
            (
                f"{execution.runbook} #{execution.id}",
                execution.status,
                url_for("web.runbooks_execution", execution_id=execution.id),
            )
        )
    return {
        "title": "Running executions",
        "link": url_for("web.runbooks"),
        "rows": rows,
        "empty": "No runbook is running.",
    }


OVERVIEW_PANELS.append(runbooks_panel)
