"""`popcorn inventory …`: import and export files, query devices, trace cables, change things.

Thin over `popcorn.inventory.service`; every listing has `--json`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from popcorn.cli import json_option, output, parse_kv, progress, with_actor
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.inventory import filters
from popcorn.inventory import schemas as s
from popcorn.inventory.bulk import TYPES, BatchResult, resolve_type
from popcorn.inventory.ipam import cli as ipam_cli
from popcorn.inventory.ipam.cli import cable, next_ip, next_prefix, primary_ip, uncable

if TYPE_CHECKING:
    from popcorn.inventory.service import LibraryImport

# The lists (`devices`, `sites`, `models`, `list`) read through `filters`, the inventory's
# read side; `service` (with the audit log, the outbox and the change machinery) loads in
# the commands that change or look up one thing, so a list never pays for the write side.

COLUMNS: dict[str, list[str]] = {
    "custom_field": ["id", "object_type", "name", "type", "required"],
    "region": ["id", "slug", "name", "parent"],
    "site_group": ["id", "slug", "name", "parent"],
    "manufacturer": ["id", "slug", "name"],
    "site": ["id", "code", "name", "region", "group", "kind", "status", "country", "city"],
    "location": ["id", "site", "slug", "name", "parent", "status"],
    "rack": ["id", "site", "location", "name", "u_height", "status"],
    "device_model": ["id", "slug", "manufacturer", "model", "u_height", "part_number"],
    "module_type": ["id", "manufacturer", "model", "part_number"],
    "device": ["id", "name", "role", "model", "site", "rack", "status", "serial"],
    "bay": ["id", "device", "kind", "name", "position"],
    "component": ["id", "device", "name", "kind", "serial", "firmware", "status"],
    "interface": ["id", "device", "name", "type", "speed", "mgmt_only", "link_id"],
    "port": ["id", "device", "kind", "name", "type", "link_id"],
    "link": ["id", "a_device", "a_name", "b_device", "b_name", "type", "status"],
}


@click.group("inventory")
def group() -> None:
    """Sites, device models, devices, components and cables; IPAM, circuits and power."""


def _print_result(result: BatchResult, as_json: bool) -> None:
    if as_json:
        output(result.as_dict(), as_json=True)
        return
    rows = [{"type": name, **counts} for name, counts in result.counts.items()]
    title = "dry run: nothing written" if result.dry_run else f"imported in {result.seconds:.1f}s"
    output(rows, as_json=False, columns=["type", "create", "update", "unchanged"], title=title)


def _report_errors(exc: InvalidInput) -> None:
    errors = exc.details.get("errors")
    if not errors:
        raise exc
    for err in errors:
        place = f"line {err['line']}: " if err.get("line") is not None else ""
        what = err.get("where") or err.get("section") or ""
        field = f"{err['field']}: " if err.get("field") else ""
        click.echo(f"{place}{what}: {field}{err['message']}", err=True)
    shown = exc.details.get("count", len(errors))
    click.echo(f"error: {shown} problem(s); nothing was written", err=True)
    sys.exit(1)


@group.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--type", "otype", help="Object type of a CSV file or bare list (devices, sites…).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "yaml"]),
    default=None,
    help="File format (default: from the file name).",
)
@click.option("--dry-run", is_flag=True, help="Check everything and show counts; write nothing.")
@click.option(
    "--strict",
    is_flag=True,
    help="Library directories too: any problem (an unknown field included) and nothing is written.",
)
@json_option
@with_actor
def import_command(
    paths: tuple[Path, ...],
    otype: str | None,
    fmt: str | None,
    dry_run: bool,
    strict: bool,
    as_json: bool,
) -> None:
    """Import files (CSV, JSON, YAML) and device-type library directories.

    Files are all or nothing; re-importing the same file changes nothing. A
    directory is read as a device-type library checkout (device-types/…,
    module-types/…) file by file: fields Popcorn has no place for are warnings,
    a broken file is skipped and named, and the command then exits 1.
    `--strict` makes the library all or nothing too.
    """
    from popcorn.inventory import service

    bar = progress(None, "reading")
    task = bar.tasks[0].id

    def report(done: int, total: int, phase: str) -> None:
        bar.update(task, completed=done, total=total, description=phase)

    library = not strict and any(p.is_dir() for p in paths)
    try:
        with bar, session_scope() as session:
            if library:
                found = service.import_library(
                    session=session, paths=list(paths), dry_run=dry_run, progress=report
                )
            else:
                result = service.import_paths(
                    session=session,
                    paths=list(paths),
                    fmt=fmt,
                    otype=otype,
                    dry_run=dry_run,
                    progress=report,
                )
    except InvalidInput as exc:
        _report_errors(exc)
        return
    if not library:
        _print_result(result, as_json)
        return
    _print_library(found, as_json)
    if found.skipped:
        sys.exit(1)


def _print_library(found: LibraryImport, as_json: bool) -> None:
    if as_json:
        output(found.as_dict(), as_json=True)
    else:
        for warning in found.warnings:
            click.echo(f"warning: {warning}", err=True)
        for problem in found.problems:
            click.echo(f"error: {problem}", err=True)
        if found.result is not None:
            _print_result(found.result, as_json=False)
        click.echo(
            f"{found.imported} of {found.files} library file(s) imported, "
            f"{len(found.warnings)} warning(s)",
            err=True,
        )
    if found.skipped:
        click.echo(
            f"error: {len(found.skipped)} file(s) skipped: {', '.join(found.skipped)}", err=True
        )


@group.command("import-netbox")
@click.argument("dump", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Map and check everything; write nothing.")
@json_option
@with_actor
def import_netbox_command(dump: Path, dry_run: bool, as_json: bool) -> None:
    """Import a NetBox database dump (`manage.py dumpdata` JSON, NetBox 3.x or 4.x).

    All or nothing; importing the same dump again changes nothing, a newer dump
    updates what changed. Models Popcorn does not hold are listed with counts.
    """
    from popcorn.inventory.netbox import import_netbox

    bar = progress(None, "reading")
    task = bar.tasks[0].id

    def report(done: int, total: int, phase: str) -> None:
        bar.update(task, completed=done, total=total, description=phase)

    try:
        with bar, session_scope() as session:
            found = import_netbox(session=session, path=dump, dry_run=dry_run, progress=report)
    except InvalidInput as exc:
        _report_errors(exc)
        return
    if as_json:
        output(found.as_dict(), as_json=True)
        return
    _print_result(found.result, as_json=False)
    left_out = [{"netbox model": k, "records": v} for k, v in sorted(found.skipped.items())]
    left_out += [{"netbox model": k, "records": v} for k, v in sorted(found.dropped.items())]
    if left_out:
        output(left_out, as_json=False, columns=["netbox model", "records"], title="not imported")


@group.command("export")
@click.option("--type", "otypes", multiple=True, help="Object type(s); default: everything.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json", "yaml"]), default="yaml", show_default=True
)
@click.option(
    "-o",
    "--output",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.argument("filters", nargs=-1)
def export_command(
    otypes: tuple[str, ...], fmt: str, path: Path | None, filters: tuple[str, ...]
) -> None:
    """Export in the import format; with one --type, FILTERS (site=ams1 …) apply."""
    from popcorn.inventory import service

    args = {k: str(v) for k, v in parse_kv(filters).items()}
    with session_scope(readonly=True) as session:
        if path is None:
            count = service.export(
                session=session, out=sys.stdout, fmt=fmt, otypes=list(otypes) or None, args=args
            )
        else:
            with path.open("w", encoding="utf-8", newline="") as out:
                count = service.export(
                    session=session, out=out, fmt=fmt, otypes=list(otypes) or None, args=args
                )
            click.echo(f"exported {count} objects to {path}", err=True)


def _list(otype: str, args: dict[str, Any], limit: int, as_json: bool) -> None:
    """List any inventory type by name: an IPAM, circuit or power type goes to its CLI.

    DCIM names are tried first (no IPAM name is one of them): asking IPAM loads its
    service, which a list of sites or devices has no use for."""
    try:
        dcim = resolve_type(otype)
    except InvalidInput:
        if not ipam_cli.handles(otype):
            raise
        ipam_cli.list_objects(otype, args, limit, as_json)
        return
    _list_dcim(dcim, args, limit, as_json)


def _list_dcim(otype: str, args: dict[str, Any], limit: int, as_json: bool) -> None:
    """List a DCIM type (`TYPES`) through the read side: no IPAM service, no write side."""
    with session_scope(readonly=True) as session:
        page = filters.list_objects(session=session, otype=otype, args={**args, "limit": limit})
    if as_json:
        output(page, as_json=True)
        return
    title = f"{len(page['items'])} of {page['count']} {TYPES[otype].plural.replace('_', ' ')}"
    output(page["items"], as_json=False, columns=COLUMNS[otype], title=title)


def _filters(pairs: tuple[str, ...], **named: Any) -> dict[str, Any]:
    args = {k: str(v) for k, v in parse_kv(pairs).items()}
    args.update({k: v for k, v in named.items() if v})
    return args


limit_option = click.option("--limit", default=50, show_default=True, help="At most this many.")


@group.command("list")
@click.argument("otype", metavar="TYPE")
@click.argument("filters", nargs=-1)
@limit_option
@json_option
def list_command(otype: str, filters: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List any object type with filters such as status=active name__ic=ams."""
    _list(otype, _filters(filters), limit, as_json)


