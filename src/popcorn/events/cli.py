"""`popcorn events …` (send, search, incidents, dead letters, secrets) and `popcorn rules …`."""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from popcorn.cli import json_option, output, parse_kv, with_actor
from popcorn.db import session_scope, utcnow
from popcorn.errors import InvalidInput
from popcorn.events import queries, webhook_secrets
from popcorn.events.formats import Event, EventFormatError, parse_time
from popcorn.events.schemas import ActionRunRead, EventRead, IncidentRead
from popcorn.listing import PageResult, parse_list_params

EVENT_COLUMNS = ["id", "type", "source", "subject", "time", "status", "match_count"]
RUN_COLUMNS = ["id", "event_id", "rule_name", "type", "status", "attempts", "error"]
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _since(value: str) -> str:
    """`15m`, `2h`, `7d` ago, or an RFC 3339 time, as an ISO timestamp."""
    match = _DURATION.fullmatch(value.strip())
    if match:
        delta = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
        return (utcnow() - delta).isoformat()
    try:
        return parse_time(value, "since").isoformat()
    except EventFormatError as exc:
        raise click.BadParameter(f"{value!r}: use 15m, 2h, 7d or an RFC 3339 time") from exc


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    return Path(path).read_text(encoding="utf-8")


@click.group("events")
def group() -> None:
    """Events in (CloudEvents, Alertmanager, domain events), what matched, what ran."""


@group.command("send")
@click.argument("file", required=False)
@click.option("--type", "event_type", help="Build a CloudEvent of this type (no FILE).")
@click.option("--source", default="popcorn/cli", show_default=True)
@click.option("--subject", default=None)
@click.option("--id", "event_id", default=None, help="Event id (default: a random one).")
@click.option("--label", "labels", multiple=True, help="key=value extension attribute.")
@click.option("--data", "data_pairs", multiple=True, help="key=value in the event data.")
@click.option("--wait", "wait_seconds", type=float, default=None, help="Wait for processing.")
@json_option
@with_actor
def send(
    file: str | None,
    event_type: str | None,
    source: str,
    subject: str | None,
    event_id: str | None,
    labels: tuple[str, ...],
    data_pairs: tuple[str, ...],
    wait_seconds: float | None,
    as_json: bool,
) -> None:
    """Send events from FILE (CloudEvents JSON, a batch, or an Alertmanager payload; - is stdin),
    or one built from --type/--label/--data."""
    from popcorn.events import service

    if file and event_type:
        raise click.UsageError("give a FILE or --type, not both")
    with session_scope() as session:
        if file:
            result = service.ingest_body(session=session, body=_read(file), content_type=None)
        elif event_type:
            import uuid

            try:
                ev = Event(
                    id=event_id or uuid.uuid4().hex,
                    type=event_type,
                    source=source,
                    subject=subject,
                    time=utcnow(),
                    data=parse_kv(data_pairs),
                    labels={k: str(v) for k, v in parse_kv(labels).items()},
                )
            except EventFormatError as exc:
                raise exc.as_invalid_input() from None
            result = service.ingest(session=session, events=[ev], origin="cli")
        else:
            raise click.UsageError("give a FILE (or -) or --type")
    ids = [item["id"] for item in result.items if item["status"] == "accepted"]
    if wait_seconds and ids:
        _wait_processed(ids, wait_seconds)
    output(
        result.as_dict()["events"],
        as_json=as_json,
        columns=["id", "event_id", "type", "status"],
        title=f"{result.accepted} accepted, {result.duplicates} duplicate(s)",
    )


