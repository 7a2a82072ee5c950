"""Traffic pages: region capacity and planned loads, plans with their per-step load chart,
executions (evacuation progress, step by step), and demand forecasts with their backtest."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from popcorn.db import session_scope
from popcorn.errors import PopcornError
from popcorn.listing import ListParams
from popcorn.traffic import executions as execution_service
from popcorn.traffic import forecasts as forecast_service
from popcorn.traffic import planbook, schemas
from popcorn.traffic import plans as plan_service
from popcorn.traffic import regions as region_service
from popcorn.web import auth as console_auth
from popcorn.web import helpers
from popcorn.web.views import OVERVIEW_PANELS, bp

COLORS = ("#1f4fb4", "#d97706", "#1f7a44", "#b4231f", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f")


def _dump(schema: Any, row: Any) -> dict[str, Any]:
    data: dict[str, Any] = schema.model_validate(row).model_dump(mode="json")
    return data


def _usable(row: Any) -> float | None:
    """A region's usable capacity as the planner sees it (None until it is known)."""
    try:
        capacity = region_service.engine_region(row).usable_capacity
    except (PopcornError, ValueError):
        return None
    return float(capacity) if capacity is not None else None


def _regions(session: Session) -> list[dict[str, Any]]:
    rows = region_service.list_regions(session=session, params=ListParams(limit=1000)).items
    out = []
    for row in rows:
        data = region_service.region_dict(row)
        data["usable"] = _usable(row)
        out.append(data)
    return out


def _latest(session: Session, fetch: Any, filters: dict[str, list[str]], size: int) -> list[Any]:
    return list(helpers.newest(fetch, filters, size=size)["items"])


def _loads_chart(loads: dict[str, float], capacity: dict[str, Any]) -> str:
    names = sorted(set(loads) | {k for k, v in capacity.items() if v is not None})
    return helpers.chart(
        [
            {
                "type": "bar",
                "name": "load",
                "x": names,
                "y": [loads.get(n, 0.0) for n in names],
                "marker": {"color": COLORS[0]},
            },
            {
                "type": "bar",
                "name": "usable capacity",
                "x": names,
                "y": [capacity.get(n) for n in names],
                "marker": {"color": "#c9ced8"},
            },
        ],
        barmode="group",
        hovermode="x unified",
        yaxis={"title": {"text": "load"}, "rangemode": "tozero"},
        height=320,
    )


@bp.get("/traffic")
def traffic() -> str:
    with session_scope(readonly=True) as session:
        regions = _regions(session)

        def plans(params: ListParams) -> Any:
            return planbook.list_plans(session=session, params=params)

        def executions(params: ListParams) -> Any:
            return execution_service.list_executions(session=session, params=params)

        def forecasts(params: ListParams) -> Any:
            return forecast_service.list_forecasts(session=session, params=params)

        steering = _latest(session, plans, {"kind": ["steering"]}, 1)
        recent_plans = [_dump(schemas.PlanRead, p) for p in _latest(session, plans, {}, 10)]
        recent_runs = [
            _dump(schemas.ExecutionRead, e) for e in _latest(session, executions, {}, 10)
        ]
        recent_forecasts = [
            _dump(schemas.ForecastRead, f) for f in _latest(session, forecasts, {}, 5)
        ]
        latest = _dump(schemas.PlanDetail, steering[0]) if steering else None
    loads: dict[str, float] = {}
    figure = None
    if latest is not None:
        loads = dict(latest["result"]["steps"][0]["loads"])
        figure = _loads_chart(loads, latest["result"].get("capacity") or {})
    for region in regions:
        load = loads.get(region["name"])
        region["load"] = load
        region["utilisation"] = (
            load / region["usable"] if load is not None and region["usable"] else None
        )
    return render_template(
        "traffic/index.html",
        regions=regions,
        latest=latest,
        figure=figure,
        plans=recent_plans,
        executions=recent_runs,
        forecasts=recent_forecasts,
        chart_page=figure is not None,
    )


def changed_regions(result: dict[str, Any]) -> list[str]:
    """The regions (or CDN sites) whose load changes at some step, and the evacuated ones:
    thirty flat lines of sites a shift does not touch would hide the few that it does."""
    names = list(result.get("region_names") or sorted(result.get("capacity") or {}))
    evacuated = set(result.get("evacuated") or [])
    rows = [result.get("start_loads") or {}] + [s["loads"] for s in result.get("steps") or []]
    changed = []
    for name in names:
        loads = [row.get(name) or 0.0 for row in rows]
        if name in evacuated or (loads and max(loads) - min(loads) > 1e-9 * max(1.0, max(loads))):
            changed.append(name)
    return changed


