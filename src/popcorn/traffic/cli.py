"""`popcorn traffic …`: regions, groups and costs; plan, evacuate, return, execute, cancel;
forecast and placement."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from popcorn.cli import PopcornGroup, json_option, output, parse_kv, progress, with_actor
from popcorn.db import session_scope
from popcorn.listing import parse_list_params
from popcorn.traffic import costs as cost_service
from popcorn.traffic import planbook, service
from popcorn.traffic import regions as region_service
from popcorn.traffic import schemas as s

REGION_COLUMNS = [
    "name",
    "kind",
    "capacity",
    "instances",
    "throughput_per_instance",
    "headroom",
    "max_instances",
    "aws_region",
    "asg_name",
]
GROUP_COLUMNS = ["name", "kind", "demand_source", "demand", "demand_selector"]
PLAN_COLUMNS = ["id", "kind", "region_kind", "feasible", "evacuated", "reason", "created_at"]
EXECUTION_COLUMNS = ["id", "plan_id", "status", "current_step", "total_steps", "error"]
STEP_COLUMNS = ["position", "kind", "name", "status", "error"]


@click.group("traffic", cls=PopcornGroup)
def group() -> None:
    """Demand Engineering: steering, regional evacuation, forecasting and content placement."""


def _rows(result: Any, schema: type[s.ReadSchema]) -> list[dict[str, Any]]:
    return [schema.model_validate(i).model_dump(mode="json") for i in result.items]


def _list_args(filters: tuple[str, ...]) -> dict[str, Any]:
    return {"limit": "1000", **{k: str(v) for k, v in parse_kv(filters).items()}}


# --- regions ---------------------------------------------------------------------------------


@group.group("regions", cls=PopcornGroup)
def regions_group() -> None:
    """Regions and CDN sites with their capacity and AWS binding."""


@regions_group.command("list")
@click.argument("filters", nargs=-1)
@json_option
def regions_list(filters: tuple[str, ...], as_json: bool) -> None:
    """List regions; FILTERS are key=value (kind=cdn, name__ic=east)."""
    with session_scope(readonly=True) as session:
        result = region_service.list_regions(
            session=session, params=parse_list_params(_list_args(filters))
        )
        rows = _rows(result, s.RegionRead)
    output(rows, as_json=as_json, columns=REGION_COLUMNS)


def _region_options(func: Any) -> Any:
    options = [
        click.option("--kind", type=click.Choice(["cloud", "cdn"])),
        click.option(
            "--capacity", type=float, help="Measured capacity (req/s; Gbps for a CDN site)."
        ),
        click.option("--instances", type=int),
        click.option("--throughput-per-instance", type=float, help="req/s per instance."),
        click.option("--headroom", type=float, help="Share of capacity kept free, 0..1."),
        click.option("--max-instances", type=int),
        click.option("--readiness-seconds", type=float),
        click.option("--aws-region"),
        click.option("--asg-name"),
        click.option("--set", "extra", multiple=True, help="Any other field as key=value."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _region_data(kwargs: dict[str, Any]) -> dict[str, Any]:
    extra = parse_kv(kwargs.pop("extra"))
    return {**{k: v for k, v in kwargs.items() if v is not None}, **extra}


@regions_group.command("add")
@click.argument("name")
@_region_options
@json_option
@with_actor
def regions_add(name: str, as_json: bool, **kwargs: Any) -> None:
    """Add a region (capacity, or instances and throughput per instance)."""
    with session_scope() as session:
        row = region_service.create_region(
            session=session, data={"name": name, **_region_data(kwargs)}
        )
        data = region_service.region_dict(row)
    output(data, as_json=as_json)


@regions_group.command("update")
@click.argument("name")
@_region_options
@json_option
@with_actor
def regions_update(name: str, as_json: bool, **kwargs: Any) -> None:
    """Change a region; `--set field=null` clears a field."""
    with session_scope() as session:
        row = region_service.update_region(session=session, ref=name, data=_region_data(kwargs))
        data = region_service.region_dict(row)
    output(data, as_json=as_json)


@regions_group.command("remove")
@click.argument("name")
@with_actor
def regions_remove(name: str) -> None:
    """Remove a region."""
    with session_scope() as session:
        region_service.delete_region(session=session, ref=name)
    click.echo(f"removed region {name}")


@regions_group.command("sync")
@json_option
@with_actor
def regions_sync(as_json: bool) -> None:
    """Create or refresh regions from inventory cloud-region and CDN sites."""
    with session_scope() as session:
        result = region_service.sync_from_inventory(session=session)
    output(result, as_json=as_json)


# --- groups and costs ------------------------------------------------------------------------


@group.group("groups", cls=PopcornGroup)
def groups_group() -> None:
    """Client groups (countries, ISPs, networks) and their demand."""


@groups_group.command("list")
@click.argument("filters", nargs=-1)
@json_option
def groups_list(filters: tuple[str, ...], as_json: bool) -> None:
    """List client groups and their demand; FILTERS are key=value."""
    with session_scope(readonly=True) as session:
        result = region_service.list_groups(
            session=session, params=parse_list_params(_list_args(filters))
        )
        rows = _rows(result, s.GroupRead)
    output(rows, as_json=as_json, columns=GROUP_COLUMNS)


def _group_options(func: Any) -> Any:
    options = [
        click.option("--kind", type=click.Choice(["country", "isp", "network", "other"])),
        click.option("--demand", type=float, help="Requests per second (Gbps for CDN demand)."),
        click.option("--selector", "demand_selector", help="Signals selector for the demand."),
        click.option("--demand-source", type=click.Choice(["given", "signals", "forecast"])),
        click.option("--set", "extra", multiple=True, help="Any other field as key=value."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@groups_group.command("add")
@click.argument("name")
@_group_options
@json_option
@with_actor
def groups_add(name: str, as_json: bool, **kwargs: Any) -> None:
    """Add a client group with its demand (given, from signals or a forecast)."""
    data = _region_data(kwargs)
    if "demand_selector" in data and "demand_source" not in data:
        data["demand_source"] = "signals"
    with session_scope() as session:
        row = region_service.create_group(session=session, data={"name": name, **data})
        out = region_service.group_dict(row)
    output(out, as_json=as_json)


@groups_group.command("update")
@click.argument("name")
@_group_options
@json_option
@with_actor
def groups_update(name: str, as_json: bool, **kwargs: Any) -> None:
    """Change a client group."""
    with session_scope() as session:
        row = region_service.update_group(session=session, ref=name, data=_region_data(kwargs))
        out = region_service.group_dict(row)
    output(out, as_json=as_json)


@groups_group.command("remove")
@click.argument("name")
@with_actor
def groups_remove(name: str) -> None:
    """Remove a client group."""
    with session_scope() as session:
        region_service.delete_group(session=session, ref=name)
    click.echo(f"removed group {name}")


@group.group("costs", cls=PopcornGroup)
def costs_group() -> None:
    """The group x region cost (latency) matrix."""


@costs_group.command("show")
@click.option("--kind", type=click.Choice(["cloud", "cdn"]))
@json_option
def costs_show(kind: str | None, as_json: bool) -> None:
    """Show the cost matrix (group x region)."""
    with session_scope(readonly=True) as session:
        data = cost_service.cost_matrix(session=session, kind=kind)
    if as_json:
        output(data, as_json=True)
        return
    rows = [
        {"group": g, **dict(zip(data["regions"], row, strict=True))}
        for g, row in zip(data["groups"], data["matrix"], strict=True)
    ]
    output(rows, as_json=False, columns=["group", *data["regions"]])


@costs_group.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--merge", is_flag=True, help="Keep pairs the file does not mention.")
@with_actor
def costs_load(path: Path, merge: bool) -> None:
    """Load costs from JSON or CSV (group,region,cost rows, or a group column plus one
    column per region)."""
    entries = cost_service.parse_costs(path.read_bytes(), filename=path.name)
    with session_scope() as session:
        result = cost_service.set_costs(session=session, entries=entries, replace=not merge)
    click.echo(f"{result['pairs']} cost pair(s) stored ({result['given']} given)")


# --- settings and a world to try -------------------------------------------------------------


@group.command("settings")
@click.option("--set", "changes", multiple=True, help="key=value (null for the default).")
@json_option
@with_actor
def settings_command(changes: tuple[str, ...], as_json: bool) -> None:
    """Show or change the AWS endpoint, region, profile, health check and timeouts."""
    with session_scope() as session:
        if changes:
            spec = s.SettingsUpdate.model_validate(parse_kv(changes))
            data = service.update_settings(
                session=session, changes=spec.model_dump(exclude_unset=True)
            )
        else:
            data = service.get_settings_view(session=session)
    output(data, as_json=as_json)


@group.command("generate")
@click.option("--regions", default="us-east-1,us-west-2,eu-west-1", show_default=True)
@click.option("--groups", type=int, default=24, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--utilisation", type=float, default=0.75, show_default=True)
@json_option
@with_actor
def generate_command(
    regions: str, groups: int, seed: int, utilisation: float, as_json: bool
) -> None:
    """Create regions, client groups with demand and a latency matrix to try planning on."""
    from popcorn.traffic import world as world_service

    with session_scope() as session:
        result = world_service.generate_world(
            session=session,
            regions=[r.strip() for r in regions.split(",") if r.strip()],
            groups=groups,
            seed=seed,
            utilisation=utilisation,
        )
    output(result, as_json=as_json)


@group.command("sandbox")
@click.option("--endpoint-url", required=True, help="An AWS-compatible endpoint (moto).")
@click.option("--prefix", default="popcorn", show_default=True)
@json_option
@with_actor
def sandbox_command(endpoint_url: str, prefix: str, as_json: bool) -> None:
    """Create Auto Scaling groups and weighted records for the cloud regions on a sandbox
    endpoint and bind the regions (and the settings) to it."""
    from popcorn.traffic import executions as execution_service

    with session_scope() as session:
        result = execution_service.bind_sandbox(
            session=session, endpoint_url=endpoint_url, prefix=prefix
        )
    output(result, as_json=as_json)


# --- plans -----------------------------------------------------------------------------------


def _plan_out(row: Any, as_json: bool) -> None:
    plan = s.PlanDetail.model_validate(row)
    if as_json:
        output(plan.model_dump(mode="json"), as_json=True)
        return
    output(
        {
            "plan": plan.id,
            "kind": plan.kind,
            "feasible": plan.feasible,
            "evacuated": ", ".join(plan.evacuated),
            **plan.summary,
        },
        as_json=False,
    )
    steps = plan.result.get("steps") or []
    if plan.kind != "steering" and steps:
        names = plan.result["region_names"]
        rows = [
            {
                "step": st["index"],
                **{n: round(st["loads"][n], 1) for n in names},
                "max_util": round(st["max_utilisation"], 3),
            }
            for st in steps
        ]
        output(rows, as_json=False, columns=["step", *names, "max_util"], title="loads per step")
    elif plan.kind == "steering":
        output(
            [
                {
                    "region": r["region"],
                    "load": round(r["load"], 2),
                    "capacity": r["capacity"],
                    "binding": r["binding"],
                    "shortfall": round(r["shortfall"], 2),
                    "required_instances": r["required_instances"],
                }
                for r in plan.result["regions"]
            ],
            as_json=False,
            title="regions",
        )


def _scope_options(func: Any) -> Any:
    options = [
        click.option("--kind", type=click.Choice(["cloud", "cdn"]), default="cloud"),
        click.option("--region", "regions", multiple=True, help="Plan over these regions only."),
        click.option("--demand", "demand", multiple=True, help="group=value for this plan."),
        click.option("--reason", default=""),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _scope(kind: str, regions: tuple[str, ...], demand: tuple[str, ...], reason: str) -> Any:
    return {
        "kind": kind,
        "regions": list(regions) or None,
        "demand": parse_kv(demand) or None,
        "reason": reason,
    }


@group.command("plan")
@_scope_options
@json_option
@with_actor
def plan_command(
    kind: str, regions: tuple[str, ...], demand: tuple[str, ...], reason: str, as_json: bool
) -> None:
    """Make a steering plan (an infeasible one says what is short)."""
    from popcorn.traffic import plans as plan_service

    spec = s.SteeringCreate.model_validate(_scope(kind, regions, demand, reason))
    with session_scope() as session:
        plan = plan_service.plan_steering_for(session=session, spec=spec)
        _plan_out(plan, as_json)


@group.command("evacuate")
@click.argument("evacuate", nargs=-1, required=True)
@_scope_options
@click.option("--steps", type=int, default=10, show_default=True)
@click.option("--dwell-seconds", type=float, default=60.0, show_default=True)
@click.option("--scale-cost", type=float, default=0.0, show_default=True)
@json_option
@with_actor
def evacuate_command(
    evacuate: tuple[str, ...],
    kind: str,
    regions: tuple[str, ...],
    demand: tuple[str, ...],
    reason: str,
    steps: int,
    dwell_seconds: float,
    scale_cost: float,
    as_json: bool,
) -> None:
    """Plan evacuating REGION(s): scale-up, then the loads of every step."""
    from popcorn.traffic import plans as plan_service

    spec = s.EvacuationCreate.model_validate(
        {
            **_scope(kind, regions, demand, reason),
            "evacuate": list(evacuate),
            "steps": steps,
            "dwell_seconds": dwell_seconds,
            "scale_cost": scale_cost,
        }
    )
    with session_scope() as session:
        plan = plan_service.plan_evacuation_for(session=session, spec=spec)
        _plan_out(plan, as_json)


@group.command("return")
@click.argument("plan_id", type=int)
@click.option("--steps", type=int)
@click.option("--dwell-seconds", type=float)
@json_option
@with_actor
def return_command(
    plan_id: int, steps: int | None, dwell_seconds: float | None, as_json: bool
) -> None:
    """Plan the return of an evacuation."""
    from popcorn.traffic import plans as plan_service

    spec = s.ReturnCreate(steps=steps, dwell_seconds=dwell_seconds)
    with session_scope() as session:
        plan = plan_service.plan_return_for(session=session, plan_id=plan_id, spec=spec)
        _plan_out(plan, as_json)


@group.command("shift")
@click.argument("site")
@click.option("--device")
@click.option("--reason", default="")
@json_option
@with_actor
def shift_command(site: str, device: str | None, reason: str, as_json: bool) -> None:
    """Plan moving a CDN site's load to the other CDN sites."""
    from popcorn.traffic import plans as plan_service

    with session_scope() as session:
        plan = plan_service.shift_site_load(
            session=session, site=site, reason=reason, device=device
        )
        _plan_out(plan, as_json)