def _wait_processed(ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(readonly=True) as session:
            if not queries.count_pending(session=session, event_ids=ids):
                return
        time.sleep(0.1)
    raise TimeoutError(f"events still pending after {timeout:g}s (is a worker running?)")


@group.command("list")
@click.option("--type", "event_type")
@click.option("--source")
@click.option("--subject")
@click.option("--status", type=click.Choice(["pending", "processed", "failed"]))
@click.option("--label", "labels", multiple=True, help="key:value (repeat: all must hold).")
@click.option("--since", help="15m, 2h, 7d, or an RFC 3339 time (event time).")
@click.option("--until", help="RFC 3339 time (event time).")
@click.option("-q", "--query", "q", help="Text in data, labels, subject or type.")
@click.option("--limit", default=50, show_default=True)
@json_option
def list_events(
    event_type: str | None,
    source: str | None,
    subject: str | None,
    status: str | None,
    labels: tuple[str, ...],
    since: str | None,
    until: str | None,
    q: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The newest stored events matching the filters."""
    args: dict[str, Any] = {"limit": str(limit)}
    for key, value in (("type", event_type), ("source", source), ("subject", subject),
                       ("status", status), ("q", q)):  # fmt: skip
        if value:
            args[key] = value
    if labels:
        args["label"] = list(labels)
    if since:
        args["time__gte"] = _since(since)
    if until:
        args["time__lte"] = _since(until)
    params = parse_list_params(args)
    with session_scope(readonly=True) as session:
        found = queries.recent_events(session=session, params=params)
        rows = PageResult(found, None, None).serialize(EventRead)["items"]
    output(rows, as_json=as_json, columns=EVENT_COLUMNS)


@group.command("show")
@click.argument("ref")
@json_option
def show_event(ref: str, as_json: bool) -> None:
    """An event (Popcorn id or event id), its matches and what each action did."""
    with session_scope(readonly=True) as session:
        row = queries.get_event(session=session, ref=ref)
        detail = queries.event_detail(session=session, row=row)
    if as_json:
        output(detail, as_json=True)
        return
    matches = detail.pop("matches")
    incidents = detail.pop("incidents")
    output(detail, as_json=False)
    for match in matches:
        runs = match.pop("actions")
        state = "acted" if match["acted"] else (match["suppressed"] or match["mode"])
        click.echo(f"\nrule {match['rule_name']} v{match['rule_version']}: {state}"
                   + (f" ({match['error']})" if match["error"] else ""))  # fmt: skip
        if runs:
            output(runs, as_json=False, columns=["id", "type", "status", "attempts", "error"])
    for incident in incidents:
        click.echo(f"incident {incident['id']} {incident['key']!r}: {incident['change']}")


# --- incidents -------------------------------------------------------------------------


@group.group("incidents")
def incidents() -> None:
    """Incidents opened, updated and resolved by rules."""


@incidents.command("list")
@click.option("--status", type=click.Choice(["open", "resolved"]))
@click.option("--limit", default=50, show_default=True)
@json_option
def incidents_list(status: str | None, limit: int, as_json: bool) -> None:
    """List incidents, newest first (filter with --status)."""
    args: dict[str, Any] = {"limit": str(limit)}
    if status:
        args["status"] = status
    with session_scope(readonly=True) as session:
        result = queries.list_incidents(session=session, params=parse_list_params(args))
        rows = result.serialize(IncidentRead)["items"]
    output(
        rows,
        as_json=as_json,
        columns=["id", "key", "title", "status", "severity", "event_count", "opened_at"],
    )


@incidents.command("show")
@click.argument("incident_id", type=int)
@json_option
def incidents_show(incident_id: int, as_json: bool) -> None:
    """Show an incident and the events that opened and updated it."""
    with session_scope(readonly=True) as session:
        incident = queries.get_incident(session=session, incident_id=incident_id)
        detail = queries.incident_detail(session=session, incident=incident)
    if as_json:
        output(detail, as_json=True)
        return
    attached = detail.pop("events")
    output(detail, as_json=False)
    output(attached, as_json=False, columns=["id", "event_id", "type", "change", "at"])


@incidents.command("resolve")
@click.argument("incident_id", type=int)
@with_actor
def incidents_resolve(incident_id: int) -> None:
    """Resolve an incident by hand."""
    with session_scope() as session:
        queries.resolve_incident(session=session, incident_id=incident_id)
    click.echo(f"incident {incident_id} resolved")


# --- dead letters ------------------------------------------------------------------------


@group.group("dead-letters")
def dead_letters() -> None:
    """Failed actions (webhooks that exhausted their retries, and others)."""


@dead_letters.command("list")
@click.option("--rule")
@click.option("--type", "action_type")
@click.option("--limit", default=50, show_default=True)
@json_option
def dead_letters_list(rule: str | None, action_type: str | None, limit: int, as_json: bool) -> None:
    """List actions that failed for good, newest first."""
    args: dict[str, Any] = {"limit": str(limit)}
    if rule:
        args["rule"] = rule
    if action_type:
        args["type"] = action_type
    with session_scope(readonly=True) as session:
        result = queries.list_action_runs(
            session=session, params=parse_list_params(args), dead_letters=True
        )
        rows = result.serialize(ActionRunRead)["items"]
    output(rows, as_json=as_json, columns=RUN_COLUMNS)


@dead_letters.command("replay")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@with_actor
def dead_letters_replay(run_ids: tuple[int, ...]) -> None:
    """Run failed actions again (webhooks go back to their queue)."""
    for run_id in run_ids:
        with session_scope() as session:
            run = queries.replay_action(session=session, run_id=run_id)
            click.echo(f"action run {run_id}: {run.status}")


# --- secrets and settings ----------------------------------------------------------------


@group.group("secrets")
def secrets_group() -> None:
    """Webhook signing secrets (stored encrypted)."""


@secrets_group.command("set")
@click.argument("name")
@click.option(
    "--allow",
    "allowed_targets",
    multiple=True,
    required=True,
    help="A URL prefix or host this secret may sign for (repeat for several).",
)
@click.option("--value", default=None, help="The secret (default: generate one).")
@with_actor
def secrets_set(name: str, allowed_targets: tuple[str, ...], value: str | None) -> None:
    """Set a signing secret and print it (the `default` one signs webhooks naming none).

    A webhook is signed with it only when its URL matches one of the --allow targets.
    """
    with session_scope() as session:
        secret = webhook_secrets.set_secret(
            session=session, name=name, value=value, allowed_targets=list(allowed_targets)
        )
    click.echo(secret)


@secrets_group.command("list")
@json_option
def secrets_list(as_json: bool) -> None:
    """List the webhook signing secrets (names and allowed hosts, never values)."""
    with session_scope(readonly=True) as session:
        rows = webhook_secrets.list_secrets(session=session)
    output(rows, as_json=as_json, columns=["name", "allowed_targets", "created_at", "updated_at"])


@secrets_group.command("delete")
@click.argument("name")
@with_actor
def secrets_delete(name: str) -> None:
    """Delete a webhook signing secret."""
    with session_scope() as session:
        webhook_secrets.delete_secret(session=session, name=name)
    click.echo(f"secret {name!r} deleted")


@group.command("settings")
@click.option("--retention-days", type=int, default=None, help="Change the retention period.")
@json_option
@with_actor
def settings(retention_days: int | None, as_json: bool) -> None:
    """Show (or change) the retention period."""
    from popcorn.events import settings as event_settings

    with session_scope() as session:
        if retention_days is not None:
            data = event_settings.update_settings(session=session, retention_days=retention_days)
        else:
            data = event_settings.get_settings_view(session=session)
    output(data, as_json=as_json)


# --- rules -----------------------------------------------------------------------------


@click.group("rules")
def rules() -> None:
    """Rules: load YAML (versioned), list, show, test against sample events."""


@rules.command("load")
@click.argument("path", type=click.Path(exists=True))
@click.option("--prune", is_flag=True, help="Deactivate active rules that PATH does not define.")
@json_option
@with_actor
def rules_load(path: str, prune: bool, as_json: bool) -> None:
    """Load every rule of a YAML file or directory (all or nothing)."""
    from popcorn.events import rulebook

    files = rulebook.read_rule_files(path)
    try:
        with session_scope() as session:
            result = rulebook.store_rules(session=session, files=files, prune=prune)
    except InvalidInput as exc:  # the message already names file, line and reason
        raise click.ClickException(exc.message) from exc
    data = result.as_dict()
    if as_json:
        output(data, as_json=True)
        return
    output(data["rules"], as_json=False, columns=["name", "version", "change"])
    click.echo(
        f"{data['created']} created, {data['updated']} updated, {data['unchanged']} unchanged"
        + (f", {data['deactivated']} deactivated" if prune else "")
    )


@rules.command("list")
@click.option("--all", "include_all", is_flag=True, help="Include inactive rules.")
@json_option
def rules_list(include_all: bool, as_json: bool) -> None:
    """List the active rules (inactive ones too with --all)."""
    from popcorn.events import rulebook

    with session_scope(readonly=True) as session:
        rows = rulebook.list_rules(session=session, include_inactive=include_all)
    output(
        rows,
        as_json=as_json,
        columns=["name", "active_version", "mode", "priority", "events", "actions"],
    )


@rules.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Show this stored version's YAML.")
@json_option
def rules_show(name: str, version: int | None, as_json: bool) -> None:
    """Show a rule (its active version, or --version N) and its history."""
    from popcorn.events import rulebook

    with session_scope(readonly=True) as session:
        if version is not None:
            row = rulebook.get_rule_version(session=session, name=name, version=version)
            click.echo(row.source, nl=False)
            return
        data = rulebook.show_rule(session=session, name=name)
    if as_json:
        output(data, as_json=True)
        return
    source = data.pop("source")
    versions = data.pop("versions")
    output(data, as_json=False)
    output(versions, as_json=False, columns=["version", "active", "created_at", "created_by",
                                             "file"])  # fmt: skip
    click.echo(source, nl=False)


@rules.command("test")
@click.argument("event_file")
@click.option("--rules", "rules_path", default=None, help="Test these YAML rules instead.")
@click.option("--verbose", "-v", is_flag=True, help="Explain rules that did not match too.")
@json_option
def rules_test(event_file: str, rules_path: str | None, verbose: bool, as_json: bool) -> None:
    """Which rules match the sample event(s) in EVENT_FILE, and why."""
    from popcorn.events import rulebook

    try:
        sample = json.loads(_read(event_file))
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{event_file}: not valid JSON: {exc}") from exc
    rules_text = None
    if rules_path:
        rules_text = "\n---\n".join(text for _, text in rulebook.read_rule_files(rules_path))
    events = rulebook.events_from_sample(sample)
    with session_scope(readonly=True) as session:
        results = rulebook.explain(session=session, events=events, rules_text=rules_text)
    if as_json:
        output(results, as_json=True)
        return
    for item in results:
        ev = item["event"]
        hits = sum(1 for r in item["rules"] if r["matched"])
        click.echo(f"event {ev['id']} ({ev['type']}): {hits} rule(s) match")
        for result in item["rules"]:
            if not (result["matched"] or verbose):
                continue
            for line in result["lines"]:
                click.echo("  " + line)
            for action in result.get("actions", []):
                shown = action.get("error") or json.dumps(action.get("params"), default=str)
                click.echo(f"    -> {action['type']}: {shown}")


@rules.command("activate")
@click.argument("name")
@click.argument("version", type=int)
@with_actor
def rules_activate(name: str, version: int) -> None:
    """Make a stored VERSION of a rule the active one."""
    from popcorn.events import rulebook

    with session_scope() as session:
        rulebook.activate_rule_version(session=session, name=name, version=version)
    click.echo(f"rule {name!r}: version {version} active")


@rules.command("deactivate")
@click.argument("name")
@with_actor
def rules_deactivate(name: str) -> None:
    """Deactivate a rule; its versions are kept."""
    from popcorn.events import rulebook

    with session_scope() as session:
        rulebook.deactivate_rule(session=session, name=name)
    click.echo(f"rule {name!r} deactivated")


# `popcorn rules …` is the name users know (also reachable as `popcorn events rules …`).
group.add_command(rules)
extra_groups = [rules]
