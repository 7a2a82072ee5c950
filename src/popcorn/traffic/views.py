"""Traffic API (`/api/v1/traffic`): regions, groups, costs, plans, executions, forecasts,
placements and settings. Reads need viewer, changes operator, settings admin."""

from __future__ import annotations

import json
from typing import Any

from apiflask import APIBlueprint
from apiflask.schemas import FileSchema
from flask import Response, request

from popcorn import metrics
from popcorn.app import role
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.listing import parse_list_params
from popcorn.traffic import costs as cost_service
from popcorn.traffic import executions as execution_service
from popcorn.traffic import forecasts as forecast_service
from popcorn.traffic import placements as placement_service
from popcorn.traffic import planbook, service
from popcorn.traffic import plans as plan_service
from popcorn.traffic import regions as region_service
from popcorn.traffic import schemas as s

bp = APIBlueprint("traffic", __name__, tag="traffic")
PNG = FileSchema(type="string", format="binary")

metrics.SCRAPE_COLLECTORS.append(service.collect_metrics)


def _png(data: bytes) -> Response:
    return Response(data, content_type="image/png")


def _body_json() -> Any:
    try:
        return json.loads(request.get_data(as_text=True) or "null")
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"body: not valid JSON (line {exc.lineno}): {exc.msg}") from None
    except RecursionError:
        raise InvalidInput("body: JSON nested too deeply") from None


# --- regions ---------------------------------------------------------------------------------


@bp.get("/regions")
@bp.output(s.RegionPage)
@bp.doc(summary="Regions and CDN sites (filters: name, kind, source, aws_region, q)")
def list_regions() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        result = region_service.list_regions(
            session=session, params=parse_list_params(request.args)
        )
        return result.serialize(s.RegionRead)


@bp.post("/regions")
@bp.input(s.RegionCreate, arg_name="body")
@bp.output(s.RegionRead, status_code=201)
@bp.doc(summary="Add a region: capacity (measured, or instances x throughput), limits, AWS")
def create_region(body: s.RegionCreate) -> Any:
    with session_scope() as session:
        return region_service.create_region(
            session=session, data=body.model_dump(exclude_unset=True)
        )


@bp.post("/regions/sync")
@bp.output(s.SyncResult)
@bp.doc(summary="Create or refresh regions from inventory cloud-region and CDN sites")
def sync_regions() -> dict[str, Any]:
    with session_scope() as session:
        return region_service.sync_from_inventory(session=session)


@bp.get("/regions/<name>")
@bp.output(s.RegionRead)
@bp.doc(summary="One region")
def show_region(name: str) -> Any:
    with session_scope(readonly=True) as session:
        return region_service.get_region(session=session, ref=name)


@bp.patch("/regions/<name>")
@bp.input(s.RegionUpdate, arg_name="body")
@bp.output(s.RegionRead)
@bp.doc(summary="Change a region (null clears a field)")
def update_region(name: str, body: s.RegionUpdate) -> Any:
    with session_scope() as session:
        return region_service.update_region(
            session=session, ref=name, data=body.model_dump(exclude_unset=True)
        )


@bp.delete("/regions/<name>")
@bp.output(s.RegionRead)
@bp.doc(summary="Remove a region and its costs")
def delete_region(name: str) -> Any:
    with session_scope() as session:
        return region_service.delete_region(session=session, ref=name)


@bp.get("/regions/<name>/history")
@bp.output(s.ChangePage)
@bp.doc(summary="Change history of a region")
def region_history(name: str) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        records = region_service.region_history(session=session, ref=name)
        items = [s.ChangeRead.model_validate(r, from_attributes=True) for r in records]
        return {"items": items, "count": len(items), "next": None}


# --- groups and costs ------------------------------------------------------------------------


@bp.get("/groups")
@bp.output(s.GroupPage)
@bp.doc(summary="Client groups (filters: name, kind, demand_source, q)")
def list_groups() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        result = region_service.list_groups(session=session, params=parse_list_params(request.args))
        return result.serialize(s.GroupRead)


@bp.post("/groups")
@bp.input(s.GroupCreate, arg_name="body")
@bp.output(s.GroupRead, status_code=201)
@bp.doc(summary="Add a client group with its demand (given, signals selector or forecast)")
def create_group(body: s.GroupCreate) -> Any:
    with session_scope() as session:
        return region_service.create_group(
            session=session, data=body.model_dump(exclude_unset=True)
        )


@bp.get("/groups/<name>")
@bp.output(s.GroupRead)
@bp.doc(summary="One client group")
def show_group(name: str) -> Any:
    with session_scope(readonly=True) as session:
        return region_service.get_group(session=session, ref=name)


