"""`popcorn ml …`: flows, runs (as Popcorn jobs), schedules, the model registry, predictions.

Nothing heavy is imported here: Metaflow, numpy and the models load only in the commands
that need them, so `popcorn ml --help` stays instant.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from popcorn.cli import PopcornGroup, json_option, output, progress, with_actor
from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.ml import registry, service
from popcorn.ml import schemas as s

RUN_COLUMNS = [
    "id",
    "flow",
    "status",
    "progress",
    "pathspec",
    "failed_step",
    "promoted_version",
    "created_at",
]
MODEL_COLUMNS = [
    "name",
    "promoted_version",
    "versions",
    "metric",
    "model",
    "baseline",
    "updated_at",
]
ALL = ListParams(limit=1000)


def _list(rows: list[dict[str, Any]], *, as_json: bool, columns: list[str]) -> None:
    """A list: `{"items": [...]}` as JSON, else a table with markup escaped."""
    from rich.markup import escape

    if as_json:
        output({"items": rows}, as_json=True)
        return
    shown = [
        {c: escape(v) if isinstance(v, str) else v for c, v in row.items() if c in columns}
        for row in rows
    ]
    output(shown, as_json=False, columns=columns)


@click.group("ml", cls=PopcornGroup)
def group() -> None:
    """ML on Metaflow: flows, runs, schedules, the model registry and serving."""


def _run_row(data: dict[str, Any]) -> dict[str, Any]:
    shown = s.RunRead.model_validate(data).model_dump(mode="json")
    done = data.get("progress") or {}
    shown["progress"] = f"{done.get('done', 0)}/{done.get('total', 0)} {done.get('step', '')}"
    return shown


@group.command("flows")
@json_option
def flows(as_json: bool) -> None:
    """Flows Popcorn can run: shipped, from installed domains and from ml_flows_dir."""
    rows = [service.flow_read(f) for f in service.list_flows()]
    if as_json:
        _list(rows, as_json=True, columns=[])
        return
    for row in rows:
        row["parameters"] = ", ".join(f"{p['name']}={p['default']}" for p in row["parameters"])
        row["steps"] = " → ".join(row["steps"])
    _list(rows, as_json=as_json, columns=["name", "source", "steps", "parameters", "description"])


def _wait(run_id: int, total: int) -> dict[str, Any]:
    with progress(total or None, f"run {run_id}") as bar:
        task = bar.task_ids[0]
        began, hinted = time.monotonic(), False
        while True:
            with session_scope(readonly=True) as session:
                data = service.run_read(service.get_run(session=session, ref=run_id))
            done = data["progress"] or {}
            bar.update(task, completed=done.get("done", 0), description=str(done.get("step", "")))
            if data["status"] in {"succeeded", "failed"}:
                return data
            if data["status"] == "queued" and not hinted and time.monotonic() - began > 10:
                hinted = True
                click.echo(
                    f"run {run_id} is waiting for a worker on the low queue (`popcorn up` or "
                    "`popcorn worker`); Ctrl-C leaves it queued, `--here` runs without one",
                    err=True,
                )
            time.sleep(0.5)


@group.command("run")
@click.argument("flow")
@click.option("--param", "params", multiple=True, help="A flow parameter, key=value (repeatable).")
@click.option("--with", "decorators", multiple=True, help="Metaflow --with (kubernetes, batch…).")
@click.option("--no-promote", is_flag=True, help="Do not promote the model even if it is better.")
@click.option("--here", is_flag=True, help="Run in this process instead of on a worker.")
@click.option("--no-wait", is_flag=True, help="Queue the job and return at once.")
@json_option
@with_actor
def run_command(
    flow: str,
    params: tuple[str, ...],
    decorators: tuple[str, ...],
    no_promote: bool,
    here: bool,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Run a flow as a Popcorn job; waits and shows its steps unless --no-wait."""
    parameters: dict[str, str] = {}
    for pair in params:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--param")
        parameters[key] = value
    spec = s.RunCreate(
        flow=flow, parameters=parameters, decorators=list(decorators), auto_promote=not no_promote
    )
    with session_scope() as session:
        run = service.start_run(session=session, spec=spec, queue_job=not here)
        run_id, total = run.id, int(run.progress.get("total", 0))
    if here:
        service.execute_run(run_id)
    data = _wait(run_id, total) if not no_wait or here else None
    with session_scope(readonly=True) as session:
        data = service.run_read(service.get_run(session=session, ref=run_id))
    output(_run_row(data), as_json=as_json, columns=RUN_COLUMNS)
    if data["status"] == "failed" and not as_json:
        raise click.ClickException(
            f"run {run_id} failed at step {data['failed_step'] or '?'}; "
            f"see `popcorn ml show {run_id}`, resume with `popcorn ml resume {run_id}`"
        )