@group.command("devices")
@click.option("--site")
@click.option("--region", help="Region slug; includes its sub-regions.")
@click.option("--role", type=click.Choice(s.DEVICE_ROLES))
@click.option("--status", type=click.Choice(s.DEVICE_STATUSES))
@click.option("--model", help="Device model slug.")
@click.option("--tag")
@click.option("-q", "query", help="Free-text search (name, serial, asset tag, IP).")
@click.argument("filters", nargs=-1)
@limit_option
@json_option
def devices_command(
    site: str | None,
    region: str | None,
    role: str | None,
    status: str | None,
    model: str | None,
    tag: str | None,
    query: str | None,
    filters: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """List devices; FILTERS are extra key=value filters (serial=…, manufacturer=…)."""
    args = _filters(
        filters, site=site, region=region, role=role, status=status, model=model, tag=tag, q=query
    )
    _list_dcim("device", args, limit, as_json)


@group.command("sites")
@click.option("--region")
@click.option("--site-group", "site_group", help="Site group slug; includes its sub-groups.")
@click.option("--kind", type=click.Choice(s.SITE_KINDS))
@click.argument("filters", nargs=-1)
@limit_option
@json_option
def sites_command(
    region: str | None,
    site_group: str | None,
    kind: str | None,
    filters: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """List sites."""
    args = _filters(filters, region=region, site_group=site_group, kind=kind)
    _list_dcim("site", args, limit, as_json)


@group.command("models")
@click.option("--manufacturer")
@click.argument("filters", nargs=-1)
@limit_option
@json_option
def models_command(
    manufacturer: str | None, filters: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """List device models (device types)."""
    _list_dcim("device_model", _filters(filters, manufacturer=manufacturer), limit, as_json)


@group.command("show")
@click.argument("device")
@json_option
def show_command(device: str, as_json: bool) -> None:
    """A device with its components, interfaces, ports and bays."""
    from popcorn.inventory import service

    with session_scope(readonly=True) as session:
        found = service.get_device(session=session, ref=device)
        data: dict[str, Any] = {
            "device": service.read_one(session=session, otype="device", obj=found)
        }
        for otype in ("component", "interface", "port", "bay"):
            page = service.list_objects(
                session=session, otype=otype, args={"device_id": str(found.id), "limit": 1000}
            )
            data[TYPES[otype].plural] = page["items"]
    if as_json:
        output(data, as_json=True)
        return
    output(data["device"], as_json=False, title=f"device {found.name}")
    for otype in ("component", "interface", "port", "bay"):
        items = data[TYPES[otype].plural]
        if items:
            output(
                items,
                as_json=False,
                columns=[c for c in COLUMNS[otype] if c != "device"],
                title=TYPES[otype].plural,
            )


def _trace_end(end: dict[str, Any]) -> str:
    """`device:eth0`, or for a circuit termination or power feed its name and site."""
    if end["device"] is None:
        return f"{end['name']} @ {end.get('site') or '?'}"
    return f"{end['device']}:{end['name']}"


@group.command("trace")
@click.argument("device")
@click.argument("name")
@click.option(
    "--kind",
    default="interface",
    show_default=True,
    type=click.Choice(["interface", *s.PORT_KINDS]),
)
@json_option
def trace_command(device: str, name: str, kind: str, as_json: bool) -> None:
    """Follow the cables from DEVICE's interface NAME to the far end."""
    from popcorn.inventory import service

    with session_scope(readonly=True) as session:
        path = service.trace(session=session, device=device, name=name, kind=kind)
    if as_json:
        output(path, as_json=True)
        return
    rows = []
    for hop in path["hops"]:
        near, far, link = hop["near"], hop["far"], hop["link"]
        if link is None:
            across = "(not connected)"
        elif link["type"] == "circuit":
            across = f"circuit {link['provider']} {link['cid']}"
        else:
            across = f"#{link['id']} {link['type']}".strip()
        rows.append(
            {
                "from": _trace_end(near),
                "link": across,
                "to": f"{_trace_end(far)} ({far['kind']})" if far else "",
            }
        )
    state = "complete" if path["complete"] else "incomplete"
    output(rows, as_json=False, columns=["from", "link", "to"], title=f"trace ({state})")


@group.command("create")
@click.argument("otype", metavar="TYPE")
@click.argument("fields", nargs=-1, required=True)
@json_option
@with_actor
def create_command(otype: str, fields: tuple[str, ...], as_json: bool) -> None:
    """Create one object: `popcorn inventory create device name=r1 role=router model=mx204 …`."""
    from popcorn.inventory import service

    if ipam_cli.handles(otype):
        ipam_cli.create(otype, parse_kv(fields), as_json)
        return
    with session_scope() as session:
        created = service.create_object(session=session, otype=otype, data=parse_kv(fields))
    output(created, as_json=as_json)


@group.command("update")
@click.argument("otype", metavar="TYPE")
@click.argument("ref")
@click.argument("fields", nargs=-1, required=True)
@json_option
@with_actor
def update_command(otype: str, ref: str, fields: tuple[str, ...], as_json: bool) -> None:
    """Change fields of one object (by id or natural key)."""
    from popcorn.inventory import service

    if ipam_cli.handles(otype):
        ipam_cli.update(otype, ref, parse_kv(fields), as_json)
        return
    with session_scope() as session:
        changed = service.update_object(
            session=session, otype=otype, ref=ref, data=parse_kv(fields)
        )
    output(changed, as_json=as_json)


@group.command("delete")
@click.argument("otype", metavar="TYPE")
@click.argument("refs", nargs=-1, required=True)
@with_actor
def delete_command(otype: str, refs: tuple[str, ...]) -> None:
    """Delete objects (all or nothing); a device takes its parts and cables with it."""
    from popcorn.inventory import service

    if ipam_cli.handles(otype):
        ipam_cli.delete(otype, list(refs))
        return
    with session_scope() as session:
        count = service.delete_objects(session=session, otype=otype, refs=list(refs))
    click.echo(f"deleted {count} {TYPES[resolve_type(otype)].plural.replace('_', ' ')}")


@group.command("status")
@click.argument("device")
@click.argument("status", type=click.Choice(s.DEVICE_STATUSES))
@click.option("--reason", default="", help="Why; kept in the status_changed event.")
@json_option
@with_actor
def status_command(device: str, status: str, reason: str, as_json: bool) -> None:
    """Move a device along its lifecycle (planned, staged, active, maintenance, failed, …)."""
    from popcorn.inventory import service

    with session_scope() as session:
        found = service.set_device_status(session=session, ref=device, status=status, reason=reason)
        data = service.read_one(session=session, otype="device", obj=found)
    output(data if as_json else {k: data[k] for k in ("name", "status", "site")}, as_json=as_json)


@group.command("fail")
@click.argument("device")
@click.argument("component")
@click.option("--reason", default="")
@json_option
@with_actor
def fail_command(device: str, component: str, reason: str, as_json: bool) -> None:
    """Mark a component (id, name or serial) of DEVICE failed."""
    from popcorn.inventory import service

    with session_scope() as session:
        part = service.mark_component_failed(
            session=session, device=device, component=component, reason=reason
        )
        data = service.read_one(session=session, otype="component", obj=part)
    output(data, as_json=as_json)


@group.command("report")
@click.argument("name", type=click.Choice(["counts", "capacity", "eol", "failed"]))
@click.option(
    "--by",
    default=None,
    help="counts: site, region, model, manufacturer, status, role; capacity: site or region.",
)
@click.option("--within-days", default=180, show_default=True, help="eol: horizon in days.")
@json_option
def report_command(name: str, by: str | None, within_days: int, as_json: bool) -> None:
    """Counts, capacity, components near end of life, devices with failed components."""
    from popcorn.inventory import service

    with session_scope(readonly=True) as session:
        if name == "counts":
            by = by or "site"
            rows: Any = service.device_counts(session=session, by=by)
            columns = [by, "devices"]
        elif name == "capacity":
            by = by or "site"
            rows = service.capacity(session=session, by=by)
            columns = [by, "devices", "throughput_gbps", "storage_tb"]
        elif name == "eol":
            rows = service.end_of_life(session=session, within_days=within_days)["items"]
            columns = ["device", "name", "kind", "serial", "end_of_life", "basis"]
        else:
            rows = service.failed_components(session=session)
            for row in rows:
                row["components"] = ", ".join(f"{c['name']} ({c['kind']})" for c in row["failed"])
            columns = ["device", "site", "status", "components"]
    output(rows, as_json=as_json, columns=columns)


@group.command("history")
@click.argument("otype", metavar="TYPE")
@click.argument("ref")
@json_option
def history_command(otype: str, ref: str, as_json: bool) -> None:
    """The change history of one object."""
    from popcorn.audit import AuditRead
    from popcorn.inventory import service

    with session_scope(readonly=True) as session:
        rows = [
            AuditRead.model_validate(r).model_dump(mode="json")
            for r in service.history(session=session, otype=otype, ref=ref)
        ]
    for row in rows:
        row["changed"] = (
            "(all)" if row["action"] in ("create", "delete") else ", ".join(row["diff"])
        )
    output(rows, as_json=as_json, columns=["time", "actor", "action", "changed"])


@group.command("journal")
@click.argument("otype", metavar="TYPE")
@click.argument("ref")
@click.option("--add", "comments", help="Add this note.")
@click.option("--kind", type=click.Choice(s.JOURNAL_KINDS), default="info", show_default=True)
@json_option
@with_actor
def journal_command(otype: str, ref: str, comments: str | None, kind: str, as_json: bool) -> None:
    """Show an object's journal, or add a note to it with --add."""
    from popcorn.inventory import service

    with session_scope() as session:
        if comments:
            service.add_journal(session=session, otype=otype, ref=ref, comments=comments, kind=kind)
        rows = [
            s.JournalRead.model_validate(e).model_dump(mode="json")
            for e in service.journal(session=session, otype=otype, ref=ref)
        ]
    output(rows, as_json=as_json, columns=["created_at", "created_by", "kind", "comments"])


group.add_command(next_prefix)
group.add_command(next_ip)
group.add_command(cable)
group.add_command(uncable)
group.add_command(primary_ip)