@group.command("plans")
@click.argument("filters", nargs=-1)
@json_option
def plans_command(filters: tuple[str, ...], as_json: bool) -> None:
    """List plans; FILTERS are key=value (kind=evacuation, feasible=true)."""
    with session_scope(readonly=True) as session:
        result = planbook.list_plans(session=session, params=parse_list_params(_list_args(filters)))
        rows = _rows(result, s.PlanRead)
    output(rows, as_json=as_json, columns=PLAN_COLUMNS)


@group.command("show")
@click.argument("plan_id", type=int)
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Write the plot.")
@json_option
def show_command(plan_id: int, png: Path | None, as_json: bool) -> None:
    """Show a plan (and write its loads-per-step plot with --png)."""
    from popcorn.traffic import plans as plan_service

    with session_scope(readonly=True) as session:
        plan = plan_service.get_plan(session=session, plan_id=plan_id)
        _plan_out(plan, as_json)
        if png is not None:
            png.write_bytes(plan_service.plan_png(session=session, plan_id=plan_id))
    if png is not None:
        click.echo(f"wrote {png}", err=True)


# --- executions ------------------------------------------------------------------------------


def _show_execution(execution_id: int, as_json: bool) -> dict[str, Any]:
    from popcorn.traffic import executions as execution_service

    with session_scope(readonly=True) as session:
        detail = execution_service.execution_detail(session=session, execution_id=execution_id)
    if as_json:
        output(detail, as_json=True)
        return detail
    summary = {k: v for k, v in detail.items() if k not in ("steps", "options", "snapshot")}
    output(summary, as_json=False, title=f"execution {execution_id}")
    output(detail["steps"], as_json=False, columns=STEP_COLUMNS, title="steps")
    return detail


