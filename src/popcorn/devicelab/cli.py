"""`popcorn devicelab …`: devices, the test catalog and queries, runs and their JUnit
reports, flaky tests, predictions, pipeline hooks, and the device agent itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from popcorn.cli import PopcornGroup, json_option, output, with_actor
from popcorn.db import session_scope
from popcorn.devicelab import analysis, hooks, scheduling, service
from popcorn.devicelab import query as q
from popcorn.devicelab import schemas as s
from popcorn.listing import ListParams

ALL = ListParams(limit=100_000)
DEVICE_COLUMNS = ["name", "platform", "family", "pool", "site", "health", "agent_state", "reserved"]
TEST_COLUMNS = ["name", "suite", "components", "tags", "duration", "owners"]
RUN_COLUMNS = [
    "id",
    "build_id",
    "suite",
    "status",
    "tests",
    "failed",
    "flaky",
    "selected",
    "created_at",
]
EXEC_COLUMNS = [
    "id",
    "test_name",
    "family",
    "device_name",
    "status",
    "attempt",
    "reason",
    "duration",
    "attribution",
]


def _list(rows: list[dict[str, Any]], *, as_json: bool, columns: list[str]) -> None:
    if as_json:
        output({"items": rows}, as_json=True)
    else:
        output(
            [{k: escape(str(v)) if isinstance(v, str) else v for k, v in r.items()} for r in rows],
            as_json=False,
            columns=columns,
        )


def _secs(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


@click.group("devicelab", cls=PopcornGroup)
def group() -> None:
    """Partner device lab: devices, test catalog, runs, flaky tests and test selection."""


# --- devices ----------------------------------------------------------------------------------


@group.group("devices", cls=PopcornGroup, invoke_without_command=True)
@click.option("--where", default="", help="Device query, e.g. 'platform:tv and hdr:dolby_vision'.")
@json_option
@click.pass_context
def devices(ctx: click.Context, where: str, as_json: bool) -> None:
    """Devices (the list by default)."""
    if ctx.invoked_subcommand:
        return
    with session_scope(readonly=True) as session:
        page = service.list_devices(session=session, params=ALL, where=where)
        rows = [s.DeviceRead.model_validate(d).model_dump(mode="json") for d in page.items]
    for row in rows:
        row["reserved"] = (
            f"{row['reserved_by']} until {row['reserved_until'][:16]}" if row["reserved_by"] else ""
        )
    _list(rows, as_json=as_json, columns=DEVICE_COLUMNS)


@devices.command("add")
@click.argument("name")
@click.option(
    "--platform",
    required=True,
    type=click.Choice(["tv", "console", "stb", "mobile", "browser", "streamer"]),
)
@click.option("--model", default="")
@click.option("--family", default="")
@click.option("--hdr", multiple=True, help="HDR format (repeatable).")
@click.option("--drm-level", default="")
@click.option("--sdk-version", default="")
@click.option("--pool", default="default")
@click.option("--site", default="", help="Inventory site code.")
@click.option("--tag", "tags", multiple=True)
@json_option
@with_actor
def add_device(
    name: str,
    platform: str,
    model: str,
    family: str,
    hdr: tuple[str, ...],
    drm_level: str,
    sdk_version: str,
    pool: str,
    site: str,
    tags: tuple[str, ...],
    as_json: bool,
) -> None:
    """Register a device by hand."""
    spec = s.DeviceCreate(
        name=name,
        platform=platform,
        model=model,
        family=family,
        hdr=list(hdr),
        drm_level=drm_level,
        sdk_version=sdk_version,
        pool=pool,
        site=site,
        tags=list(tags),
    )
    with session_scope() as session:
        found = service.create_device(session=session, spec=spec)
        output(s.DeviceRead.model_validate(found).model_dump(mode="json"), as_json=as_json)


@devices.command("reserve")
@click.argument("name")
@click.option("--minutes", default=60.0, show_default=True, type=float)
@click.option("--note", default="")
@json_option
@with_actor
def reserve(name: str, minutes: float, note: str, as_json: bool) -> None:
    """Reserve a device for yourself (the scheduler leaves it alone until then)."""
    from popcorn.context import current_actor

    with session_scope() as session:
        found = service.reserve_device(
            session=session, ref=name, who=current_actor().name, minutes=minutes, note=note
        )
        output(s.DeviceRead.model_validate(found).model_dump(mode="json"), as_json=as_json)


@devices.command("release")
@click.argument("name")
@with_actor
def release(name: str) -> None:
    """Release a reservation."""
    with session_scope() as session:
        service.release_device(session=session, ref=name)
    click.echo(f"released {name}")


# --- catalog ----------------------------------------------------------------------------------


@group.group("tests", cls=PopcornGroup, invoke_without_command=True)
@click.option("--where", default="", help="Test query, e.g. 'component:playback and duration<600'.")
@json_option
@click.pass_context
def tests(ctx: click.Context, where: str, as_json: bool) -> None:
    """The test catalog (the list by default)."""
    if ctx.invoked_subcommand:
        return
    with session_scope(readonly=True) as session:
        page = service.list_tests(session=session, params=ALL, where=where)
        rows = [s.TestRead.model_validate(t).model_dump(mode="json") for t in page.items]
    for row in rows:
        row["duration"] = _secs(row["expected_duration_s"])
    _list(rows, as_json=as_json, columns=TEST_COLUMNS)


@tests.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_actor
def import_tests(path: Path) -> None:
    """Add or update tests from a JSON or YAML file (a list, or {tests: [...]})."""
    from popcorn import safeyaml

    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else safeyaml.load(text, source=str(path))
    spec = s.CatalogImport.model_validate(data if isinstance(data, dict) else {"tests": data})
    with session_scope() as session:
        done = service.upsert_tests(session=session, specs=spec.tests)
    click.echo(f"{done['created']} created, {done['updated']} updated, {done['tests']} in the file")


@group.command("query")
@click.argument("text")
@click.option("--devices", "on_devices", is_flag=True, help="A device query (default: tests).")
@json_option
def check_query(text: str, on_devices: bool, as_json: bool) -> None:
    """Check a query and list what it selects."""
    with session_scope(readonly=True) as session:
        if on_devices:
            rows = [
                d.name
                for d in service.list_devices(session=session, params=ALL, where=text or " ").items
            ]
        else:
            q.parse(text, q.TEST_FIELDS)
            rows = [t.name for t in service.select_tests(session=session, query=text)]
    _list([{"name": n} for n in rows], as_json=as_json, columns=["name"])


# --- runs -------------------------------------------------------------------------------------


def _run_row(run: Any) -> dict[str, Any]:
    data = s.RunRead.model_validate(run).model_dump(mode="json")
    summary = run.summary or {}
    data.update(
        tests=summary.get("tests", summary.get("executions")),
        failed=summary.get("failed"),
        flaky=summary.get("flaky"),
    )
    fraction = (run.selection or {}).get("fraction")
    data["selected"] = f"{100 * fraction:.1f} %" if fraction is not None else "all"
    return data


@group.group("runs", cls=PopcornGroup, invoke_without_command=True)
@click.option("--status", default=None)
@json_option
@click.pass_context
def runs(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """Runs (the list by default)."""
    if ctx.invoked_subcommand:
        return
    params = ListParams(limit=100_000, filters={"status": [status]} if status else {})
    with session_scope(readonly=True) as session:
        rows = [_run_row(r) for r in scheduling.list_runs(session=session, params=params).items]
    _list(rows, as_json=as_json, columns=RUN_COLUMNS)


@runs.command("start")
@click.option("--app-version", required=True)
@click.option("--change", default="")
@click.option("--branch", default="main", show_default=True)
@click.option("--component", "components", multiple=True, help="A component the change touches.")
@click.option("--suite", default="")
@click.option("--query", "query_text", default="", help="Test query.")
@click.option("--devices", default="", help="Device query.")
@click.option("--select", type=click.Choice(["all", "predicted"]), default="all", show_default=True)
@click.option("--recall", default=0.99, show_default=True, type=float)
@json_option
@with_actor
def start(
    app_version: str,
    change: str,
    branch: str,
    components: tuple[str, ...],
    suite: str,
    query_text: str,
    devices: str,
    select: str,
    recall: float,
    as_json: bool,
) -> None:
    """Run a suite of a build on a device set."""
    spec = s.RunCreate(
        build=s.BuildCreate(
            app_version=app_version, change=change, branch=branch, components=list(components)
        ),
        suite=suite,
        query=query_text,
        devices=devices,
        select=select,
        recall=recall,
    )
    with session_scope() as session:
        run = scheduling.start_run(session=session, spec=spec)
        output(_run_row(run), as_json=as_json)
        fallback = (run.selection or {}).get("fallback")
        if fallback and not as_json:
            click.echo(f"note: {fallback}")


@runs.command("show")
@click.argument("run_id", type=int)
@json_option
def show(run_id: int, as_json: bool) -> None:
    """A run's status and summary."""
    with session_scope(readonly=True) as session:
        output(scheduling.run_status(session=session, ref=run_id), as_json=as_json)