@bp.patch("/groups/<name>")
@bp.input(s.GroupUpdate, arg_name="body")
@bp.output(s.GroupRead)
@bp.doc(summary="Change a client group")
def update_group(name: str, body: s.GroupUpdate) -> Any:
    with session_scope() as session:
        return region_service.update_group(
            session=session, ref=name, data=body.model_dump(exclude_unset=True)
        )


@bp.delete("/groups/<name>")
@bp.output(s.GroupRead)
@bp.doc(summary="Remove a client group and its costs")
def delete_group(name: str) -> Any:
    with session_scope() as session:
        return region_service.delete_group(session=session, ref=name)


@bp.get("/costs")
@bp.output(s.CostMatrix)
@bp.doc(summary="The cost matrix: groups x regions, null where a pair is not allowed")
def get_costs() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return cost_service.cost_matrix(session=session, kind=request.args.get("kind"))


@bp.put("/costs")
@bp.output(s.CostsStored)
@bp.doc(
    summary="Upload costs (JSON or CSV body, or a multipart file `file`); `?replace=false` "
    "merges instead of replacing the whole matrix"
)
def put_costs() -> dict[str, Any]:
    replace = request.args.get("replace", "true").lower() not in ("0", "false", "no")
    upload = request.files.get("file")
    if upload is not None:
        entries = cost_service.parse_costs(upload.read(), filename=upload.filename or "")
    elif request.mimetype in ("text/csv", "text/plain"):
        entries = cost_service.parse_costs(request.get_data(), fmt="csv")
    else:
        entries = cost_service.cost_entries(_body_json())
    with session_scope() as session:
        return cost_service.set_costs(session=session, entries=entries, replace=replace)


# --- plans -----------------------------------------------------------------------------------


@bp.get("/plans")
@bp.output(s.PlanPage)
@bp.doc(summary="Plans (filters: kind, region_kind, feasible, parent_id, created_at__gte)")
def list_plans() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        result = planbook.list_plans(session=session, params=parse_list_params(request.args))
        return result.serialize(s.PlanRead)


@bp.post("/plans")
@bp.input(s.SteeringCreate, arg_name="body")
@bp.output(s.PlanDetail, status_code=201)
@bp.doc(summary="Make a steering plan; demand that cannot fit gives feasible=false and why")
def create_plan(body: s.SteeringCreate) -> Any:
    with session_scope() as session:
        return plan_service.plan_steering_for(session=session, spec=body)


@bp.post("/evacuations")
@bp.input(s.EvacuationCreate, arg_name="body")
@bp.output(s.PlanDetail, status_code=201)
@bp.doc(summary="Plan a regional evacuation: scale-up, then per-step loads and weights")
def create_evacuation(body: s.EvacuationCreate) -> Any:
    with session_scope() as session:
        return plan_service.plan_evacuation_for(session=session, spec=body)


@bp.post("/shifts")
@bp.input(s.ShiftCreate, arg_name="body")
@bp.output(s.PlanDetail, status_code=201)
@bp.doc(summary="Plan moving a CDN site's load to the other CDN sites")
def create_shift(body: s.ShiftCreate) -> Any:
    with session_scope() as session:
        return plan_service.shift_site_load(
            session=session, site=body.site, reason=body.reason, device=body.device
        )


@bp.get("/plans/<plan_id>")
@bp.output(s.PlanDetail)
@bp.doc(summary="One plan with its inputs and result")
def show_plan(plan_id: str) -> Any:
    with session_scope(readonly=True) as session:
        return plan_service.get_plan(session=session, plan_id=plan_id)


@bp.post("/plans/<plan_id>/return")
@bp.input(s.ReturnCreate, arg_name="body")
@bp.output(s.PlanDetail, status_code=201)
@bp.doc(summary="Plan the return of an evacuation")
def create_return(plan_id: str, body: s.ReturnCreate) -> Any:
    with session_scope() as session:
        return plan_service.plan_return_for(session=session, plan_id=plan_id, spec=body)


@bp.get("/plans/<plan_id>/plot.png")
@bp.output(PNG, content_type="image/png")
@bp.doc(summary="Region loads per step against capacity, as a PNG")
def plan_plot(plan_id: str) -> Response:
    with session_scope(readonly=True) as session:
        return _png(plan_service.plan_png(session=session, plan_id=plan_id))


@bp.post("/plans/<plan_id>/execute")
@bp.input(s.ExecuteCreate, arg_name="body")
@bp.output(s.ExecutionRead, status_code=202)
@bp.doc(summary="Execute a feasible plan on AWS as a job (pre-scale, shift, health checks)")
def execute_plan(plan_id: str, body: s.ExecuteCreate) -> Any:
    with session_scope() as session:
        return execution_service.execute_plan(session=session, plan_id=plan_id, spec=body)