def _steps_chart(result: dict[str, Any]) -> str:
    """Each region's load at every step of a ramp (start, steps), its capacity dashed."""
    names = list(result.get("region_names") or sorted(result.get("capacity") or {}))
    steps = result.get("steps") or []
    xs: list[Any] = []
    series: dict[str, list[float | None]] = {n: [] for n in names}
    if result.get("start_loads"):
        xs.append("start")
        for n in names:
            series[n].append(result["start_loads"].get(n))
    for step in steps:
        xs.append(f"step {step['index']}")
        for n in names:
            series[n].append(step["loads"].get(n))
    capacity = result.get("capacity") or {}
    traces: list[dict[str, Any]] = []
    shown = set(changed_regions(result))
    for i, name in enumerate(names):
        if name not in shown:
            continue
        color = COLORS[i % len(COLORS)]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": xs,
                "y": series[name],
                "line": {"color": color},
                "legendgroup": name,
            }
        )
        if capacity.get(name) is not None:
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{name} capacity",
                    "x": xs,
                    "y": [capacity[name]] * len(xs),
                    "line": {"color": color, "dash": "dash", "width": 1},
                    "legendgroup": name,
                    "showlegend": False,
                    "hoverinfo": "skip",
                }
            )
    return helpers.chart(
        traces,
        yaxis={"title": {"text": "load"}, "rangemode": "tozero"},
        xaxis={"type": "category"},
        height=360,
    )


@bp.get("/traffic/plans/<plan_id>")
def traffic_plan(plan_id: str) -> str:
    with session_scope(readonly=True) as session:
        plan = _dump(schemas.PlanDetail, plan_service.get_plan(session=session, plan_id=plan_id))
        runs = execution_service.list_executions(
            session=session, params=ListParams(limit=50, filters={"plan_id": [str(plan["id"])]})
        )
        executions = [_dump(schemas.ExecutionRead, e) for e in runs.items]
        regions = [r["name"] for r in _regions(session)]
    result = plan["result"]
    figure = (
        _loads_chart(result["steps"][0]["loads"], result.get("capacity") or {})
        if plan["kind"] == "steering" and result.get("steps")
        else _steps_chart(result)
    )
    changed = changed_regions(result)
    return render_template(
        "traffic/plan.html",
        plan=plan,
        result=result,
        changed=changed,
        unchanged=len(result.get("region_names") or []) - len(changed),
        figure=figure,
        executions=executions,
        regions=regions,
        chart_page=True,
    )


@bp.post("/traffic/plans")
@console_auth.needs("operator")
def traffic_plan_create() -> Any:
    kind = request.form.get("kind", "steering")
    reason = request.form.get("reason", "").strip()
    try:
        with session_scope() as session:
            if kind == "evacuation":
                steps = request.form.get("steps", "10")
                spec: Any = schemas.EvacuationCreate(
                    evacuate=request.form.getlist("evacuate"),
                    steps=int(steps) if steps.isdigit() else 10,
                    reason=reason,
                )
                plan = plan_service.plan_evacuation_for(session=session, spec=spec)
            else:
                plan = plan_service.plan_steering_for(
                    session=session, spec=schemas.SteeringCreate(reason=reason)
                )
            plan_id = plan.id
    except (PopcornError, ValueError) as exc:
        flash(getattr(exc, "message", None) or _first_line(exc), "error")
        return redirect(url_for("web.traffic"))
    return redirect(url_for("web.traffic_plan", plan_id=plan_id))