@group.command("execute")
@click.argument("plan_id", type=int)
@click.option("--dwell-seconds", type=float, help="Wait per step (default: the plan's).")
@click.option("--scale-timeout-seconds", type=float)
@click.option("--poll-seconds", type=float)
@click.option("--health", "health", multiple=True, help="Health check override, key=value.")
@click.option("--wait", is_flag=True, help="Follow the execution until it ends.")
@json_option
@with_actor
def execute_command(
    plan_id: int,
    dwell_seconds: float | None,
    scale_timeout_seconds: float | None,
    poll_seconds: float | None,
    health: tuple[str, ...],
    wait: bool,
    as_json: bool,
) -> None:
    """Execute a feasible plan on AWS (a job: needs a running worker)."""
    from popcorn.traffic import executions as execution_service

    spec = s.ExecuteCreate.model_validate(
        {
            k: v
            for k, v in {
                "dwell_seconds": dwell_seconds,
                "scale_timeout_seconds": scale_timeout_seconds,
                "poll_seconds": poll_seconds,
                "health": parse_kv(health) or None,
            }.items()
            if v is not None
        }
    )
    with session_scope() as session:
        execution = execution_service.execute_plan(session=session, plan_id=plan_id, spec=spec)
        execution_id, total = execution.id, execution.total_steps
    if not wait:
        if as_json:
            _show_execution(execution_id, True)
        else:
            click.echo(f"execution {execution_id} queued (job {execution.job_id})")
        return
    with progress(total, f"execution {execution_id}") as bar:
        while True:
            with session_scope(readonly=True) as session:
                row = execution_service.get_execution(session=session, execution_id=execution_id)
                status, done = row.status, row.current_step
            bar.update(bar.task_ids[0], completed=done)
            if execution_service.has_ended(status):
                break
            time.sleep(0.5)
    detail = _show_execution(execution_id, as_json)
    if detail["status"] != "succeeded":
        raise click.ClickException(
            f"execution {execution_id} {detail['status']}: {detail['error']}"
        )


