"""Notebook pages: definitions, runs, one run with its output notebook, the published area.

Admins (operators too when kernels run as `notebooks_run_as`) define and edit job
definitions in forms (a notebook or script uploaded, or an archived workspace path);
operators start a run now. The forms post with the console's CSRF token.
Stored notebooks are rendered by nbconvert into a separate, script-free page served with
its own sandboxing Content-Security-Policy and shown in an `<iframe sandbox>`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from pydantic import ValidationError

from popcorn.db import session_scope
from popcorn.errors import InvalidInput, PopcornError
from popcorn.listing import ListParams
from popcorn.notebooks import archive, formats, render, schemas, service
from popcorn.web import auth as console_auth
from popcorn.web import helpers
from popcorn.web.views import bp

MAX_UPLOAD = 16 * 2**20  # a notebook or script uploaded in the form


def _dump(schema: Any, row: Any) -> dict[str, Any]:
    data: dict[str, Any] = schema.model_validate(row).model_dump(mode="json")
    return data


@bp.get("/notebooks")
def notebooks() -> str:
    with session_scope(readonly=True) as session:
        page = service.list_definitions(session=session, params=ListParams(limit=1000))
        definitions = [_dump(schemas.DefinitionRead, d) for d in page.items]
        names = {d["id"]: d["name"] for d in definitions}
        runs = [_dump(schemas.RunRead, r) for r in service.recent_runs(session=session, limit=50)]
        published = archive.list_publications(session=session)
    return render_template(
        "notebooks/index.html",
        definitions=definitions,
        runs=runs,
        names=names,
        published=published,
        definer=service.definer_role("notebook"),
    )


@bp.get("/notebooks/definitions/<ref>")
def notebooks_definition(ref: str) -> str:
    with session_scope(readonly=True) as session:
        found = service.get_definition(session=session, ref=ref)
        definition = _dump(schemas.DefinitionRead, found)
        runs = [
            _dump(schemas.RunRead, r)
            for r in service.recent_runs(session=session, limit=100, definition_id=found.id)
        ]
    return render_template(
        "notebooks/definition.html",
        definition=definition,
        runs=runs,
        definer=service.definer_role(definition["kind"]),
    )


@bp.get("/notebooks/runs/<run_id>")
def notebooks_run(run_id: str) -> str:
    with session_scope(readonly=True) as session:
        found = service.get_run(session=session, run_id=run_id)
        run = _dump(schemas.RunRead, found)
        definition = _dump(
            schemas.DefinitionRead, service.get_definition(session=session, ref=found.definition_id)
        )
    return render_template("notebooks/run.html", run=run, definition=definition)


def _sandboxed(html: str) -> Response:
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = render.OUTPUT_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.get("/notebooks/runs/<run_id>/output.html")
def notebooks_run_output(run_id: str) -> Response:
    with session_scope(readonly=True) as session:
        found = service.get_run(session=session, run_id=run_id)
        key, failed = found.output_key, found.failed_cell
    if not key:
        return _sandboxed("<p>This run stored no output notebook.</p>")
    return _sandboxed(render.stored_html(key, failed_cell=failed))


@bp.get("/notebooks/runs/<run_id>/output/<fmt>")
def notebooks_run_download(run_id: str, fmt: str) -> Response:
    """One stored output format of a run, as a download (never rendered in the console)."""
    with session_scope(readonly=True) as session:
        found = service.get_run(session=session, run_id=run_id)
        data, media = service.run_output(found, fmt)
    response = Response(data, mimetype=media)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="run-{found.id}.{formats.SUFFIX[fmt]}"'
    )
    response.headers["Content-Security-Policy"] = render.OUTPUT_CSP
    return response


@bp.get("/notebooks/published/<slug>")
def notebooks_published(slug: str) -> str:
    with session_scope(readonly=True) as session:
        row = archive.get_publication(session=session, slug=slug)
        publication = archive.publication_read(session, row)
    return render_template("notebooks/published.html", publication=publication)


@bp.get("/notebooks/published/<slug>/content.html")
def notebooks_published_content(slug: str) -> Response:
    with session_scope(readonly=True) as session:
        row = archive.get_publication(session=session, slug=slug)
        key = archive.get_version_by_id(session=session, version_id=row.version_id).object_key
    return _sandboxed(render.stored_html(key))


# --- forms: define, edit, run now -------------------------------------------------------------

FORM_FIELDS = (
    "name",
    "kind",
    "workspace_path",
    "callable",
    "parameters",
    "kernel",
    "cron",
    "timezone",
    "timeout",
    "retries",
    "tags",
    "spark_master",
    "spark_conf",
    "after",
)


def _json_field(raw: str, label: str) -> dict[str, Any]:
    """A JSON object typed in a textarea ({} when empty)."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(
            f"{label}: not JSON ({exc})", details={"fields": {label: "JSON"}}
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{label}: give a JSON object", details={"fields": {label: "object"}})
    return value