@runs.command("executions")
@click.argument("run_id", type=int)
@json_option
def executions(run_id: int, as_json: bool) -> None:
    """Every attempt of every test of a run."""
    with session_scope(readonly=True) as session:
        page = scheduling.list_executions(session=session, run=run_id, params=ALL)
        rows = page.serialize(s.ExecutionRead)["items"]
    for row in rows:
        row["duration"] = _secs(row["duration_s"])
    _list(rows, as_json=as_json, columns=EXEC_COLUMNS)


@runs.command("junit")
@click.argument("run_id", type=int)
@click.option(
    "-o", "--output", "target", type=click.Path(dir_okay=False, path_type=Path), default=None
)
def junit_out(run_id: int, target: Path | None) -> None:
    """A run's JUnit XML report (stdout, or a file)."""
    with session_scope(readonly=True) as session:
        xml = analysis.junit_report(session=session, run=run_id)
    if target is None:
        click.echo(xml)
    else:
        target.write_text(xml)
        click.echo(f"wrote {target} ({len(xml) / 1024:.1f} KB)")


@runs.command("cancel")
@click.argument("run_id", type=int)
@with_actor
def cancel(run_id: int) -> None:
    """Cancel a run."""
    with session_scope() as session:
        scheduling.cancel_run(session=session, ref=run_id)
    click.echo(f"cancelled run {run_id}")