@group.command("executions")
@click.argument("filters", nargs=-1)
@json_option
def executions_command(filters: tuple[str, ...], as_json: bool) -> None:
    """List plan executions, newest first; FILTERS are key=value."""
    from popcorn.traffic import executions as execution_service

    with session_scope(readonly=True) as session:
        result = execution_service.list_executions(
            session=session, params=parse_list_params(_list_args(filters))
        )
        rows = _rows(result, s.ExecutionRead)
    output(rows, as_json=as_json, columns=EXECUTION_COLUMNS)


@group.command("execution")
@click.argument("execution_id", type=int)
@json_option
def execution_command(execution_id: int, as_json: bool) -> None:
    """One execution with its steps."""
    _show_execution(execution_id, as_json)


@group.command("cancel")
@click.argument("execution_id", type=int)
@with_actor
def cancel_command(execution_id: int) -> None:
    """Cancel an execution: it stops at its next check and rolls back."""
    from popcorn.traffic import executions as execution_service

    with session_scope() as session:
        row = execution_service.cancel_execution(session=session, execution_id=execution_id)
        status = row.status
    click.echo(f"execution {execution_id}: cancel requested ({status})")


# --- forecasts and placements ----------------------------------------------------------------


@group.command("forecast")
@click.option("--region", help="Region whose demand it is (gives a scaling plan).")
@click.option("--selector", help="Signals selector for the history.")
@click.option(
    "--history",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="History file: JSON list, or CSV/JSON/Parquet with a value column.",
)
@click.option("--step-seconds", type=int, help="Sample step (default 300; 3600 predicted).")
@click.option("--horizon", type=int, help="Steps ahead (default 288; 48 predicted).")
@click.option("--days", type=float, default=28.0, show_default=True)
@click.option(
    "--demand",
    type=click.Choice(["history", "predicted"]),
    default="history",
    show_default=True,
    help="predicted: the region's demand from ML's promoted demand-forecast model.",
)
@click.option("--ml-region", default="", help="The region's name in ML's model (default: region).")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), help="Write the plot.")
@json_option
@with_actor
def forecast_command(
    region: str | None,
    selector: str | None,
    history: Path | None,
    step_seconds: int | None,
    horizon: int | None,
    days: float,
    demand: str,
    ml_region: str,
    png: Path | None,
    as_json: bool,
) -> None:
    """Forecast demand, report backtest MAPE per predictor, plan the region's scaling."""
    from popcorn.traffic import forecasts as forecast_service

    data: dict[str, Any] = {
        "region": region,
        "selector": selector,
        "days": days,
        "demand": demand,
        "ml_region": ml_region,
    }
    for key, value in (("step_seconds", step_seconds), ("horizon", horizon)):
        if value is not None:
            data[key] = value
    if history is not None:
        data["history"] = forecast_service.read_history(history.read_bytes(), filename=history.name)
    spec = s.ForecastCreate.model_validate(data)
    with session_scope() as session:
        row = forecast_service.create_forecast(session=session, spec=spec)
        detail = s.ForecastDetail.model_validate(row).model_dump(mode="json")
        if png is not None:
            png.write_bytes(forecast_service.forecast_plot(session=session, forecast_id=row.id))
    if as_json:
        output(detail, as_json=True)
        return
    values = detail["values"]
    output(
        {
            "forecast": detail["id"],
            "name": detail["name"],
            "horizon": detail["horizon"],
            "peak": max(values),
            "mape": detail["backtest"]["mape"],
            "weights": detail["weights"],
            "scaling_actions": len((detail["scaling"] or {}).get("actions", [])),
        },
        as_json=False,
    )


