"""`popcorn notebooks …`: job definitions, runs and their outputs, the archive and publishing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from popcorn.cli import PopcornGroup, fail, json_option, output, parse_kv, with_actor
from popcorn.db import session_scope
from popcorn.listing import ListParams
from popcorn.notebooks import archive, render, service
from popcorn.notebooks import schemas as s

DEFINITION_COLUMNS = ["id", "name", "kind", "schedule", "next_run_at", "after_id", "tags"]
RUN_COLUMNS = ["id", "definition_id", "status", "trigger", "duration", "started_at", "error"]
ENDED = ("succeeded", "failed", "canceled", "skipped")


@click.group("notebooks", cls=PopcornGroup, invoke_without_command=True)
@click.pass_context
def group(ctx: click.Context) -> None:
    """Notebook jobs: papermill, Spark and callables on a schedule, with stored outputs."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(definitions)


def _people(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for a rich table: every value escaped (names and errors come from users)."""
    return [{k: escape(str(v)) if v is not None else None for k, v in r.items()} for r in rows]


def _definition_row(data: dict[str, Any]) -> dict[str, Any]:
    schedule = f"{data['cron']} ({data['timezone']})" if data["cron"] else "on demand"
    return {**data, "schedule": schedule, "tags": ", ".join(data["tags"])}


def _run_row(data: dict[str, Any]) -> dict[str, Any]:
    duration = data["duration_s"]
    return {
        **data,
        "duration": f"{duration:.1f} s" if duration is not None else "",
        "error": (data["error"] or "")[:80],
    }


@group.command("definitions")
@click.option("--limit", default=100, show_default=True, type=int)
@json_option
def definitions(limit: int = 100, as_json: bool = False) -> None:
    """List job definitions."""
    with session_scope(readonly=True) as session:
        page = service.list_definitions(session=session, params=ListParams(limit=limit))
        items = page.serialize(s.DefinitionRead)["items"]
    if as_json:
        output({"items": items}, as_json=True)
    else:
        output(
            _people([_definition_row(d) for d in items]), as_json=False, columns=DEFINITION_COLUMNS
        )


def _conf_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """`key=value` strings as given (values stay strings, as spark-submit takes them)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--spark-conf {pair!r}: give key=value")
        out[key.strip()] = value
    return out


@group.command("create")
@click.argument("name")
@click.option("--notebook", "notebook_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--workspace", "workspace_path", default="", help="An archived notebook path.")
@click.option(
    "--script",
    "script_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A pyspark script (Spark jobs).",
)
@click.option(
    "--callable", "callable_path", default="", help="module:function of an installed plugin."
)
@click.option("--kind", type=click.Choice(["notebook", "spark", "callable"]), default=None)
@click.option("-p", "--param", "params", multiple=True, help="Default parameter name=value.")
@click.option("--kernel", default="python3", show_default=True)
@click.option("--cron", default=None, help="Cron expression, in --timezone wall-clock time.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--timeout", default=600, show_default=True, type=int, help="Seconds.")
@click.option("--retries", default=0, show_default=True, type=int)
@click.option("--tag", "tags", multiple=True)
@click.option("--exclusive", is_flag=True, help="At most one run at a time.")
@click.option("--after", default=None, help="Run after this definition succeeds.")
@click.option(
    "--spark-master",
    default="",
    help="local[N] (default local[2]), spark://host:port, yarn or k8s://https://host:port.",
)
@click.option(
    "--spark-conf", "spark_conf", multiple=True, help="spark-submit --conf key=value (repeatable)."
)
@click.option(
    "--output-format",
    "output_formats",
    multiple=True,
    type=click.Choice(["html", "markdown", "pdf"]),
    help="Also store the output as this (the notebook is always stored; repeatable).",
)
@json_option
@with_actor
def create(
    name: str,
    notebook_file: str | None,
    workspace_path: str,
    script_file: str | None,
    callable_path: str,
    kind: str | None,
    params: tuple[str, ...],
    kernel: str,
    cron: str | None,
    timezone: str,
    timeout: int,
    retries: int,
    tags: tuple[str, ...],
    exclusive: bool,
    after: str | None,
    spark_master: str,
    spark_conf: tuple[str, ...],
    output_formats: tuple[str, ...],
    as_json: bool,
) -> None:
    """Define a job from a notebook file, an archived path, a Spark script or a callable."""
    notebook = None
    if notebook_file:
        try:
            notebook = json.loads(Path(notebook_file).read_text())
        except (ValueError, UnicodeDecodeError):
            fail(f"{notebook_file} is not a notebook (not JSON)")
    script = Path(script_file).read_text() if script_file else None
    chosen = kind or ("callable" if callable_path else "spark" if script else "notebook")
    spec = s.DefinitionCreate.model_validate(
        {
            "name": name,
            "kind": chosen,
            "notebook": notebook,
            "workspace_path": workspace_path,
            "script": script,
            "callable": callable_path,
            "parameters": parse_kv(params),
            "kernel": kernel,
            "cron": cron,
            "timezone": timezone,
            "timeout": timeout,
            "retries": retries,
            "tags": list(tags),
            "exclusive": exclusive,
            "after": after,
            "spark_master": spark_master,
            "spark_conf": {k: str(v) for k, v in _conf_pairs(spark_conf).items()},
            "output_formats": list(output_formats),
        }
    )
    with session_scope() as session:
        row = service.create_definition(session=session, spec=spec)
        data = s.DefinitionRead.model_validate(row).model_dump(mode="json")
    output(data if as_json else _people([_definition_row(data)])[0], as_json=as_json)


@group.command("delete")
@click.argument("name")
@with_actor
def delete(name: str) -> None:
    """Delete a definition and its runs."""
    with session_scope() as session:
        row = service.delete_definition(session=session, ref=name)
        click.echo(f"deleted {row.name}")


def _wait(run_id: int, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        with session_scope(readonly=True) as session:
            data = s.RunRead.model_validate(service.get_run(session=session, run_id=run_id))
        if data.status in ENDED or time.monotonic() > deadline:
            return data.model_dump(mode="json")
        time.sleep(0.5)


@group.command("run")
@click.argument("name")
@click.option("-p", "--param", "params", multiple=True, help="Parameter name=value.")
@click.option(
    "--wait",
    "wait_seconds",
    type=float,
    default=0,
    help="Wait up to this many seconds for the end.",
)
@json_option
@with_actor
def run(name: str, params: tuple[str, ...], wait_seconds: float, as_json: bool) -> None:
    """Run a definition now (on a worker)."""
    with session_scope() as session:
        found = service.run_now(session=session, ref=name, parameters=parse_kv(params))
        data = s.RunRead.model_validate(found).model_dump(mode="json")
    if wait_seconds:
        data = _wait(data["id"], wait_seconds)
    _show_run(data, as_json)
    if data["status"] == "failed":
        raise SystemExit(1)


def _show_run(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output(data, as_json=True)
        return
    shown = {k: v for k, v in _run_row(data).items() if k != "traceback"}
    output(_people([shown])[0], as_json=False)


@group.command("runs")
@click.option("--definition", default=None, help="Only this definition's runs.")
@click.option("--status", default=None)
@click.option("--limit", default=50, show_default=True, type=int)
@json_option
def runs(definition: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List the newest runs."""
    with session_scope(readonly=True) as session:
        filters: dict[str, list[str]] = {}
        if definition:
            filters["definition_id"] = [
                str(service.get_definition(session=session, ref=definition).id)
            ]
        if status:
            filters["status"] = [status]
        page = service.list_runs(session=session, params=ListParams(limit=100_000, filters=filters))
        items = page.serialize(s.RunRead)["items"][::-1][:limit]
    if as_json:
        output({"items": items}, as_json=True)
    else:
        output(_people([_run_row(r) for r in items]), as_json=False, columns=RUN_COLUMNS)


@group.command("show")
@click.argument("run_id")
@json_option
def show(run_id: str, as_json: bool) -> None:
    """One run: status, duration, parameters, outputs, the failing cell and its traceback."""
    with session_scope(readonly=True) as session:
        data = s.RunRead.model_validate(service.get_run(session=session, run_id=run_id)).model_dump(
            mode="json"
        )
    _show_run(data, as_json)
    if not as_json and data["traceback"]:
        click.echo(data["traceback"])


@group.command("rerun")
@click.argument("run_id")
@click.option("-p", "--param", "params", multiple=True, help="Changed parameter name=value.")
@json_option
@with_actor
def rerun(run_id: str, params: tuple[str, ...], as_json: bool) -> None:
    """Run again with the same parameters, or some changed."""
    with session_scope() as session:
        found = service.rerun(session=session, run_id=run_id, parameters=parse_kv(params))
        data = s.RunRead.model_validate(found).model_dump(mode="json")
    _show_run(data, as_json)


@group.command("cancel")
@click.argument("run_id")
@with_actor
def cancel(run_id: str) -> None:
    """Cancel a queued or running run (its kernel is stopped)."""
    with session_scope() as session:
        found = service.cancel_run(session=session, run_id=run_id)
        click.echo(f"run {found.id} canceled")


@group.command("output")
@click.argument("run_id")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--html", is_flag=True, help="Rendered read-only HTML instead of the notebook.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "markdown", "pdf"]),
    default=None,
    help="A format the definition asked for, as stored by the run (pdf needs --out).",
)
def output_notebook(run_id: str, out: str | None, html: bool, fmt: str | None) -> None:
    """The stored output notebook of a run (or one of its other output formats)."""
    with session_scope(readonly=True) as session:
        found = service.get_run(session=session, run_id=run_id)
        key, failed = found.output_key, found.failed_cell
        stored = service.run_output(found, fmt)[0] if fmt else b""
    if not key:
        fail(f"run {run_id} stored no output notebook")
    if fmt == "pdf" and not out:
        fail("a PDF goes to a file: give --out")
    if fmt:
        data = stored
    elif html:
        data = render.stored_html(key, failed_cell=failed).encode()
    else:
        data = json.dumps(render.notebook_json(key), indent=1).encode()
    if out:
        Path(out).write_bytes(data)
        click.echo(f"wrote {out}")
    else:
        click.echo(data.decode())


@group.command("archive")
@click.argument("path")
@click.argument("notebook_file", type=click.Path(exists=True, dir_okay=False))
@json_option
@with_actor
def archive_save(path: str, notebook_file: str, as_json: bool) -> None:
    """Archive a notebook file as the next version of PATH."""
    try:
        notebook = json.loads(Path(notebook_file).read_text())
    except (ValueError, UnicodeDecodeError):
        fail(f"{notebook_file} is not a notebook (not JSON)")
    with session_scope() as session:
        row = archive.save_version(session=session, path=path, notebook=notebook)
        data = s.VersionRead.model_validate(row).model_dump(mode="json")
    output(data if as_json else _people([data])[0], as_json=as_json)


@group.command("versions")
@click.argument("path")
@json_option
def versions(path: str, as_json: bool) -> None:
    """The archived versions of PATH."""
    with session_scope(readonly=True) as session:
        page = archive.list_versions(session=session, params=ListParams(limit=1000), path=path)
        items = page.serialize(s.VersionRead)["items"]
    if as_json:
        output({"items": items}, as_json=True)
    else:
        rows = [{**v, "size": f"{v['size'] / 1024:.1f} kB"} for v in items]
        output(
            _people(rows), as_json=False, columns=["version", "size", "created_by", "created_at"]
        )


@group.command("publish")
@click.argument("path")
@click.option("--version", "version", type=int, default=None, help="The latest when not given.")
@click.option("--slug", default=None, help="The stable name (from the path by default).")
@json_option
@with_actor
def publish(path: str, version: int | None, slug: str | None, as_json: bool) -> None:
    """Publish an archived version read-only under a stable link."""
    with session_scope() as session:
        row = archive.publish(session=session, path=path, version=version, slug=slug)
        data = s.PublicationRead.model_validate(archive.publication_read(session, row)).model_dump(
            mode="json"
        )
    output(data if as_json else _people([data])[0], as_json=as_json)


@group.command("published")
@json_option
def published(as_json: bool) -> None:
    """The published area: stable names and their versions."""
    with session_scope(readonly=True) as session:
        items = [
            s.PublicationRead.model_validate(p).model_dump(mode="json")
            for p in archive.list_publications(session=session)
        ]
    if as_json:
        output({"items": items}, as_json=True)
    else:
        output(_people(items), as_json=False, columns=["slug", "path", "version", "link"])