@group.command("junit-import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--build", "build_id", required=True, type=int)
@click.option("--family", default="", help="Device family the report ran on.")
@click.option("--device", default="")
@json_option
@with_actor
def junit_import(path: Path, build_id: int, family: str, device: str, as_json: bool) -> None:
    """Record a JUnit XML report from any runner as a finished run of a build."""
    with session_scope() as session:
        run = analysis.import_junit(
            session=session, build_id=build_id, data=path.read_bytes(), family=family, device=device
        )
        output(_run_row(run), as_json=as_json)


# --- analysis ---------------------------------------------------------------------------------


@group.command("flaky")
@json_option
def flaky(as_json: bool) -> None:
    """Tests that passed and failed on the same build."""
    with session_scope(readonly=True) as session:
        rows = analysis.flaky_tests(session=session)
    for row in rows:
        row["rate"] = f"{100 * row['rate']:.1f} %"
    _list(rows, as_json=as_json, columns=["test", "flaky_builds", "builds", "rate"])


@group.command("predict")
@click.option("--build", "build_id", required=True, type=int)
@click.option("--suite", default="")
@click.option("--query", "query_text", default="")
@click.option("--devices", default="")
@click.option("--recall", default=0.99, show_default=True, type=float)
@click.option("--limit", default=20, show_default=True, type=int)
@json_option
def predict(
    build_id: int,
    suite: str,
    query_text: str,
    devices: str,
    recall: float,
    limit: int,
    as_json: bool,
) -> None:
    """Failure probability per (test, family) for a build, and what selection would run."""
    with session_scope(readonly=True) as session:
        found = analysis.predictions(
            session=session,
            build_id=build_id,
            query=query_text,
            suite=suite,
            devices=devices,
            recall=recall,
        )
    if as_json:
        output(found, as_json=True)
        return
    share = f"{100 * found['fraction']:.1f} %"
    click.echo(
        f"selected {found['selected']} of {len(found['items'])} ({share}) "
        f"at a {100 * recall:.0f} % recall target, by ML's {found['model']}"
    )
    rows = [dict(r, probability=f"{100 * r['probability']:.2f} %") for r in found["items"][:limit]]
    output(rows, as_json=False, columns=["test", "family", "probability", "selected"])


@group.command("sweep")
@json_option
@with_actor
def sweep(as_json: bool) -> None:
    """Mark silent devices offline (their tests rescheduled) and time out late tests."""
    with session_scope() as session:
        output(scheduling.sweep(session=session), as_json=as_json)


# --- hooks and the agent ----------------------------------------------------------------------


@group.group("hooks", cls=PopcornGroup, invoke_without_command=True)
@json_option
@click.pass_context
def hooks_group(ctx: click.Context, as_json: bool) -> None:
    """Pipeline hooks (the list by default)."""
    if ctx.invoked_subcommand:
        return
    with session_scope(readonly=True) as session:
        rows = hooks.list_hooks(session=session, params=ALL).serialize(s.HookRead)["items"]
    _list(rows, as_json=as_json, columns=["name", "suite", "devices", "created_by", "created_at"])


@hooks_group.command("create")
@click.argument("name")
@click.option("--suite", default="")
@click.option("--devices", default="")
@json_option
@with_actor
def create_hook(name: str, suite: str, devices: str, as_json: bool) -> None:
    """A pipeline hook; prints its signing secret once."""
    with session_scope() as session:
        created = hooks.create_hook(
            session=session, spec=s.HookCreate(name=name, suite=suite, devices=devices)
        )
    output(created, as_json=as_json)


@group.command("agent", context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def agent(args: tuple[str, ...]) -> None:
    """Run a device agent (`popcorn devicelab agent --help` for its options)."""
    from popcorn.devicelab import agent as device_agent

    raise SystemExit(device_agent.main(list(args)))
