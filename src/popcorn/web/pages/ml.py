"""ML pages: flows (run one), runs with Metaflow's steps, artifacts, failure and cards,
and models with their versions (promote, roll back). Cards are shown in an iframe
sandbox that runs no script, from a page whose own CSP is a sandbox too."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for

from popcorn.db import session_scope
from popcorn.errors import PopcornError
from popcorn.ml import registry, schemas, service
from popcorn.web import auth as console_auth
from popcorn.web.views import bp

CARD_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"
)


@bp.get("/ml")
def ml() -> str:
    with session_scope(readonly=True) as session:
        runs = [service.run_read(r) for r in service.recent_runs(session=session, limit=30)]
        models = [registry.model_read(m) for m in registry.list_models(session=session)]
        schedules = service.list_schedules(session=session)
    flows = [service.flow_read(f) for f in service.list_flows()]
    return render_template(
        "ml/index.html", flows=flows, runs=runs, models=models, schedules=schedules
    )


@bp.post("/ml/runs")
@console_auth.needs("operator")
def ml_start() -> Any:
    try:
        spec = schemas.RunCreate(flow=request.form.get("flow", ""))
        with session_scope() as session:
            run_id = service.start_run(session=session, spec=spec).id
    except (PopcornError, ValueError) as exc:
        flash(getattr(exc, "message", str(exc)), "error")
        return redirect(url_for("web.ml"))
    flash(f"Run {run_id} queued.", "ok")
    return redirect(url_for("web.ml_run", run_id=run_id))


@bp.get("/ml/runs/<run_id>")
def ml_run(run_id: str) -> str:
    with session_scope(readonly=True) as session:
        run = service.run_detail(session=session, ref=run_id)
    return render_template("ml/run.html", run=run, active=run["status"] in ("queued", "running"))


@bp.get("/ml/runs/<run_id>/cards/<step>")
def ml_card(run_id: str, step: str) -> Response:
    with session_scope(readonly=True) as session:
        html = service.run_card(session=session, ref=run_id, step=step)
    answer = Response(html, mimetype="text/html")
    answer.headers["Content-Security-Policy"] = CARD_CSP
    answer.headers["X-Frame-Options"] = "SAMEORIGIN"
    return answer


@bp.post("/ml/runs/<run_id>/<action>")
@console_auth.needs("operator")
def ml_run_action(run_id: str, action: str) -> Any:
    target = run_id
    try:
        with session_scope() as session:
            if action == "cancel":
                service.cancel_run(session=session, ref=run_id)
                flash(f"Run {run_id}: cancel requested.", "ok")
            elif action == "resume":
                target = str(service.resume_run(session=session, ref=run_id).id)
                flash(f"Run {target} resumes run {run_id}.", "ok")
            elif action == "promote":
                version = registry.promote_run(
                    session=session, run=service.get_run(session=session, ref=run_id)
                )
                flash(f"Promoted as version {version.version}.", "ok")
            else:
                flash(f"unknown action {action!r}", "error")
    except PopcornError as exc:
        flash(exc.message, "error")
    return redirect(url_for("web.ml_run", run_id=target))


@bp.get("/ml/models/<name>")
def ml_model(name: str) -> str:
    with session_scope(readonly=True) as session:
        model = registry.model_read(registry.get_model(session=session, name=name))
    return render_template("ml/model.html", model=model)


@bp.post("/ml/models/<name>/rollback")
@console_auth.needs("operator")
def ml_rollback(name: str) -> Any:
    try:
        with session_scope() as session:
            found = registry.rollback(session=session, name=name)
            flash(f"{name} now serves version {found.promoted_version}.", "ok")
    except PopcornError as exc:
        flash(exc.message, "error")
    return redirect(url_for("web.ml_model", name=name))