def _first_line(exc: Exception) -> str:
    """A pydantic error as one readable line: `evacuate: List should have at least 1 item`."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc).splitlines()[0]


@bp.post("/traffic/plans/<plan_id>/execute")
@console_auth.needs("operator")
def traffic_execute(plan_id: str) -> Any:
    try:
        with session_scope() as session:
            execution = execution_service.execute_plan(session=session, plan_id=plan_id)
            execution_id = execution.id
    except PopcornError as exc:
        flash(exc.message, "error")
        return redirect(url_for("web.traffic_plan", plan_id=plan_id))
    flash(f"Execution {execution_id} queued.", "ok")
    return redirect(url_for("web.traffic_execution", execution_id=execution_id))


@bp.get("/traffic/executions/<execution_id>")
def traffic_execution(execution_id: str) -> str:
    with session_scope(readonly=True) as session:
        execution = execution_service.execution_detail(session=session, execution_id=execution_id)
        plan = _dump(
            schemas.PlanRead, plan_service.get_plan(session=session, plan_id=execution["plan_id"])
        )
    done = sum(1 for s in execution["steps"] if s["status"] == "succeeded")
    return render_template(
        "traffic/execution.html",
        execution=execution,
        plan=plan,
        done=done,
        active=execution["status"] in ("pending", "running"),
    )


@bp.post("/traffic/executions/<execution_id>/cancel")
@console_auth.needs("operator")
def traffic_cancel(execution_id: str) -> Any:
    try:
        with session_scope() as session:
            row = execution_service.cancel_execution(session=session, execution_id=execution_id)
            status = row.status
    except PopcornError as exc:
        flash(exc.message, "error")
    else:
        flash(
            "Canceled before it changed anything."
            if status == "canceled"
            else "Cancel requested: it stops and rolls back at its next check.",
            "ok",
        )
    return redirect(url_for("web.traffic_execution", execution_id=execution_id))


@bp.get("/traffic/forecasts/<forecast_id>")
def traffic_forecast(forecast_id: str) -> str:
    with session_scope(readonly=True) as session:
        row = forecast_service.get_forecast(session=session, forecast_id=forecast_id)
        forecast = _dump(schemas.ForecastDetail, row)
        history = list(row.history)
        actuals = forecast_service.forecast_actuals(session=session, forecast=row)
        region = (
            region_service.region_dict(
                region_service.get_region(session=session, ref=row.region_id)
            )
            if row.region_id
            else None
        )
    start = helpers.as_datetime(forecast["start"])
    assert start is not None
    step = timedelta(seconds=forecast["step_seconds"])
    past = [(start - step * (len(history) - i)).isoformat() for i in range(len(history))]
    future = [(start + step * i).isoformat() for i in range(len(forecast["values"]))]
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines", "name": "history", "x": past, "y": history,
         "line": {"color": "#667085"}},
        {"type": "scatter", "mode": "lines", "name": "forecast", "x": future,
         "y": helpers.finite(forecast["values"]), "line": {"color": COLORS[0]}},
    ]  # fmt: skip
    if actuals:
        traces.append(
            {"type": "scatter", "mode": "lines", "name": "actual", "x": future[: len(actuals)],
             "y": helpers.finite(actuals), "line": {"color": COLORS[1]}}
        )  # fmt: skip
    scaling = forecast.get("scaling") or None
    if scaling and scaling.get("instances"):
        traces.append(
            {"type": "scatter", "mode": "lines", "name": "planned instances", "x": future,
             "y": scaling["instances"], "yaxis": "y2", "line": {"color": COLORS[2], "shape": "hv"}}
        )  # fmt: skip
    layout: dict[str, Any] = {
        "xaxis": {"type": "date", "title": {"text": "time (UTC)"}},
        "yaxis": {"title": {"text": "demand"}, "rangemode": "tozero"},
        "height": 380,
    }
    if scaling and scaling.get("instances"):
        layout["yaxis2"] = {
            "title": {"text": "instances"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
        }
    return render_template(
        "traffic/forecast.html",
        forecast=forecast,
        region=region,
        scaling=scaling,
        figure=helpers.chart(traces, **layout),
        chart_page=True,
    )


def traffic_panel(session: Session) -> dict[str, Any]:
    def executions(params: ListParams) -> Any:
        return execution_service.list_executions(session=session, params=params)

    def plans(params: ListParams) -> Any:
        return planbook.list_plans(session=session, params=params)

    rows: list[tuple[str, Any, str | None]] = []
    for run in _latest(session, executions, {"status__in": ["pending,running"]}, 3):
        rows.append(
            (
                f"plan {run.plan_id} executing",
                f"step {run.current_step} of {run.total_steps}",
                url_for("web.traffic_execution", execution_id=run.id),
            )
        )
    for plan in _latest(session, plans, {}, 3):
        rows.append(
            (
                f"{plan.kind} plan #{plan.id}"
                + (f" off {', '.join(plan.evacuated)}" if plan.evacuated else ""),
                "feasible" if plan.feasible else "infeasible",
                url_for("web.traffic_plan", plan_id=plan.id),
            )
        )
    regions = region_service.list_regions(session=session, params=ListParams(limit=1)).count
    if regions and not rows:
        rows.append(("regions", regions, url_for("web.traffic")))
    return {
        "title": "Traffic",
        "link": url_for("web.traffic"),
        "rows": rows,
        "empty": "No traffic regions yet.",
    }


OVERVIEW_PANELS.append(traffic_panel)