def _upload(field: str) -> bytes | None:
    found = request.files.get(field)
    if found is None or not found.filename:
        return None
    return found.read(MAX_UPLOAD + 1)


def _create_spec(form: Any) -> schemas.DefinitionCreate:
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "kind": form.get("kind") or "notebook",
        "workspace_path": form.get("workspace_path", "").strip(),
        "callable": form.get("callable", "").strip(),
        "parameters": _json_field(form.get("parameters", ""), "parameters"),
        "kernel": form.get("kernel", "").strip() or "python3",
        "cron": form.get("cron", "").strip() or None,
        "timezone": form.get("timezone", "").strip() or "UTC",
        "timeout": form.get("timeout") or 600,
        "retries": form.get("retries") or 0,
        "tags": [t.strip() for t in form.get("tags", "").split(",") if t.strip()],
        "exclusive": form.get("exclusive") == "on",
        "enabled": form.get("enabled", "on") == "on",
        "spark_master": form.get("spark_master", "").strip(),
        "spark_conf": _json_field(form.get("spark_conf", ""), "spark_conf"),
        "output_formats": form.getlist("output_formats"),
        "after": form.get("after", "").strip() or None,
    }
    for field in ("notebook", "script"):
        data = _upload(field)
        if data is None:
            continue
        if len(data) > MAX_UPLOAD:
            raise InvalidInput(f"{field}: the file is over {MAX_UPLOAD // 2**20} MiB")
        try:
            body[field] = json.loads(data) if field == "notebook" else data.decode()
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"{field}: the file is not a notebook (JSON)") from None
        if field == "notebook" and not isinstance(body[field], dict):
            raise InvalidInput("notebook: the file is not a notebook (a JSON object)")
    return schemas.DefinitionCreate.model_validate(body)


def _update_spec(form: Any, *, kind: str) -> schemas.DefinitionUpdate:
    return schemas.DefinitionUpdate.model_validate(
        {
            "parameters": _json_field(form.get("parameters", ""), "parameters"),
            "cron": form.get("cron", "").strip(),
            "timezone": form.get("timezone", "").strip() or "UTC",
            "timeout": form.get("timeout") or 600,
            "retries": form.get("retries") or 0,
            "tags": [t.strip() for t in form.get("tags", "").split(",") if t.strip()],
            "exclusive": form.get("exclusive") == "on",
            "enabled": form.get("enabled") == "on",
            "output_formats": form.getlist("output_formats"),
            **(
                {
                    "spark_master": form.get("spark_master", "").strip(),
                    "spark_conf": _json_field(form.get("spark_conf", ""), "spark_conf"),
                }
                if kind == "spark"
                else {}
            ),
        }
    )


def _refused(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, PopcornError):
        return helpers.error_details(exc)
    errors = exc.errors() if isinstance(exc, ValidationError) else []
    fields = {".".join(str(p) for p in e["loc"]) or "form": e["msg"] for e in errors}
    return {
        "message": "the definition is not valid",
        "line": None,
        "reason": None,
        "fields": fields,
    }


