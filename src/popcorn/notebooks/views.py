"""Notebooks API (`/api/v1/notebooks`): definitions, runs and their output notebooks, the
archive of saved versions and the published area. Reads need viewer; changes operator,
except creating or changing a definition (its code), which the service keeps for admins
unless kernels run as `notebooks_run_as`."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, request

from popcorn import metrics
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.listing import parse_list_params
from popcorn.lookup import require_id
from popcorn.notebooks import archive, formats, render, service
from popcorn.notebooks import schemas as s

bp = APIBlueprint("notebooks", __name__, tag="notebooks")
metrics.SCRAPE_COLLECTORS.append(service.collect_metrics)


@bp.get("/definitions")
@bp.output(s.DefinitionPage)
@bp.doc(summary="Job definitions (filters: name, kind, origin, workspace_path, enabled)")
def list_definitions() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = service.list_definitions(session=session, params=parse_list_params(request.args))
        return page.serialize(s.DefinitionRead)


@bp.post("/definitions")
@bp.input(s.DefinitionCreate, arg_name="body")
@bp.output(s.DefinitionRead, status_code=201)
@bp.doc(
    summary="Define a notebook, Spark or callable job (notebook, parameters, kernel, cron "
    "checked); admin, or operator for notebook and Spark jobs when notebooks_run_as is set"
)
def create_definition(body: s.DefinitionCreate) -> Any:
    with session_scope() as session:
        return service.create_definition(session=session, spec=body)


@bp.get("/definitions/<ref>")
@bp.output(s.DefinitionRead)
@bp.doc(summary="One definition, by name or id")
def show_definition(ref: str) -> Any:
    with session_scope(readonly=True) as session:
        return service.get_definition(session=session, ref=ref)


@bp.patch("/definitions/<ref>")
@bp.input(s.DefinitionUpdate, arg_name="body")
@bp.output(s.DefinitionRead)
@bp.doc(summary="Change a definition's defaults, schedule, limits or tags (who may: as create)")
def update_definition(ref: str, body: s.DefinitionUpdate) -> Any:
    with session_scope() as session:
        return service.update_definition(session=session, ref=ref, spec=body)


@bp.delete("/definitions/<ref>")
@bp.output(s.DefinitionRead)
@bp.doc(summary="Delete a definition and its runs (stored outputs stay in the object store)")
def delete_definition(ref: str) -> Any:
    with session_scope() as session:
        row = service.get_definition(session=session, ref=ref)
        found = s.DefinitionRead.model_validate(row)
        service.delete_definition(session=session, ref=ref)
        return found


@bp.post("/definitions/<ref>/runs")
@bp.input(s.RunCreate, arg_name="body")
@bp.output(s.RunRead, status_code=202)
@bp.doc(summary="Run now, with these parameters over the defaults")
def run_now(ref: str, body: s.RunCreate) -> Any:
    with session_scope() as session:
        return service.run_now(session=session, ref=ref, parameters=body.parameters)


@bp.get("/runs")
@bp.output(s.RunPage)
@bp.doc(
    summary="Runs (filters: definition_id, status, trigger, created_at; origin=<notebook path>)"
)
def list_runs() -> dict[str, Any]:
    args = request.args.to_dict(flat=False)
    origin = args.pop("origin", [None])[0]
    with session_scope(readonly=True) as session:
        page = service.list_runs(
            session=session, params=parse_list_params(_multi(args)), origin=origin
        )
        return page.serialize(s.RunRead)


def _multi(args: dict[str, list[str]]) -> Any:
    from werkzeug.datastructures import MultiDict

    return MultiDict([(k, v) for k, values in args.items() for v in values])


@bp.get("/runs/<run_id>")
@bp.output(s.RunRead)
@bp.doc(summary="One run: status, duration, parameters, failing cell and traceback")
def show_run(run_id: str) -> Any:
    with session_scope(readonly=True) as session:
        return service.get_run(session=session, run_id=run_id)


@bp.post("/runs/<run_id>/rerun")
@bp.input(s.RunCreate, arg_name="body")
@bp.output(s.RunRead, status_code=202)
@bp.doc(summary="Run again with the same parameters, or these changed")
def rerun(run_id: str, body: s.RunCreate) -> Any:
    with session_scope() as session:
        return service.rerun(session=session, run_id=run_id, parameters=body.parameters)


@bp.post("/runs/<run_id>/cancel")
@bp.output(s.RunRead)
@bp.doc(summary="Cancel a queued or running run (its kernel is stopped)")
def cancel(run_id: str) -> Any:
    with session_scope() as session:
        return service.cancel_run(session=session, run_id=run_id)


@bp.get("/runs/<run_id>/output")
@bp.doc(summary="The run's output notebook (nbformat JSON), as stored")
def run_output(run_id: str) -> Any:
    with session_scope(readonly=True) as session:
        run = service.get_run(session=session, run_id=run_id)
        return render.notebook_json(run.output_key)


@bp.get("/runs/<run_id>/output/<fmt>")
@bp.doc(summary="The run's output as ipynb, or html/markdown/pdf if the definition asked")
def run_output_format(run_id: str, fmt: str) -> Any:
    with session_scope(readonly=True) as session:
        run = service.get_run(session=session, run_id=run_id)
        data, media = service.run_output(run, fmt)
    return Response(
        data,
        mimetype=media,
        headers={
            "Content-Disposition": f'attachment; filename="run-{run.id}.{formats.SUFFIX[fmt]}"',
            "Content-Security-Policy": render.OUTPUT_CSP,
        },
    )


@bp.get("/versions")
@bp.output(s.VersionPage)
@bp.doc(summary="Archived versions (path=<notebook path>)")
def list_versions() -> dict[str, Any]:
    args = request.args.to_dict(flat=False)
    path = args.pop("path", [None])[0]
    with session_scope(readonly=True) as session:
        page = archive.list_versions(
            session=session, params=parse_list_params(_multi(args)), path=path
        )
        return page.serialize(s.VersionRead)


@bp.post("/versions")
@bp.input(s.VersionCreate, arg_name="body")
@bp.output(s.VersionRead, status_code=201)
@bp.doc(summary="Archive a save of a notebook (a new version unless unchanged)")
def save_version(body: s.VersionCreate) -> Any:
    with session_scope() as session:
        return archive.save_version(session=session, path=body.path, notebook=body.notebook)


@bp.get("/versions/content")
@bp.doc(summary="The notebook of one version (path=..., version=N; the latest without it)")
def version_content() -> Any:
    path = request.args.get("path", "")
    if not path:
        raise InvalidInput("path is required", details={"path": ""})
    raw = request.args.get("version")
    version = require_id(raw, field="version") if raw else None
    with session_scope(readonly=True) as session:
        row = archive.get_version(session=session, path=path, version=version)
        return archive.version_content(row)


@bp.get("/published")
@bp.output(s.PublicationPage)
@bp.doc(summary="The published area: stable names and the version each points at")
def list_published() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        items = archive.list_publications(session=session)
        return {"items": items, "count": len(items), "next": None}


@bp.post("/published")
@bp.input(s.PublishCreate, arg_name="body")
@bp.output(s.PublicationRead, status_code=201)
@bp.doc(summary="Publish a version under a stable name (moves the name if it exists)")
def publish(body: s.PublishCreate) -> Any:
    with session_scope() as session:
        row = archive.publish(session=session, path=body.path, version=body.version, slug=body.slug)
        return archive.publication_read(session, row)


@bp.get("/published/<slug>")
@bp.doc(summary="The published notebook (nbformat JSON)")
def published_content(slug: str) -> Any:
    with session_scope(readonly=True) as session:
        row = archive.get_publication(session=session, slug=slug)
        version = archive.get_version_by_id(session=session, version_id=row.version_id)
        return archive.version_content(version)
