"""Console pages. Thin, like the API views: read through service functions, render."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from sqlalchemy import text

from popcorn import audit, jobs, numbers
from popcorn.db import session_scope
from popcorn.domains import optional_module
from popcorn.errors import PopcornError
from popcorn.web import auth as console_auth
from popcorn.web import helpers

log = logging.getLogger("popcorn.web")

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
    ("Triage", "web.triage", "popcorn.triage.service"),
    ("Studio", "web.studio", "popcorn.studio.service"),
    ("ML", "web.ml", "popcorn.ml.service"),
    ("Security", "web.security", "popcorn.security.service"),
    ("Notebooks", "web.notebooks", "popcorn.notebooks.service"),
    ("Device lab", "web.devicelab", "popcorn.devicelab.service"),
    ("Jobs", "web.jobs_page", None),
    ("Audit", "web.audit_page", None),
]


@bp.app_context_processor
def console_globals() -> dict[str, Any]:
    nav = [
        (label, endpoint)
        for label, endpoint, module in NAV
        if (module is None or optional_module(module) is not None)
        and helpers.has_endpoint(endpoint)
    ]
    return {
        "nav": nav,
        "csrf_token": console_auth.csrf_token,
        "principal": g.get("principal"),
        "can": helpers.can,
        "chart_page": False,
    }


_FILTERS: dict[str, Callable[..., Any]] = {
    "when": helpers.fmt_time,
    "ago": helpers.ago,
    "duration": helpers.fmt_duration,
    "num": helpers.fmt_number,
    "percent": numbers.percent,
    "qty": numbers.quantity,
    "duration_ms": numbers.duration_ms,
    "bytes": helpers.fmt_bytes,
    "tojson_pretty": helpers.to_json,
    "as_time": helpers.as_datetime,
    "wbr": helpers.breakable,
}
for _name, _filter in _FILTERS.items():
    bp.add_app_template_filter(_filter, _name)


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
        console_auth.check_csrf()  # no signing a victim in to the attacker's account
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
        job_counts = jobs.counts_by_status(session=session)
        # Data flowing in (signal batches every minute) is not a change anyone made: it
        # would push every real change off the overview. The audit page lists it all.
        recent_changes = audit.recent_changes(
            session=session, filters={"action__n": ["ingest"]}, limit=10
        )
    panels = [_panel(panel) for panel in OVERVIEW_PANELS]
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


# Domains' overview panels: callables(session) -> {"title", "rows": [...], "link", "empty"}
# or None. A row is (label, value) or (label, value, href).
OVERVIEW_PANELS: list[Any] = []


def _panel(panel: Any) -> dict[str, Any] | None:
    """One domain's panel, in its own transaction: a failing domain shows an error, not a 500."""
    try:
        with session_scope(readonly=True) as session:
            result: dict[str, Any] | None = panel(session)
            return result
    except Exception as exc:
        log.exception("overview panel %s failed", getattr(panel, "__name__", panel))
        name = str(getattr(panel, "__name__", "panel"))
        title = name.removesuffix("_panel").replace("_", " ").capitalize()
        return {"title": title, "rows": [], "error": f"unavailable ({type(exc).__name__})"}


@bp.get("/jobs")
def jobs_page() -> str:
    status = request.args.get("status") or None
    with session_scope(readonly=True) as session:
        filters = {"status": [status]} if status else {}
        rows = jobs.recent_jobs(session=session, filters=filters, limit=100)
    return render_template("jobs.html", jobs=rows, status=status, states=jobs.STATES)


@bp.get("/audit")
def audit_page() -> str:
    object_type = request.args.get("object_type") or None
    with session_scope(readonly=True) as session:
        filters = {"object_type": [object_type]} if object_type else {}
        rows = audit.recent_changes(session=session, filters=filters, limit=200)
    return render_template("audit.html", records=rows, object_type=object_type)


def render_error(status: int, code: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, code=code, message=message), status
