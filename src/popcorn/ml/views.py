"""ML API (`/api/v1/ml`): flows, runs (with Metaflow's steps, artifacts, cards), schedules,
the model registry and predictions. Reads need viewer; runs, promotions, rollbacks and
predictions operator (a prediction runs model code)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, request

from popcorn import metrics
from popcorn.db import session_scope
from popcorn.listing import parse_list_params
from popcorn.ml import registry, service
from popcorn.ml import schemas as s

bp = APIBlueprint("ml", __name__, tag="ml")

# A card is a flow's HTML: shown in a sandbox that runs no script and reaches nothing.
metrics.SCRAPE_COLLECTORS.append(service.collect_metrics)

CARD_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@bp.get("/flows")
@bp.output(s.FlowList)
@bp.doc(summary="Flows: shipped, from installed domains and from the ml_flows_dir directory")
def list_flows() -> dict[str, Any]:
    return {"items": [service.flow_read(f) for f in service.list_flows()]}


@bp.get("/runs")
@bp.output(s.RunPage)
@bp.doc(summary="Runs, oldest first (filters: flow, status, created_at, created_by)")
def list_runs() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        page = service.list_runs(session=session, params=parse_list_params(request.args))
        return {
            "items": [service.run_read(r) for r in page.items],
            "count": page.count,
            "next": page.next,
        }


@bp.post("/runs")
@bp.input(s.RunCreate, arg_name="body")
@bp.output(s.RunRead, status_code=202)
@bp.doc(summary="Run a flow as a Popcorn job (parameters as strings, as on the command line)")
def create_run(body: s.RunCreate) -> Any:
    with session_scope() as session:
        return service.run_read(service.start_run(session=session, spec=body))


@bp.get("/runs/<run_id>")
@bp.output(s.RunDetail)
@bp.doc(summary="A run with Metaflow's steps, artifacts, cards and the failing step")
def show_run(run_id: str) -> Any:
    with session_scope(readonly=True) as session:
        return service.run_detail(session=session, ref=run_id)


@bp.get("/runs/<run_id>/log")
@bp.doc(summary="The run's log (stdout and stderr of the flow), as text")
def run_log(run_id: str) -> Response:
    with session_scope(readonly=True) as session:
        text = service.read_log(session=session, ref=run_id)
    return Response(text, mimetype="text/plain")


@bp.get("/runs/<run_id>/cards/<step>")
@bp.doc(summary="The card of a step, as HTML, served sandboxed (no scripts)")
def run_card(run_id: str, step: str) -> Response:
    with session_scope(readonly=True) as session:
        html = service.run_card(session=session, ref=run_id, step=step)
    answer = Response(html, mimetype="text/html")
    answer.headers["Content-Security-Policy"] = CARD_CSP
    return answer


@bp.post("/runs/<run_id>/cancel")
@bp.output(s.RunRead)
@bp.doc(summary="Cancel a run: its process tree is killed and it ends failed, resumable")
def cancel_run(run_id: str) -> Any:
    with session_scope() as session:
        return service.run_read(service.cancel_run(session=session, ref=run_id))


@bp.post("/runs/<run_id>/resume")
@bp.output(s.RunRead, status_code=202)
@bp.doc(summary="Resume a failed run with Metaflow's resume (a new run)")
def resume_run(run_id: str) -> Any:
    with session_scope() as session:
        return service.run_read(service.resume_run(session=session, ref=run_id))


@bp.get("/schedules")
@bp.output(s.ScheduleList)
@bp.doc(summary="Flows run on a schedule by Popcorn's scheduler")
def list_schedules() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return {"items": service.list_schedules(session=session)}


@bp.post("/schedules")
@bp.input(s.ScheduleCreate, arg_name="body")
@bp.output(s.ScheduleRead, status_code=201)
@bp.doc(summary="Run a flow on a cron expression or every N seconds")
def create_schedule(body: s.ScheduleCreate) -> Any:
    with session_scope() as session:
        return service.create_schedule(session=session, spec=body)


@bp.delete("/schedules/<name>")
@bp.output(s.ScheduleRead)
@bp.doc(summary="Stop running a flow on a schedule")
def delete_schedule(name: str) -> Any:
    with session_scope() as session:
        return service.delete_schedule(session=session, name=name)


@bp.get("/models")
@bp.output(s.ModelList)
@bp.doc(summary="Models with their versions and the promoted one")
def list_models() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return {"items": [registry.model_read(m) for m in registry.list_models(session=session)]}


@bp.get("/models/<name>")
@bp.output(s.ModelRead)
@bp.doc(summary="A model, its versions and promotion history")
def show_model(name: str) -> Any:
    with session_scope(readonly=True) as session:
        return registry.model_read(registry.get_model(session=session, name=name))


@bp.post("/models/promote")
@bp.input(s.PromoteRequest, arg_name="body")
@bp.output(s.ModelRead)
@bp.doc(summary="Promote a succeeded run's model (stored in the object store, audited)")
def promote(body: s.PromoteRequest) -> Any:
    with session_scope() as session:
        run = service.get_run(session=session, ref=body.run)
        registry.promote_run(session=session, run=run)
        return registry.model_read(registry.get_model(session=session, name=run.flow))


@bp.post("/models/<name>/rollback")
@bp.input(s.RollbackRequest, arg_name="body")
@bp.output(s.ModelRead)
@bp.doc(summary="Serve the previously promoted version again (or a given one); audited")
def rollback(name: str, body: s.RollbackRequest) -> Any:
    with session_scope() as session:
        return registry.model_read(registry.rollback(session=session, name=name, to=body.to))


@bp.post("/models/<name>/predict")
@bp.input(s.PredictRequest, arg_name="body")
@bp.output(s.PredictResponse)
@bp.doc(summary="Predictions of the promoted version (422 names a field, 404 if none)")
def predict(name: str, body: s.PredictRequest) -> Any:
    with session_scope(readonly=True) as session:
        return registry.predict(session=session, name=name, rows=body.rows)