@group.command("runs")
@click.option("--flow", help="Only this flow's runs.")
@json_option
def runs(flow: str | None, as_json: bool) -> None:
    """Runs, newest first."""
    with session_scope(readonly=True) as session:
        rows = [
            _run_row(service.run_read(r)) for r in service.recent_runs(session=session, flow=flow)
        ]
    _list(rows, as_json=as_json, columns=RUN_COLUMNS)


@group.command("show")
@click.argument("run_id")
@json_option
def show(run_id: str, as_json: bool) -> None:
    """A run with Metaflow's steps and artifacts, and the failing step's traceback."""
    with session_scope(readonly=True) as session:
        data = service.run_detail(session=session, ref=run_id)
    if as_json:
        output(s.RunDetail.model_validate(data).model_dump(mode="json"), as_json=True)
        return
    output(_run_row(data), as_json=False, columns=RUN_COLUMNS)
    meta = data.get("metaflow") or {}
    steps = [
        {
            "step": x["name"],
            "ok": x["successful"],
            "tasks": len(x["tasks"]),
            "cards": x["cards"],
            "finished_at": x["finished_at"],
        }
        for x in meta.get("steps", [])
    ]
    if steps:
        output(steps, as_json=False, columns=["step", "ok", "tasks", "cards", "finished_at"])
    if meta.get("artifacts"):
        output(meta["artifacts"], as_json=False, columns=["name", "type", "preview"])
    if data["error"]:
        click.echo(f"failed at step {data['failed_step'] or '?'}:\n{data['error']}")


@group.command("log")
@click.argument("run_id")
def log(run_id: str) -> None:
    """The run's log: the flow's stdout and stderr."""
    with session_scope(readonly=True) as session:
        click.echo(service.read_log(session=session, ref=run_id), nl=False)


@group.command("card")
@click.argument("run_id")
@click.argument("step")
@click.option("--output", "path", type=click.Path(dir_okay=False, path_type=Path), required=True)
def card(run_id: str, step: str, path: Path) -> None:
    """Write a step's card (HTML) to a file."""
    with session_scope(readonly=True) as session:
        html = service.run_card(session=session, ref=run_id, step=step)
    path.write_text(html)
    click.echo(f"wrote {path} ({len(html) / 1024:.1f} KB)")


@group.command("cancel")
@click.argument("run_id")
@json_option
@with_actor
def cancel(run_id: str, as_json: bool) -> None:
    """Cancel a run (its processes are killed; it ends failed and can be resumed)."""
    with session_scope() as session:
        data = service.run_read(service.cancel_run(session=session, ref=run_id))
    output(_run_row(data), as_json=as_json, columns=RUN_COLUMNS)


@group.command("resume")
@click.argument("run_id")
@click.option("--no-wait", is_flag=True, help="Queue the job and return at once.")
@json_option
@with_actor
def resume(run_id: str, no_wait: bool, as_json: bool) -> None:
    """Resume a failed run with Metaflow's resume (finished steps are not run again)."""
    with session_scope() as session:
        run = service.resume_run(session=session, ref=run_id)
        new_id, total = run.id, int(run.progress.get("total", 0))
    data = _wait(new_id, total) if not no_wait else None
    with session_scope(readonly=True) as session:
        data = service.run_read(service.get_run(session=session, ref=new_id))
    output(_run_row(data), as_json=as_json, columns=RUN_COLUMNS)


@group.group("schedules", cls=PopcornGroup, invoke_without_command=True)
@json_option
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """Flows run on a schedule (lists them; `add` and `delete` change them)."""
    if ctx.invoked_subcommand is None:
        with session_scope(readonly=True) as session:
            rows = service.list_schedules(session=session)
        _list(
            rows,
            as_json=as_json,
            columns=["name", "flow", "parameters", "cron", "interval_seconds", "next_run_at"],
        )