# --- executions ------------------------------------------------------------------------------


@bp.get("/executions")
@bp.output(s.ExecutionPage)
@bp.doc(summary="Executions (filters: plan_id, status, created_at__gte)")
def list_executions() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        result = execution_service.list_executions(
            session=session, params=parse_list_params(request.args)
        )
        return result.serialize(s.ExecutionRead)


@bp.get("/executions/<execution_id>")
@bp.output(s.ExecutionDetail)
@bp.doc(summary="One execution with its captured state and steps")
def show_execution(execution_id: str) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return execution_service.execution_detail(session=session, execution_id=execution_id)


@bp.post("/executions/<execution_id>/cancel")
@bp.output(s.ExecutionRead)
@bp.doc(summary="Cancel: the execution stops at the next check and rolls back")
def cancel_execution(execution_id: str) -> Any:
    with session_scope() as session:
        return execution_service.cancel_execution(session=session, execution_id=execution_id)


# --- forecasts and placements ----------------------------------------------------------------


@bp.get("/forecasts")
@bp.output(s.ForecastPage)
@bp.doc(summary="Forecasts (filters: region_id, source, created_at__gte)")
def list_forecasts() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        result = forecast_service.list_forecasts(
            session=session, params=parse_list_params(request.args)
        )
        return result.serialize(s.ForecastRead)


@bp.post("/forecasts")
@bp.input(s.ForecastCreate, arg_name="body")
@bp.output(s.ForecastDetail, status_code=201)
@bp.doc(summary="Forecast demand (signals selector or history), backtest MAPE, scaling plan")
def create_forecast(body: s.ForecastCreate) -> Any:
    with session_scope() as session:
        return forecast_service.create_forecast(session=session, spec=body)


@bp.get("/forecasts/<forecast_id>")
@bp.output(s.ForecastDetail)
@bp.doc(summary="One forecast with its values and scaling plan")
def show_forecast(forecast_id: str) -> Any:
    with session_scope(readonly=True) as session:
        return forecast_service.get_forecast(session=session, forecast_id=forecast_id)


@bp.get("/forecasts/<forecast_id>/plot.png")
@bp.output(PNG, content_type="image/png")
@bp.doc(summary="History, forecast and (once known) actuals, as a PNG")
def forecast_plot(forecast_id: str) -> Response:
    with session_scope(readonly=True) as session:
        return _png(forecast_service.forecast_plot(session=session, forecast_id=forecast_id))


@bp.get("/placements")
@bp.output(s.PlacementPage)
@bp.doc(summary="Content placement plans")
def list_placements() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        result = placement_service.list_placements(
            session=session, params=parse_list_params(request.args)
        )
        return result.serialize(s.PlacementRead)


@bp.post("/placements")
@bp.output(s.PlacementDetail, status_code=201)
@bp.doc(
    summary="Plan content placement: JSON body, or multipart files `popularity` (site, title, "
    "requests), `sizes` (title, size) and optional `storage` (site, storage) as CSV/Parquet/JSON"
)
def create_placement() -> Any:
    if request.files:
        tables: dict[str, Any] = {}
        for name in ("popularity", "sizes", "storage"):
            upload = request.files.get(name)
            if upload is not None:
                tables[name] = service.read_table(
                    upload.read(), name=name, filename=upload.filename or ""
                )
        data = {**tables, **{k: v for k, v in request.form.items() if k in ("name", "strategy")}}
    else:
        data = _body_json()
    spec = placement_service.placement_spec(data)
    with session_scope() as session:
        return placement_service.create_placement(session=session, spec=spec)


@bp.get("/placements/<placement_id>")
@bp.output(s.PlacementDetail)
@bp.doc(summary="One placement plan with each site's titles in fill order")
def show_placement(placement_id: str) -> Any:
    with session_scope(readonly=True) as session:
        return placement_service.get_placement(session=session, placement_id=placement_id)


# --- settings --------------------------------------------------------------------------------


@bp.get("/settings")
@bp.output(s.SettingsRead)
@bp.doc(summary="AWS endpoint, region and profile, health check and timeouts")
def get_settings() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return service.get_settings_view(session=session)


@bp.patch("/settings")
@role("admin")
@bp.input(s.SettingsUpdate, arg_name="body")
@bp.output(s.SettingsRead)
@bp.doc(summary="Change traffic settings (null puts one back to its default)")
def update_settings(body: s.SettingsUpdate) -> dict[str, Any]:
    with session_scope() as session:
        return service.update_settings(session=session, changes=body.model_dump(exclude_unset=True))
