"""Device lab pages: the fleet and recent runs, a run with every attempt and its report,
and the failure predictions for a build."""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from popcorn.db import session_scope
from popcorn.devicelab import analysis, scheduling, schemas, service
from popcorn.errors import PopcornError
from popcorn.listing import ListParams
from popcorn.lookup import parse_id
from popcorn.web.views import bp


def _rows(schema: Any, items: list[Any]) -> list[dict[str, Any]]:
    return [schema.model_validate(i).model_dump(mode="json") for i in items]


@bp.get("/devicelab")
def devicelab() -> str:
    with session_scope(readonly=True) as session:
        devices = _rows(
            schemas.DeviceRead,
            service.list_devices(session=session, params=ListParams(limit=1000)).items,
        )
        runs = _rows(
            schemas.RunRead,
            scheduling.list_runs(session=session, params=ListParams(limit=1000)).items,
        )[::-1][:50]
        flaky = analysis.flaky_tests(session=session, limit=20)
    states: dict[str, int] = {}
    for d in devices:
        states[d["agent_state"]] = states.get(d["agent_state"], 0) + 1
    return render_template(
        "devicelab/index.html", devices=devices, runs=runs, flaky=flaky, states=states
    )


@bp.get("/devicelab/runs/<int:run_id>")
def devicelab_run(run_id: int) -> str:
    with session_scope(readonly=True) as session:
        run = schemas.RunRead.model_validate(
            scheduling.get_run(session=session, ref=run_id)
        ).model_dump(mode="json")
        build = schemas.BuildRead.model_validate(
            scheduling.get_build(session=session, ref=run["build_id"])
        ).model_dump(mode="json")
        page = scheduling.list_executions(
            session=session, run=run_id, params=ListParams(limit=100_000)
        )
        executions = page.serialize(schemas.ExecutionRead)["items"]
        status = scheduling.run_status(session=session, ref=run_id)
    return render_template(
        "devicelab/run.html",
        run=run,
        build=build,
        executions=executions,
        status=status,
        active=run["status"] in ("queued", "running"),
    )


@bp.get("/devicelab/predictions")
def devicelab_predictions() -> str:
    build_id = parse_id(request.args.get("build", ""))
    found: dict[str, Any] | None = None
    error = ""
    with session_scope(readonly=True) as session:
        builds = _rows(
            schemas.BuildRead,
            scheduling.list_builds(session=session, params=ListParams(limit=1000)).items,
        )[::-1][:30]
        if build_id is None and builds:
            build_id = builds[0]["id"]
        if build_id is not None:
            try:
                found = analysis.predictions(
                    session=session, build_id=build_id, query="", suite="", devices="", recall=0.99
                )
            except PopcornError as exc:
                error = exc.message
    return render_template(
        "devicelab/predictions.html", builds=builds, build_id=build_id, found=found, error=error
    )
