"""Notebook pages: definitions, runs, one run with its output notebook, the published area.

Stored notebooks are rendered by nbconvert into a separate, script-free page served with
its own sandboxing Content-Security-Policy and shown in an `<iframe sandbox>`.
"""

from __future__ import annotations

from typing import Any

from flask import Response, render_template

from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.notebooks import archive, render, schemas, service
from popcorn.web.views import bp


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
    return render_template("notebooks/definition.html", definition=definition, runs=runs)


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
    from popcorn.notebooks.formats import SUFFIX

    with session_scope(readonly=True) as session:
        found = service.get_run(session=session, run_id=run_id)
        data, media = service.run_output(found, fmt)
    response = Response(data, mimetype=media)
    response.headers["Content-Disposition"] = (
        f'attachment; filename="run-{found.id}.{SUFFIX[fmt]}"'
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
