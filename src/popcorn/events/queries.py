"""Reading what the pipeline did: events, matches, action runs, incidents and counts.

Also the two changes made from those lists: replaying a failed (dead-lettered)
action and resolving an incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Text, cast, func, or_, select, type_coerce
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.events.models import ActionRun, EventRecord, Incident, IncidentEvent, MatchRecord
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import parse_id

_LABEL_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")

EVENT_FILTERS = {
    "id": EventRecord.id,
    "event_id": EventRecord.event_id,
    "type": EventRecord.type,
    "source": EventRecord.source,
    "subject": EventRecord.subject,
    "status": EventRecord.status,
    "origin": EventRecord.origin,
    "hops": EventRecord.hops,
    "time": EventRecord.time,
    "received_at": EventRecord.received_at,
}
MATCH_FILTERS = {
    "event_id": MatchRecord.event_id,
    "rule": MatchRecord.rule_name,
    "mode": MatchRecord.mode,
    "acted": MatchRecord.acted,
    "suppressed": MatchRecord.suppressed,
    "created_at": MatchRecord.created_at,
}
ACTION_FILTERS = {
    "event_id": ActionRun.event_id,
    "rule": ActionRun.rule_name,
    "type": ActionRun.type,
    "status": ActionRun.status,
    "created_at": ActionRun.created_at,
}
INCIDENT_FILTERS = {
    "key": Incident.key,
    "status": Incident.status,
    "severity": Incident.severity,
    "rule": Incident.rule_name,
    "opened_at": Incident.opened_at,
}


# --------------------------------------------------------------------------- queries


def get_event(*, session: Session, ref: str | int) -> EventRecord:
    """By Popcorn id (digits) or by the sender's event id (when only one source used it)."""
    text_ref = str(ref)
    pk = parse_id(text_ref)
    if pk is not None:
        row = session.get(EventRecord, pk)
        if row is not None:
            return row
    rows = list(session.scalars(select(EventRecord).where(EventRecord.event_id == text_ref)))
    if not rows:
        raise NotFound(f"no event {text_ref!r}", details={"ref": text_ref})
    if len(rows) > 1:
        raise Conflict(
            f"event id {text_ref!r} was used by several sources; use the Popcorn id",
            details={"ids": [r.id for r in rows], "sources": [r.source for r in rows]},
        )
    return rows[0]


def list_events(*, session: Session, params: ListParams) -> PageResult:
    """Filter by any stored field, `label=key:value` (repeat: all must hold) and `q` text."""
    return paginate(session, _event_query(session, params), params, key=EventRecord.id)


def recent_events(*, session: Session, params: ListParams) -> list[EventRecord]:
    """The newest events matching the same filters as `list_events` (for people, not paging)."""
    stmt = _event_query(session, params).order_by(EventRecord.id.desc()).limit(params.limit)
    return list(session.scalars(stmt))


