"""Console pages. Thin, like the API views: read through service functions, render."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from sqlalchemy import func, select, text

from popcorn import jobs
from popcorn.audit import AuditRecord
from popcorn.db import session_scope
from popcorn.domains import optional_module
from popcorn.errors import PopcornError
from popcorn.web import auth as console_auth

bp = Blueprint(
    "web", __name__, template_folder="templates", static_folder="static", static_url_path="/static"
)
bp.before_request(console_auth.load_user)

NAV = [
    ("Overview", "web.overview", None),
    ("Inventory", "web.inventory", "popcorn.inventory.service"),
    ("Signals", "web.signals", "popcorn.signals.service"),
    ("Events", "web.events", "popcorn.events.service"),
    ("Runbooks", "web.runbooks", "popcorn.remediation.service"),
    ("Traffic", "web.traffic", "popcorn.traffic.service"),
    ("Certificates", "web.certificates", "popcorn.certificates.service"),
    ("Jobs", "web.jobs_page", None),
    ("Audit", "web.audit_page", None),
]


@bp.app_context_processor
def console_globals() -> dict[str, Any]:
    nav = [
        (label, endpoint)
        for label, endpoint, module in NAV
        if (module is None or optional_module(module) is not None)
        and endpoint in {rule.endpoint for rule in _rules()}
    ]
    return {"nav": nav, "csrf_token": console_auth.csrf_token, "principal": g.get("principal")}


def _rules() -> list[Any]:
    from flask import current_app

    return list(current_app.url_map.iter_rules())


@bp.get("/assets/plotly.min.js")
def plotly_js() -> Response:
    """plotly.js as shipped inside the installed `plotly` package (never a vendored copy)."""
    from pathlib import Path

    import plotly
    from flask import send_from_directory

    folder = Path(plotly.__file__).parent / "package_data"
    return send_from_directory(folder, "plotly.min.js", max_age=86400)


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = ""
    if request.method == "POST":
        try:
            console_auth.sign_in(request.form.get("token", ""))
        except PopcornError as exc:
            error = exc.message
        else:
            target = request.args.get("next", "")
            # only local paths, never an open redirect
            if not target.startswith("/ui") or target.startswith("//"):
                target = url_for("web.overview")
            return redirect(target)
    return render_template("login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout() -> Response:
    console_auth.sign_out()
    return redirect(url_for("web.login"))  # type: ignore[return-value]


@bp.get("/")
def overview() -> str:
    health = {"database": "ok", "redis": "ok"}
    with session_scope(readonly=True) as session:
        try:
            session.execute(text("SELECT 1"))
        except Exception as exc:
            health["database"] = type(exc).__name__
        job_counts = dict(
            session.execute(
                select(jobs.JobRecord.status, func.count()).group_by(jobs.JobRecord.status)
            ).all()
        )
        recent_changes = list(
            session.scalars(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(10))
        )
        panels = [panel(session) for panel in OVERVIEW_PANELS]
    try:
        jobs.get_redis().ping()
    except Exception as exc:
        health["redis"] = type(exc).__name__
    return render_template(
        "overview.html",
        health=health,
        job_counts=job_counts,
        recent_changes=recent_changes,
        panels=[p for p in panels if p],
    )


# Domains' overview panels: callables(session) -> {"title", "rows": [...], "link"} or None.
OVERVIEW_PANELS: list[Any] = []


@bp.get("/jobs")
def jobs_page() -> str:
    status = request.args.get("status") or None
    with session_scope(readonly=True) as session:
        stmt = select(jobs.JobRecord).order_by(jobs.JobRecord.id.desc()).limit(100)
        if status:
            stmt = stmt.where(jobs.JobRecord.status == status)
        rows = list(session.scalars(stmt))
    return render_template("jobs.html", jobs=rows, status=status, states=jobs.STATES)


@bp.get("/audit")
def audit_page() -> str:
    object_type = request.args.get("object_type") or None
    with session_scope(readonly=True) as session:
        stmt = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(200)
        if object_type:
            stmt = stmt.where(AuditRecord.object_type == object_type)
        rows = list(session.scalars(stmt))
    return render_template("audit.html", records=rows, object_type=object_type)


def render_error(status: int, code: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, code=code, message=message), status