def _form_page(
    values: dict[str, Any], definition: Any = None, error: Any = None
) -> tuple[str, int]:
    return render_template(
        "notebooks/form.html",
        values=values,
        definition=definition,
        error=error,
        formats=formats.FORMATS,
    ), (422 if error else 200)


@bp.get("/notebooks/new")
@console_auth.needs("operator")
def notebooks_new() -> tuple[str, int]:
    service.require_definer("notebook")
    return _form_page(
        {
            "kind": "notebook",
            "kernel": "python3",
            "timezone": "UTC",
            "timeout": 600,
            "retries": 0,
            "enabled": True,
        }
    )


@bp.post("/notebooks/definitions")
@console_auth.needs("operator")
def notebooks_create() -> Any:
    service.require_definer(request.form.get("kind") or "notebook")
    try:
        spec = _create_spec(request.form)
        with session_scope() as session:
            row = service.create_definition(session=session, spec=spec)
            ref = row.id
    except (PopcornError, ValidationError) as exc:
        values: dict[str, Any] = {k: request.form.get(k, "") for k in FORM_FIELDS}
        values |= {
            "exclusive": request.form.get("exclusive") == "on",
            "enabled": request.form.get("enabled") == "on",
            "output_formats": request.form.getlist("output_formats"),
        }
        return _form_page(values, error=_refused(exc))
    flash(f"Definition {spec.name} created.", "ok")
    return redirect(url_for("web.notebooks_definition", ref=ref))


def _values(definition: dict[str, Any]) -> dict[str, Any]:
    return {
        **definition,
        "parameters": json.dumps(definition["parameters"], indent=1),
        "spark_conf": json.dumps(definition["spark_conf"], indent=1)
        if definition["spark_conf"]
        else "",
        "tags": ", ".join(definition["tags"]),
        "cron": definition["cron"] or "",
    }


@bp.get("/notebooks/definitions/<ref>/edit")
@console_auth.needs("operator")
def notebooks_edit(ref: str) -> tuple[str, int]:
    with session_scope(readonly=True) as session:
        definition = _dump(schemas.DefinitionRead, service.get_definition(session=session, ref=ref))
    service.require_definer(definition["kind"])
    return _form_page(_values(definition), definition)


@bp.post("/notebooks/definitions/<ref>/edit")
@console_auth.needs("operator")
def notebooks_update(ref: str) -> Any:
    with session_scope(readonly=True) as session:
        definition = _dump(schemas.DefinitionRead, service.get_definition(session=session, ref=ref))
    service.require_definer(definition["kind"])
    try:
        spec = _update_spec(request.form, kind=definition["kind"])
        with session_scope() as session:
            service.update_definition(session=session, ref=definition["id"], spec=spec)
    except (PopcornError, ValidationError) as exc:
        values = {
            **_values(definition),
            **{k: request.form.get(k, "") for k in FORM_FIELDS if k in request.form},
        }
        values |= {
            "exclusive": request.form.get("exclusive") == "on",
            "enabled": request.form.get("enabled") == "on",
            "output_formats": request.form.getlist("output_formats"),
        }
        return _form_page(values, definition, _refused(exc))
    flash(f"Definition {definition['name']} saved.", "ok")
    return redirect(url_for("web.notebooks_definition", ref=definition["id"]))


@bp.post("/notebooks/definitions/<ref>/run")
@console_auth.needs("operator")
def notebooks_run_now(ref: str) -> Any:
    """Run now, with the parameters typed over the defaults (a JSON object, may be empty)."""
    try:
        parameters = _json_field(request.form.get("parameters", ""), "parameters")
        with session_scope() as session:
            found = service.run_now(session=session, ref=ref, parameters=parameters)
            run_id = found.id
    except PopcornError as exc:
        flash(exc.message, "error")
        return redirect(url_for("web.notebooks_definition", ref=ref))
    flash(f"Run {run_id} queued.", "ok")
    return redirect(url_for("web.notebooks_run", run_id=run_id))