@schedules.command("add")
@click.argument("name")
@click.argument("flow")
@click.option("--cron", help="A cron expression (UTC).")
@click.option("--every", "interval", type=int, help="Every N seconds (at least 60).")
@click.option("--param", "params", multiple=True, help="key=value (repeatable).")
@with_actor
def schedule_add(
    name: str, flow: str, cron: str | None, interval: int | None, params: tuple[str, ...]
) -> None:
    """Run FLOW on a schedule named NAME."""
    parameters = dict(p.partition("=")[::2] for p in params)
    spec = s.ScheduleCreate(
        name=name, flow=flow, parameters=parameters, cron=cron, interval_seconds=interval
    )
    with session_scope() as session:
        found = service.create_schedule(session=session, spec=spec)
    click.echo(
        f"schedule {found['name']}: {flow}, next run {found['next_run_at']:%Y-%m-%d %H:%M} UTC"
    )


@schedules.command("delete")
@click.argument("name")
@with_actor
def schedule_delete(name: str) -> None:
    """Stop a schedule."""
    with session_scope() as session:
        service.delete_schedule(session=session, name=name)
    click.echo(f"deleted schedule {name}")


def _model_row(data: dict[str, Any]) -> dict[str, Any]:
    promoted = next((v for v in data["versions"] if v["promoted"]), None)
    evaluation = promoted["evaluation"] if promoted else {}
    return {
        **data,
        "versions": len(data["versions"]),
        "metric": evaluation.get("metric"),
        "model": evaluation.get("model"),
        "baseline": evaluation.get("baseline"),
    }


@group.command("models")
@json_option
def models(as_json: bool) -> None:
    """Models in the registry with their promoted version's evaluation."""
    with session_scope(readonly=True) as session:
        rows = [registry.model_read(m) for m in registry.list_models(session=session)]
    if as_json:
        items = [s.ModelRead.model_validate(r).model_dump(mode="json") for r in rows]
        _list(items, as_json=True, columns=[])
        return
    _list([_model_row(r) for r in rows], as_json=False, columns=MODEL_COLUMNS)


@group.command("model")
@click.argument("name")
@json_option
def model(name: str, as_json: bool) -> None:
    """One model's versions (the promoted one marked)."""
    with session_scope(readonly=True) as session:
        data = registry.model_read(registry.get_model(session=session, name=name))
    if as_json:
        output(s.ModelRead.model_validate(data).model_dump(mode="json"), as_json=True)
        return
    rows = [
        {**v, **{k: v["evaluation"].get(k) for k in ("metric", "model", "baseline")}}
        for v in data["versions"]
    ]
    output(
        rows,
        as_json=False,
        columns=["version", "promoted", "run_id", "metric", "model", "baseline", "created_at"],
    )


@group.command("promote")
@click.argument("run_id")
@with_actor
def promote(run_id: str) -> None:
    """Promote a succeeded run's model."""
    with session_scope() as session:
        run = service.get_run(session=session, ref=run_id)
        version = registry.promote_run(session=session, run=run)
        click.echo(f"promoted {run.flow} v{version.version} (run {run.id})")


@group.command("rollback")
@click.argument("name")
@click.option("--to", "to", type=int, help="A version (default: the one promoted before).")
@with_actor
def rollback(name: str, to: int | None) -> None:
    """Serve the previously promoted version again."""
    with session_scope() as session:
        found = registry.rollback(session=session, name=name, to=to)
        click.echo(f"{name} now serves v{found.promoted_version}")


@group.command("predict")
@click.argument("name")
@click.argument("rows")
@with_actor
def predict(name: str, rows: str) -> None:
    """Predict with the promoted model; ROWS is a JSON list of objects (or @file)."""
    text = Path(rows[1:]).read_text() if rows.startswith("@") else rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="ROWS") from None
    request = s.PredictRequest.model_validate({"rows": data})
    with session_scope(readonly=True) as session:
        answer = registry.predict(session=session, name=name, rows=request.rows)
    output(answer, as_json=True)