@group.command("placement")
@click.option(
    "--popularity",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="site,title,requests (CSV, JSON or Parquet); not with --demand predicted.",
)
@click.option(
    "--demand",
    type=click.Choice(["observed", "predicted"]),
    default="observed",
    show_default=True,
    help="predicted: requests are ML's predicted title demand in each site's region.",
)
@click.option(
    "--site-region",
    "site_regions",
    multiple=True,
    metavar="SITE=REGION",
    help="With --demand predicted: the region ML predicts a site's demand for (repeat).",
)
@click.option(
    "--sizes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="title,size (GB).",
)
@click.option(
    "--storage",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="site,storage (GB); default: from the regions or inventory.",
)
@click.option("--strategy", type=click.Choice(["density", "popularity"]), default="density")
@click.option("--name", default="")
@json_option
@with_actor
def placement_command(
    popularity: Path | None,
    demand: str,
    site_regions: tuple[str, ...],
    sizes: Path,
    storage: Path | None,
    strategy: str,
    name: str,
    as_json: bool,
) -> None:
    """Plan which titles each CDN site holds (fill order per site), from observed requests
    or from ML's predicted demand."""
    from popcorn.traffic import placements as placement_service

    if (popularity is None) == (demand == "observed"):
        raise click.UsageError("give --popularity with observed demand, and only then")
    if site_regions and demand != "predicted":
        raise click.UsageError("--site-region goes with --demand predicted")
    regions: dict[str, str] = {}
    for pair in site_regions:
        site, sep, region = pair.partition("=")
        if not sep or not site.strip() or not region.strip():
            raise click.BadParameter(f"{pair!r} is not SITE=REGION", param_hint="--site-region")
        regions[site.strip()] = region.strip()
    data: dict[str, Any] = {
        "name": name,
        "strategy": strategy,
        "demand": demand,
        "site_regions": regions,
        "sizes": service.read_table(sizes.read_bytes(), name="sizes", filename=sizes.name),
    }
    if popularity is not None:
        data["popularity"] = service.read_table(
            popularity.read_bytes(), name="popularity", filename=popularity.name
        )
    if storage is not None:
        data["storage"] = service.read_table(
            storage.read_bytes(), name="storage", filename=storage.name
        )
    spec = placement_service.placement_spec(data)
    with session_scope() as session:
        row = placement_service.create_placement(session=session, spec=spec)
        detail = s.PlacementDetail.model_validate(row).model_dump(mode="json")
    if as_json:
        output(detail, as_json=True)
        return
    output(
        {
            "placement": detail["id"],
            "local_share": round(detail["local_share"], 4),
            "bound_share": detail["bound_share"],
            "baseline_share": detail["baseline_share"],
        },
        as_json=False,
    )
    output(
        [{k: v for k, v in site.items() if k != "titles"} for site in detail["result"]["sites"]],
        as_json=False,
        title="sites",
    )