def count_pending(*, session: Session, event_ids: Sequence[int]) -> int:
    """How many of these events still wait to be matched against the rules."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(EventRecord)
            .where(EventRecord.id.in_(list(event_ids)), EventRecord.status == "pending")
        )
        or 0
    )


def visible_run(data: dict[str, Any], *, full: bool) -> dict[str, Any]:
    """An action run as a reader may see it: webhook headers and replies for operators only.

    A webhook's reply can carry whatever the receiver answers and its headers can carry
    credentials, so viewers see that there was a reply, not what it said.
    """
    if full:
        return data
    params = data.get("params")
    if isinstance(params, dict) and isinstance(params.get("headers"), dict):
        data["params"] = {**params, "headers": dict.fromkeys(params["headers"], "(hidden)")}
    if data.get("response") is not None:
        data["response"] = {"hidden": "webhook replies are shown to operators and admins"}
    return data


def _event_query(session: Session, params: ListParams) -> Any:
    filters = dict(params.filters)
    label_values = filters.pop("label", [])
    stmt = select(EventRecord).where(*filter_clauses(filters, {**EVENT_FILTERS}))
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        from sqlalchemy.dialects.postgresql import JSONB
    for raw in label_values:
        key, sep, value = raw.partition(":")
        if not sep or not _LABEL_KEY.fullmatch(key):
            raise InvalidInput(f"label filter {raw!r}: expected key:value", details={"label": raw})
        if postgres:
            stmt = stmt.where(type_coerce(EventRecord.labels, JSONB).contains({key: value}))
        else:
            stmt = stmt.where(EventRecord.labels[key].as_string() == value)
    if params.q:
        needle = params.q.lower()
        stmt = stmt.where(
            or_(
                func.lower(cast(EventRecord.data, Text)).contains(needle, autoescape=True),
                func.lower(cast(EventRecord.labels, Text)).contains(needle, autoescape=True),
                func.lower(EventRecord.subject).contains(needle, autoescape=True),
                func.lower(EventRecord.type).contains(needle, autoescape=True),
            )
        )
    return stmt


def event_detail(*, session: Session, row: EventRecord) -> dict[str, Any]:
    """An event with what matched it, what each action did, and its incidents."""
    from popcorn.events.schemas import ActionRunRead, EventRead, MatchRead

    matches = list(
        session.scalars(
            select(MatchRecord).where(MatchRecord.event_id == row.id).order_by(MatchRecord.id)
        )
    )
    runs = list(
        session.scalars(
            select(ActionRun)
            .where(ActionRun.event_id == row.id)
            .order_by(ActionRun.match_id, ActionRun.position)
        )
    )
    incidents = list(
        session.execute(
            select(Incident.id, Incident.key, Incident.status, IncidentEvent.change)
            .join(IncidentEvent, IncidentEvent.incident_id == Incident.id)
            .where(IncidentEvent.event_id == row.id)
        )
    )
    out = EventRead.model_validate(row).model_dump(mode="json")
    out["matches"] = [
        {
            **MatchRead.model_validate(m).model_dump(mode="json"),
            "actions": [
                ActionRunRead.model_validate(r).model_dump(mode="json")
                for r in runs
                if r.match_id == m.id
            ],
        }
        for m in matches
    ]
    out["incidents"] = [
        {"id": i.id, "key": i.key, "status": i.status, "change": i.change} for i in incidents
    ]
    return out


def list_matches(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(MatchRecord).where(*filter_clauses(params.filters, MATCH_FILTERS))
    return paginate(session, stmt, params, key=MatchRecord.id)


def list_action_runs(
    *, session: Session, params: ListParams, dead_letters: bool = False
) -> PageResult:
    stmt = select(ActionRun).where(*filter_clauses(params.filters, ACTION_FILTERS))
    if dead_letters:
        stmt = stmt.where(ActionRun.status == "failed")
    return paginate(session, stmt, params, key=ActionRun.id)


def get_action_run(*, session: Session, run_id: int) -> ActionRun:
    run = session.get(ActionRun, run_id)
    if run is None:
        raise NotFound(f"no action run {run_id}", details={"id": run_id})
    return run


def replay_action(*, session: Session, run_id: int) -> ActionRun:
    """Run a failed (dead-lettered) action again with the parameters it was rendered with."""
    from popcorn.events import actions  # jobs and outbound: a replay or resolve only

    run = session.get(ActionRun, run_id, with_for_update=True)
    if run is None:
        raise NotFound(f"no action run {run_id}", details={"id": run_id})
    if run.status != "failed":
        raise Conflict(
            f"action run {run_id} is {run.status}; only failed runs can be replayed",
            details={"status": run.status},
        )
    if run.params is None:
        raise Conflict(
            "its parameters never rendered (template error): fix the rule instead",
            details={"error": run.error},
        )
    row = session.get(EventRecord, run.event_id)
    if row is None:
        raise NotFound("the event of this action run is gone")
    before = {"status": run.status, "error": run.error}
    run.replays += 1
    run.status = "pending"
    run.error = ""
    run.updated_at = utcnow()
    actions.perform(session, run, event=row)
    record_change(
        session, "replay", "event_action_run", run.id, before=before,
        after={"status": run.status, "replays": run.replays},
    )  # fmt: skip
    return run


def list_incidents(*, session: Session, params: ListParams) -> PageResult:
    stmt = select(Incident).where(*filter_clauses(params.filters, INCIDENT_FILTERS))
    if params.q:
        stmt = stmt.where(func.lower(Incident.title).contains(params.q.lower(), autoescape=True))
    return paginate(session, stmt, params, key=Incident.id)


def get_incident(*, session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}", details={"id": incident_id})
    return incident


def incident_detail(*, session: Session, incident: Incident) -> dict[str, Any]:
    from popcorn.events.schemas import IncidentRead

    attached = session.execute(
        select(EventRecord.id, EventRecord.event_id, EventRecord.type, IncidentEvent.change,
               IncidentEvent.created_at)
        .join(IncidentEvent, IncidentEvent.event_id == EventRecord.id)
        .where(IncidentEvent.incident_id == incident.id)
        .order_by(IncidentEvent.created_at, EventRecord.id)
    )  # fmt: skip
    out = IncidentRead.model_validate(incident).model_dump(mode="json")
    out["events"] = [
        {"id": r[0], "event_id": r[1], "type": r[2], "change": r[3], "at": r[4].isoformat()}
        for r in attached
    ]
    return out


def resolve_incident(*, session: Session, incident_id: int) -> Incident:
    from popcorn.events import actions  # jobs and outbound: a replay or resolve only

    incident = session.get(Incident, incident_id, with_for_update=True)
    if incident is None:
        raise NotFound(f"no incident {incident_id}", details={"id": incident_id})
    if incident.status != "open":
        raise Conflict(f"incident {incident_id} is already {incident.status}")
    actions.resolve(session, incident)
    return incident


# --------------------------------------------------------------------------- metrics


def collect_metrics() -> Iterator[Any]:
    """Scrape-time gauges: the processing backlog, dead letters and open incidents."""
    from prometheus_client.core import GaugeMetricFamily

    with session_scope(readonly=True) as session:
        figures = stats(session=session)
    help_texts = {
        "pending_events": "Accepted events not yet matched against the rules",
        "failed_actions": "Failed action runs (the dead-letter list)",
        "open_incidents": "Incidents opened by rules and not yet resolved",
    }
    for name, value in figures.items():
        family = GaugeMetricFamily(f"popcorn_events_{name}", help_texts[name])
        family.add_metric([], value)
        yield family


def stats(*, session: Session) -> dict[str, int]:
    pending = session.scalar(
        select(func.count()).select_from(EventRecord).where(EventRecord.status == "pending")
    )
    failed = session.scalar(
        select(func.count()).select_from(ActionRun).where(ActionRun.status == "failed")
    )
    open_incidents = session.scalar(
        select(func.count()).select_from(Incident).where(Incident.status == "open")
    )
    return {
        "pending_events": int(pending or 0),
        "failed_actions": int(failed or 0),
        "open_incidents": int(open_incidents or 0),
    }
