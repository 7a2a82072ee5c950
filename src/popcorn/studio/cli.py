"""`popcorn studio`: projects, shots, versions, playlists; generic find and create; statuses."""

from __future__ import annotations

import json
from typing import Any

import click

from popcorn.cli import json_option, output, parse_kv, with_actor
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.studio import service, workflows


@click.group("studio")
def group() -> None:
    """Production tracking: shows, shots, tasks, versions, publishes and review playlists."""


def _json_arg(raw: str | None, name: str, default: Any) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"--{name} is not JSON: {exc.msg}", details={"field": name}) from exc


def _list(
    entity_type: str,
    fields: list[str],
    filters: list[Any],
    as_json: bool,
    project: str | None,
    limit: int,
) -> None:
    with session_scope(readonly=True) as session:
        if project is not None:
            filters = [
                ["project", "is", service.project_ref(session=session, ref=project)],
                *filters,
            ]
        page = service.find(
            session=session,
            entity_type=entity_type,
            filters=filters,
            fields=fields,
            order=[{"field_name": fields[0], "direction": "asc"}],
            limit=limit,
        )
    rows = page["items"]
    if not as_json:
        rows = [
            {k: (v.get("name") if isinstance(v, dict) else v) for k, v in r.items()} for r in rows
        ]
    output(rows, as_json=as_json, columns=["id", *fields])


project_option = click.option("--project", help="Project name or id.")
limit_option = click.option("--limit", default=500, show_default=True, type=click.IntRange(1, 5000))


@group.command("projects")
@limit_option
@json_option
def projects(limit: int, as_json: bool) -> None:
    """List projects."""
    _list("Project", ["name", "sg_status", "archived"], [], as_json, None, limit)


@group.command("shots")
@project_option
@click.option("--sequence", help="Sequence code.")
@click.option("--status", help="Status (sg_status_list).")
@limit_option
@json_option
def shots(
    project: str | None, sequence: str | None, status: str | None, limit: int, as_json: bool
) -> None:
    """List shots with their cut in/out."""
    filters: list[Any] = []
    if sequence:
        filters.append(["sg_sequence.Sequence.code", "is", sequence])
    if status:
        filters.append(["sg_status_list", "is", status])
    fields = ["code", "sg_sequence", "sg_status_list", "sg_cut_in", "sg_cut_out", "sg_cut_duration"]
    _list("Shot", fields, filters, as_json, project, limit)


@group.command("versions")
@project_option
@click.option("--status", help="Review status (rev, vwd, apr...).")
@limit_option
@json_option
def versions(project: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """List versions with their entity, frame range and review status."""
    filters: list[Any] = [["sg_status_list", "is", status]] if status else []
    fields = ["code", "entity", "frame_range", "sg_status_list", "user"]
    _list("Version", fields, filters, as_json, project, limit)


@group.command("playlists")
@project_option
@limit_option
@json_option
def playlists(project: str | None, limit: int, as_json: bool) -> None:
    """List review playlists."""
    _list("Playlist", ["code", "description", "locked"], [], as_json, project, limit)


@group.command("find")
@click.argument("entity_type")
@click.option("--filters", help='JSON, e.g. \'[["sg_status_list", "is", "ip"]]\'.')
@click.option("--fields", help="Comma-separated fields and linked paths (entity.Shot.code).")
@click.option("--any", "match_any", is_flag=True, help="Match any filter instead of all.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 5000))
@json_option
def find(
    entity_type: str,
    filters: str | None,
    fields: str | None,
    match_any: bool,
    limit: int,
    as_json: bool,
) -> None:
    """Find entities with shotgun_api3 filters."""
    names = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    with session_scope(readonly=True) as session:
        page = service.find(
            session=session,
            entity_type=entity_type,
            filters=_json_arg(filters, "filters", []),
            fields=names,
            filter_operator="any" if match_any else "all",
            limit=limit,
        )
    output(page["items"], as_json=as_json)


@group.command("create")
@click.argument("entity_type")
@click.argument("pairs", nargs=-1)
@click.option("--data", help="The fields as a JSON object (besides key=value pairs).")
@json_option
@with_actor
def create(entity_type: str, pairs: tuple[str, ...], data: str | None, as_json: bool) -> None:
    """Create an entity from key=value pairs (values parsed as JSON) and/or --data.

    Example: popcorn studio create Shot code=SH010 project='{"type": "Project", "id": 1}'
    """
    values = {**_json_arg(data, "data", {}), **parse_kv(pairs)}
    with session_scope() as session:
        created = service.create(session=session, entity_type=entity_type, data=values)
    output(created, as_json=as_json)


@group.group("status")
def status() -> None:
    """Statuses and their workflows."""


@status.command("set")
@click.argument("entity_type")
@click.argument("entity_id", type=int)
@click.argument("value")
@json_option
@with_actor
def status_set(entity_type: str, entity_id: int, value: str, as_json: bool) -> None:
    """Move an entity to a status its workflow allows."""
    with session_scope() as session:
        ent = service.entity(entity_type)
        field = workflows.status_field(ent)
        if field is None:
            raise InvalidInput(f"{entity_type} has no status", details={"field": "entity_type"})
        changed = service.update(
            session=session, entity_type=entity_type, entity_id=entity_id, data={field: value}
        )
    output(changed, as_json=as_json)


@status.command("workflows")
@json_option
def status_workflows(as_json: bool) -> None:
    """The status workflow of each entity type."""
    with session_scope(readonly=True) as session:
        rows = workflows.all_workflows(session)
    if not as_json:
        rows = [
            {**r, "statuses": ", ".join(r["statuses"]), "transitions": len(r["transitions"])}
            for r in rows
        ]
    output(rows, as_json=as_json, columns=["entity_type", "statuses", "default", "transitions"])
