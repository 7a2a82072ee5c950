"""Events: durable ingest, the processing jobs, and matching stored events against rules.

Ingest stores every accepted event and records its processing job in the same
transaction (`popcorn.jobs.enqueue`), unless a processing job is already
waiting for a worker: that one sweeps every pending event when it starts. We
chose a job over a dedicated outbox subscriber because the job record is
durable before the API answers, rq hands it to any number of workers on any
machine, and the core already re-sends jobs Redis lost and retries jobs whose
worker died. Processing is idempotent: an event is matched only while it is
"pending", in the transaction that records its matches and action runs, so a
job delivered twice does nothing the second time.

The rest of the domain sits beside this module: `rulebook` (stored rules),
`queries` (reading what happened), `settings` (retention) and
`webhook_secrets`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, select, tuple_
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.context import current_actor
from popcorn.db import dialect_insert, session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput
from popcorn.events import actions
from popcorn.events.formats import Event, EventFormatError, parse_body
from popcorn.events.models import ActionRun, EventRecord, MatchRecord, Setting
from popcorn.events.rulebook import CompiledRules, active_rules, rate_state, rule_context
from popcorn.events.settings import ensure_retention_schedule
from popcorn.events.templating import TemplateError
from popcorn.outbox import DomainEvent

log = logging.getLogger("popcorn.events")

PROCESS_TASK = "events.process"
SWEEP_TASK = "events.sweep"
SWEEP_SCHEDULE = "events.sweep"
PROCESS_BATCH = 500
ALERTS_QUEUE = "alerts"
# Events from outside (alerts): processed on the queue reserved for them.
EXTERNAL_ORIGINS = frozenset({"api", "alertmanager", "cli"})
# A drainer still waiting after this long no longer stands for the backlog, and an event
# still pending after this long is picked up by the sweep: the pipeline heals itself.
STALE_SECONDS = 45.0
SWEEP_INTERVAL_SECONDS = 30


# --------------------------------------------------------------------------- ingest


@dataclass
class IngestResult:
    """What happened to each event of one delivery, in order."""

    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(1 for i in self.items if i["status"] == "accepted")

    @property
    def duplicates(self) -> int:
        return sum(1 for i in self.items if i["status"] == "duplicate")

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "events": self.items}


def ingest(
    *,
    session: Session,
    events: Sequence[Event],
    origin: str = "api",
    hops: int = 0,
) -> IngestResult:
    """Store events (duplicates of stored ones are reported, not stored) and schedule them.

    One INSERT … ON CONFLICT DO NOTHING makes concurrent re-deliveries (two
    Alertmanager replicas, say) safe on PostgreSQL as well as SQLite. An event
    that no active rule can match (by type and indexed equality) is stored as
    processed at once: most domain events cost no job at all.
    """
    result = IngestResult()
    if not events:
        return result
    now = utcnow()
    actor = current_actor().name
    ruleset = active_rules(session=session).ruleset
    rows: list[dict[str, Any]] = []
    first: dict[tuple[str, str], int] = {}
    for ev in events:
        key = (ev.source, ev.id)
        if len(ev.id) > 200 or len(ev.source) > 500 or len(ev.type) > 200:
            field_name = "id" if len(ev.id) > 200 else "source" if len(ev.source) > 500 else "type"
            raise InvalidInput(
                f"{field_name}: too long", details={"path": field_name, "event_id": ev.id[:200]}
            )
        if key in first:
            continue
        first[key] = len(rows)
        settled = not ruleset.candidates(ev)  # no rule can match: nothing left to do
        rows.append(
            {
                "event_id": ev.id,
                "source": ev.source,
                "type": ev.type,
                "subject": ev.subject[:500] if ev.subject else ev.subject,
                "time": ev.time,
                "received_at": now,
                "labels": ev.labels,
                "data": ev.data,
                "datacontenttype": ev.datacontenttype,
                "dataschema": ev.dataschema,
                "origin": origin,
                "hops": hops,
                "status": "processed" if settled else "pending",
                "match_count": 0,
                "processed_at": now if settled else None,
                "error": "",
                "received_by": actor,
            }
        )
    inserted: dict[tuple[str, str], int] = {}
    to_process: list[int] = []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        stmt = (
            dialect_insert(session, EventRecord)
            .values(chunk)
            .on_conflict_do_nothing(index_elements=["source", "event_id"])
            .returning(EventRecord.id, EventRecord.source, EventRecord.event_id, EventRecord.status)
        )
        for pk, source, event_id, status in session.execute(stmt):
            inserted[(source, event_id)] = pk
            if status == "pending":
                to_process.append(pk)
    missing = [k for k in first if k not in inserted]
    existing: dict[tuple[str, str], int] = {}
    for start in range(0, len(missing), 500):
        part = missing[start : start + 500]
        found = session.execute(
            select(EventRecord.id, EventRecord.source, EventRecord.event_id).where(
                tuple_(EventRecord.source, EventRecord.event_id).in_(part)
            )
        )
        existing.update({(s, e): pk for pk, s, e in found})
    for ev in events:
        key = (ev.source, ev.id)
        if key in inserted and first.get(key) is not None:
            result.items.append(
                {
                    "id": inserted[key],
                    "event_id": ev.id,
                    "source": ev.source,
                    "type": ev.type,
                    "status": "accepted",
                }
            )
            first.pop(key)
        else:
            pk = inserted.get(key) or existing.get(key)
            result.items.append(
                {
                    "id": pk,
                    "event_id": ev.id,
                    "source": ev.source,
                    "type": ev.type,
                    "status": "duplicate",
                }
            )
    if to_process:
        queue = ALERTS_QUEUE if origin in EXTERNAL_ORIGINS else "default"
        schedule_processing(session, to_process, queue=queue)
    if inserted:
        ensure_retention_schedule(session=session)
        ensure_sweep_schedule(session=session)
    return result


def ingest_body(
    *, session: Session, body: bytes | str, content_type: str | None, origin: str = "api"
) -> IngestResult:
    """Parse a request body (CloudEvents single/batch or Alertmanager) and ingest it."""
    try:
        events = parse_body(body, content_type)
    except EventFormatError as exc:
        raise exc.as_invalid_input() from None
    return ingest(session=session, events=events, origin=origin)


def ingest_alertmanager(*, session: Session, body: bytes | str) -> IngestResult:
    """An Alertmanager webhook (version 4), whatever content type the sender set."""
    from popcorn.events.formats import parse_alertmanager

    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(
            f"body: not valid JSON: {exc}", details={"path": "", "reason": "not valid JSON"}
        ) from None
    try:
        events = parse_alertmanager(obj)
    except EventFormatError as exc:
        raise exc.as_invalid_input() from None
    return ingest(session=session, events=events, origin="alertmanager")


def domain_event_to_event(domain_event: DomainEvent) -> tuple[Event, int]:
    """A core domain event as an Event (and the hop count it carries, for events.* ones)."""
    labels = {
        "object_type": domain_event.object_type,
        "object_id": domain_event.object_id,
    }
    if domain_event.actor:
        labels["actor"] = domain_event.actor
    hops = 0
    if domain_event.type.startswith("events."):
        raw = domain_event.payload.get("hops")
        hops = raw if isinstance(raw, int) and not isinstance(raw, bool) else 0
    ev = Event(
        id=f"outbox-{domain_event.id}",
        type=domain_event.type,
        source=f"popcorn/{domain_event.object_type}",
        subject=domain_event.object_id or None,
        time=domain_event.created_at,
        data=dict(domain_event.payload),
        labels=labels,
        datacontenttype="application/json",
    )
    return ev, hops


def ingest_domain_event(*, session: Session, domain_event: DomainEvent) -> None:
    ev, hops = domain_event_to_event(domain_event)
    ingest(session=session, events=[ev], origin="outbox", hops=hops)


# --------------------------------------------------------------------------- scheduling

_PENDING_KEY = "popcorn_events_to_process"


def schedule_processing(
    session: Session, event_pks: Iterable[int], queue: str = ALERTS_QUEUE
) -> None:
    """Process these events after this transaction commits, in one job per batch.

    Pks gathered during a transaction (an API batch, or an outbox batch of
    domain events) become as few `events.process` jobs as possible, recorded
    just before commit so that they commit with the events. Events from
    outside (alerts) go to the "alerts" queue, which only alert processing
    uses, so long user jobs never delay them; Popcorn's own domain events and
    emitted events go to "default".
    """
    pending: dict[str, list[int]] | None = session.info.get(_PENDING_KEY)
    if pending is None:
        pending = session.info[_PENDING_KEY] = {}
        if not event.contains(session, "before_commit", _enqueue_pending):
            event.listen(session, "before_commit", _enqueue_pending)
    pending.setdefault(queue, []).extend(event_pks)


def _enqueue_pending(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint ending: the transaction goes on
        return
    pending: dict[str, list[int]] = session.info.pop(_PENDING_KEY, None) or {}
    for queue, pks in pending.items():
        if pks and not _drainer_queued(session, queue):
            _enqueue_drainer(session, queue, pks)


def _drainer_queued(session: Session, queue: str) -> bool:
    """Is a processing job on this queue waiting for a worker (not yet started), recently?

    Such a job sweeps every pending event once it starts, so a transaction that
    commits while it waits needs no job of its own: under load there is at most
    one waiting job per queue instead of one per notification. The row locks
    order this check before the job's claim, so a job that has started (and
    may have swept already) is never relied on. A job still waiting after
    `STALE_SECONDS` is not relied on either: its worker may have died between
    taking it from Redis and marking it running, and then it never starts.
    """
    name = f"drainer:{queue}"
    session.execute(
        dialect_insert(session, Setting)
        .values(name=name, value=None, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = session.get(Setting, name, with_for_update=True, populate_existing=True)
    if row is None or not isinstance(row.value, int):
        return False
    job = session.get(jobs.JobRecord, row.value, with_for_update=True)
    if job is None or job.status != "pending" or job.task != PROCESS_TASK:
        return False
    return utcnow() - job.created_at < timedelta(seconds=STALE_SECONDS)


def _enqueue_drainer(session: Session, queue: str, pks: Sequence[int]) -> None:
    record = jobs.enqueue(
        session,
        PROCESS_TASK,
        arguments={"event_ids": list(pks[:PROCESS_BATCH]), "queue": queue},
        queue=queue,
    )
    row = session.get(Setting, f"drainer:{queue}", with_for_update=True)
    if row is not None:
        row.value = record.id
        row.updated_at = utcnow()


def drain(
    event_ids: Sequence[int],
    *,
    queue: str = ALERTS_QUEUE,
    chunk: int = 50,
    budget_seconds: float = 10.0,
) -> dict[str, int]:
    """Process these events, then every other pending one, oldest first.

    The body of the `events.process` job. Under a backlog one job drains it in
    transactions of `chunk` events (short, so ingest is never locked out for
    long); throughput is bound by matching, not by one job (one fork) per
    notification. Past the time budget it hands over to a fresh job.
    """
    started = time.monotonic()
    totals = {"processed": 0, "matches": 0, "actions": 0, "failed": 0, "swept": 0}

    def run(ids: Sequence[int]) -> int:
        with session_scope() as session:
            result = process_events(session=session, event_ids=ids)
        for key, value in result.items():
            totals[key] += value
        return result["processed"] + result["failed"]

    own = list(event_ids)
    for start in range(0, len(own), chunk):
        run(own[start : start + chunk])
    while True:
        with session_scope(readonly=True) as session:
            ids = list(
                session.scalars(
                    select(EventRecord.id)
                    .where(EventRecord.status == "pending")
                    .order_by(EventRecord.id)
                    .limit(chunk)
                )
            )
        if not ids:
            break
        if totals["swept"] and time.monotonic() - started > budget_seconds:
            with session_scope() as session:
                if not _drainer_queued(session, queue):
                    _enqueue_drainer(session, queue, [])
            break
        totals["swept"] += len(ids)
        if run(ids) == 0:  # another worker holds them (PostgreSQL skips locked rows)
            break
    return totals


def ensure_sweep_schedule(*, session: Session) -> None:
    """The periodic sweep exists once anything is stored (created once, race-safe)."""
    if session.scalar(select(jobs.Schedule.id).where(jobs.Schedule.name == SWEEP_SCHEDULE)):
        return
    try:
        with session.begin_nested():
            jobs.create_schedule(
                session=session,
                name=SWEEP_SCHEDULE,
                task=SWEEP_TASK,
                queue=ALERTS_QUEUE,
                interval_seconds=SWEEP_INTERVAL_SECONDS,
            )
    except (IntegrityError, Conflict):  # created meanwhile by a concurrent request
        pass


def sweep(*, older_than: float = STALE_SECONDS) -> dict[str, int]:
    """Process events left pending longer than `older_than` seconds (the scheduled sweep).

    Ingest relies on one waiting drainer job per queue; if that job is lost for
    good, this sweep (a schedule, so a new job every interval whatever became of
    the last one) still processes what was accepted, within a bounded time.
    """
    cutoff = utcnow() - timedelta(seconds=older_than)
    with session_scope(readonly=True) as session:
        stale = session.scalar(
            select(EventRecord.id)
            .where(EventRecord.status == "pending", EventRecord.received_at < cutoff)
            .limit(1)
        )
    if stale is None:
        return {"processed": 0, "matches": 0, "actions": 0, "failed": 0, "swept": 0}
    log.warning("events pending for more than %.0fs: sweeping them", older_than)
    return drain([], queue=ALERTS_QUEUE)


# --------------------------------------------------------------------------- processing


def to_event(row: EventRecord) -> Event:
    return Event(
        id=row.event_id,
        type=row.type,
        source=row.source,
        subject=row.subject,
        time=row.time,
        data=dict(row.data or {}),
        labels=dict(row.labels or {}),
        datacontenttype=row.datacontenttype,
        dataschema=row.dataschema,
    )


def process_events(
    *, session: Session, event_ids: Sequence[int], now: datetime | None = None
) -> dict[str, Any]:
    """Match pending events against the active rules and run the actions of enforcing matches."""
    from redis.exceptions import RedisError  # here: an events list needs no Redis client

    compiled = active_rules(session=session)
    stmt = (
        select(EventRecord)
        .where(EventRecord.id.in_(list(event_ids)), EventRecord.status == "pending")
        .order_by(EventRecord.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    summary = {"processed": 0, "matches": 0, "actions": 0, "failed": 0}
    for row in list(session.scalars(stmt)):
        pk = row.id
        try:
            with session.begin_nested():
                matched, acted = _process_one(session, row, compiled, now or utcnow())
            summary["matches"] += matched
            summary["actions"] += acted
            summary["processed"] += 1
        except (RedisError, DBAPIError):
            raise  # Redis or the database is away: the job fails and retries with backoff
        except Exception as exc:
            log.exception("processing event %s failed", pk)
            failed = session.get(EventRecord, pk)
            if failed is not None:
                failed.status = "failed"
                failed.error = f"{type(exc).__name__}: {exc}"[:4000]
                failed.processed_at = utcnow()
            summary["failed"] += 1
    return summary


def _process_one(
    session: Session, row: EventRecord, compiled: CompiledRules, now: datetime
) -> tuple[int, int]:
    ev = to_event(row)
    rate_state.owner = str(row.id)
    try:
        matches = compiled.ruleset.match(ev, now)
    finally:
        rate_state.owner = None
    acted = 0
    for match in matches:
        rule = match.rule
        record = MatchRecord(
            event_id=row.id,
            rule_name=rule.name,
            rule_version=compiled.versions.get(rule.name, 0),
            mode=rule.mode,
            acted=match.act,
            suppressed=match.suppressed,
            error=match.error or "",
            created_at=now,
        )
        session.add(record)
        session.flush()
        if match.suppressed is not None or match.error is not None:
            continue
        context = rule_context(rule, ev)
        for position, action in enumerate(rule.actions):
            run = ActionRun(
                match_id=record.id,
                event_id=row.id,
                rule_name=rule.name,
                position=position,
                type=action.type,
                status="pending",
                attempts=0,
                error="",
                replays=0,
                created_at=now,
                updated_at=now,
            )
            session.add(run)
            try:
                run.params = action.params.render(context)
            except TemplateError as exc:
                run.status = "failed"
                run.error = f"template: {exc}"
                continue
            if rule.mode != "enforce":
                run.status = "skipped"
                run.error = f"{rule.mode} mode: not run"
                continue
            session.flush()
            actions.perform(session, run, event=row)
            acted += 1
    row.status = "processed"
    row.match_count = len(matches)
    row.processed_at = utcnow()
    return len(matches), acted
