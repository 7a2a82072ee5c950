"""Events: durable ingest, search, versioned rules, processing, incidents and secrets.

Ingest stores every accepted event and records its processing job in the same
transaction (`popcorn.jobs.enqueue` on the "high" queue), unless a processing
job is already waiting for a worker: that one sweeps every pending event when
it starts. We chose a job over a dedicated outbox subscriber because the job
record is durable before the API answers, rq hands it to any number of workers
on any machine (the outbox dispatcher is one leased loop shared by every
domain, so a backlog there would be processed serially), and the core already
re-sends jobs Redis lost and retries jobs whose worker died. Processing is
idempotent: an event is matched only while it is "pending", in the transaction
that records its matches and action runs, so a job delivered twice does
nothing the second time.

Rules are YAML stored as versions; each worker keeps one compiled `RuleSet`
keyed by a stamp that every rule change replaces, so rules are compiled once
per process and recompiled only when the active versions change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets as pysecrets
import textwrap
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from redis.exceptions import RedisError
from sqlalchemy import Text, cast, delete, event, func, or_, select, tuple_, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change
from popcorn.config import get_settings
from popcorn.context import current_actor
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.events import actions
from popcorn.events.formats import Event, EventFormatError, parse_body, parse_payload
from popcorn.events.models import (
    ActionRun,
    EventRecord,
    Incident,
    IncidentEvent,
    MatchRecord,
    RuleRecord,
    RuleVersion,
    Secret,
    Setting,
)
from popcorn.events.rules import Rule, RuleSet, RuleSyntaxError, parse_rules
from popcorn.events.templating import TemplateError, event_context
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import DomainEvent

log = logging.getLogger("popcorn.events")

DEFAULT_RETENTION_DAYS = 14
RETENTION_SCHEDULE = "events.retention"
PROCESS_TASK = "events.process"
PROCESS_BATCH = 500
RULES_STAMP = "rules_stamp"
RATE_PREFIX = "popcorn:events:rate:"
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


# --------------------------------------------------------------------------- settings


def _setting(session: Session, name: str, default: Any) -> Any:
    row = session.get(Setting, name, populate_existing=True)
    return default if row is None or row.value is None else row.value


def _put_setting(session: Session, name: str, value: Any) -> None:
    """Upsert, so concurrent first writers never collide on the primary key."""
    now = utcnow()
    stmt = _dialect_insert(session, Setting).values(name=name, value=value, updated_at=now)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"], set_={"value": stmt.excluded.value, "updated_at": now}
        )
    )


def _dialect_insert(session: Session, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


def get_settings_view(*, session: Session) -> dict[str, Any]:
    return {
        "retention_days": int(_setting(session, "retention_days", DEFAULT_RETENTION_DAYS)),
        "max_hops": actions.MAX_HOPS,
    }


def update_settings(*, session: Session, retention_days: int) -> dict[str, Any]:
    """Keep events for `retention_days`; older ones go at the next hourly retention run."""
    if not 1 <= retention_days <= 3650:
        raise InvalidInput("retention_days: must be a whole number from 1 to 3650")
    before = get_settings_view(session=session)
    _put_setting(session, "retention_days", retention_days)
    after = {**before, "retention_days": retention_days}
    record_change(session, "update", "events_settings", "retention", before=before, after=after)
    ensure_retention_schedule(session=session)
    return after


def ensure_retention_schedule(*, session: Session) -> None:
    """The hourly retention job exists once anything is stored (created once, race-safe)."""
    if session.scalar(select(jobs.Schedule.id).where(jobs.Schedule.name == RETENTION_SCHEDULE)):
        return
    try:
        with session.begin_nested():
            jobs.create_schedule(
                session=session,
                name=RETENTION_SCHEDULE,
                task="events.retention",
                queue="low",
                interval_seconds=3600,
            )
    except (IntegrityError, Conflict):  # created meanwhile by a concurrent request
        pass


def apply_retention(
    *, session: Session, now: datetime | None = None, batch: int = 5000
) -> dict[str, Any]:
    """Delete events received before the retention period, with their matches and runs."""
    days = int(_setting(session, "retention_days", DEFAULT_RETENTION_DAYS))
    cutoff = (now or utcnow()) - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(
            session.scalars(
                select(EventRecord.id)
                .where(EventRecord.received_at < cutoff)
                .order_by(EventRecord.id)
                .limit(batch)
            )
        )
        if not ids:
            break
        for table in (IncidentEvent, ActionRun, MatchRecord):
            session.execute(delete(table).where(table.event_id.in_(ids)))
        session.execute(delete(EventRecord).where(EventRecord.id.in_(ids)))
        deleted += len(ids)
    if deleted:
        record_change(
            session,
            "retention",
            "events_settings",
            "retention",
            after={"deleted": deleted, "cutoff": cutoff.isoformat()},
        )
    return {"deleted": deleted, "retention_days": days, "cutoff": cutoff.isoformat()}


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
            _dialect_insert(session, EventRecord)
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
        schedule_processing(session, to_process, queue="default" if origin == "outbox" else "high")
    if inserted:
        ensure_retention_schedule(session=session)
    return result


def ingest_body(
    *, session: Session, body: bytes | str, content_type: str | None, origin: str = "api"
) -> IngestResult:
    """Parse a request body (CloudEvents single/batch or Alertmanager) and ingest it."""
    try:
        events = parse_body(body, content_type)
    except EventFormatError as exc:
        raise format_error(exc) from None
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
        raise format_error(exc) from None
    return ingest(session=session, events=events, origin="alertmanager")


def format_error(exc: EventFormatError) -> InvalidInput:
    return InvalidInput(str(exc), details={"path": exc.path, "reason": exc.reason})


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


def schedule_processing(session: Session, event_pks: Iterable[int], queue: str = "high") -> None:
    """Process these events after this transaction commits, in one job per batch.

    Pks gathered during a transaction (an API batch, or an outbox batch of
    domain events) become as few `events.process` jobs as possible, recorded
    just before commit so that they commit with the events. Events from
    outside (alerts) go to the "high" queue; Popcorn's own domain events to
    "default", so that they never delay an alert.
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
    """Is a processing job on this queue waiting for a worker (not yet started)?

    Such a job sweeps every pending event once it starts, so a transaction that
    commits while it waits needs no job of its own: under load there is at most
    one waiting job per queue instead of one per notification. The row locks
    order this check before the job's claim, so a job that has started (and
    may have swept already) is never relied on.
    """
    name = f"drainer:{queue}"
    session.execute(
        _dialect_insert(session, Setting)
        .values(name=name, value=None, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    row = session.get(Setting, name, with_for_update=True, populate_existing=True)
    if row is None or not isinstance(row.value, int):
        return False
    job = session.get(jobs.JobRecord, row.value, with_for_update=True)
    return job is not None and job.status == "pending" and job.task == PROCESS_TASK


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
    queue: str = "high",
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


# --------------------------------------------------------------------------- rule state


class RedisRateState:
    """Throttle and dedupe memory shared by every worker: `SET key owner NX PX`.

    The owner is the stored event being processed, so re-processing the same
    event after a failed attempt is not mistaken for a repeat.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def owner(self) -> str | None:
        return getattr(self._local, "owner", None)

    @owner.setter
    def owner(self, value: str | None) -> None:
        self._local.owner = value

    def seen(self, key: str, window_s: float, now: float) -> bool:
        if window_s <= 0:
            return False
        redis = jobs.get_redis()
        name = RATE_PREFIX + key
        owner = self.owner
        if redis.set(name, owner or "-", nx=True, px=max(1, int(window_s * 1000))):
            return False
        if owner is None:
            return True
        current = redis.get(name)
        if isinstance(current, bytes):
            current = current.decode()
        return current != owner


@dataclass
class CompiledRules:
    stamp: str
    ruleset: RuleSet
    versions: dict[str, int]
    broken: dict[str, str]


_cache: dict[str, CompiledRules] = {}
_cache_lock = threading.Lock()
_rate_state = RedisRateState()


def _stamp(session: Session) -> str:
    return str(_setting(session, RULES_STAMP, ""))


def _bump_stamp(session: Session) -> None:
    _put_setting(session, RULES_STAMP, uuid.uuid4().hex)


def active_rules(*, session: Session) -> CompiledRules:
    """The active rule versions compiled into a RuleSet, rebuilt only when the stamp moves."""
    url = str(session.get_bind().engine.url)
    stamp = _stamp(session)
    cached = _cache.get(url)
    if cached is not None and cached.stamp == stamp:
        return cached
    rows = session.execute(
        select(RuleRecord.name, RuleVersion.version, RuleVersion.source)
        .join(
            RuleVersion,
            (RuleVersion.rule_id == RuleRecord.id)
            & (RuleVersion.version == RuleRecord.active_version),
        )
        .order_by(RuleRecord.name)
    )
    rules: list[Rule] = []
    versions: dict[str, int] = {}
    broken: dict[str, str] = {}
    for name, version, source in rows:
        try:
            parsed = parse_rules(source, f"{name}@v{version}")
        except RuleSyntaxError as exc:  # stored by an older release; keep the rest running
            log.error("stored rule %s v%s no longer compiles: %s", name, version, exc)
            broken[name] = str(exc)
            continue
        rules.extend(parsed)
        versions[name] = version
    compiled = CompiledRules(stamp, RuleSet(rules, state=_rate_state), versions, broken)
    with _cache_lock:
        _cache[url] = compiled
    return compiled


# --------------------------------------------------------------------------- rules


@dataclass
class RuleSource:
    rule: Rule
    source: str
    file: str


def _rule_sources(text: str, file: str) -> list[RuleSource]:
    """Parse a YAML text and cut it into one standalone YAML text per rule."""
    try:
        rules = parse_rules(text, file)
    except RuleSyntaxError as exc:
        raise rule_error(exc) from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    nodes: list[yaml.Node] = []
    for document in yaml.compose_all(text, Loader=loader):
        if isinstance(document, yaml.SequenceNode):
            nodes.extend(document.value)
        elif isinstance(document, yaml.MappingNode):
            nodes.append(document)
    plain = [
        item
        for doc in yaml.safe_load_all(text)
        if doc is not None
        for item in (doc if isinstance(doc, list) else [doc])
    ]
    out: list[RuleSource] = []
    for rule, node, obj in zip(rules, nodes, plain, strict=True):
        start, end = node.start_mark, node.end_mark
        piece = textwrap.dedent(" " * start.column + text[start.index : end.index]).strip()
        if not _standalone(piece, rule.name):
            piece = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).strip()
            if not _standalone(piece, rule.name):
                raise InvalidInput(
                    f"{file}: rule {rule.name!r} cannot be stored on its own "
                    "(does it use an alias defined elsewhere in the file?)",
                    details={"file": file, "line": rule.line, "rule": rule.name},
                )
        where = f"{file}:{rule.line}" if rule.line is not None else file
        out.append(RuleSource(rule, piece + "\n", where))
    return out


def _standalone(text: str, name: str) -> bool:
    try:
        parsed = parse_rules(text, name)
    except (RuleSyntaxError, yaml.YAMLError):
        return False
    return len(parsed) == 1 and parsed[0].name == name


def rule_error(exc: RuleSyntaxError) -> InvalidInput:
    return InvalidInput(
        str(exc),
        details={"file": exc.file, "line": exc.line, "reason": exc.reason, "path": exc.path},
    )


@dataclass
class LoadResult:
    rules: list[dict[str, Any]] = field(default_factory=list)

    def count(self, change: str) -> int:
        return sum(1 for r in self.rules if r["change"] == change)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": self.rules,
            **{c: self.count(c) for c in ("created", "updated", "unchanged", "deactivated")},
        }


def read_rule_files(path: str | Path) -> list[tuple[str, str]]:
    """(file name, text) for a YAML file or every *.yaml/*.yml under a directory."""
    root = Path(path)
    if not root.exists():
        raise InvalidInput(f"{root}: no such file or directory", details={"path": str(root)})
    files = (
        sorted(
            p
            for p in root.rglob("*")
            if p.suffix in (".yaml", ".yml")
            and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
        if root.is_dir()
        else [root]
    )
    out = []
    for file in files:
        try:
            out.append((str(file), file.read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{file}: not UTF-8 text", details={"file": str(file), "reason": exc.reason}
            ) from None
    return out


def load_rules(
    *, session: Session, files: Sequence[tuple[str, str]], prune: bool = False
) -> LoadResult:
    """Store every rule of these texts: all or nothing.

    A rule whose text changed gets a new version, which becomes active; an
    unchanged one keeps its version. If any rule does not parse, nothing
    changes (the error names the file, line and reason). With `prune`, active
    rules that none of the texts define are deactivated.
    """
    sources: list[RuleSource] = []
    for file, text in files:
        sources.extend(_rule_sources(text, file))
    seen: dict[str, str] = {}
    for src in sources:
        if src.rule.name in seen:
            raise InvalidInput(
                f"{src.file}: duplicate rule name {src.rule.name!r} (first defined at "
                f"{seen[src.rule.name]})",
                details={"file": src.file, "rule": src.rule.name},
            )
        seen[src.rule.name] = src.file
    result = LoadResult()
    now = utcnow()
    actor = current_actor().name
    for src in sources:
        checksum = hashlib.sha256(src.source.encode()).hexdigest()
        record = session.scalar(
            select(RuleRecord).where(RuleRecord.name == src.rule.name).with_for_update()
        )
        active: RuleVersion | None = None
        if record is None:
            record = RuleRecord(name=src.rule.name, latest_version=0, created_at=now)
            session.add(record)
            session.flush()
        elif record.active_version is not None:
            active = session.scalar(
                select(RuleVersion).where(
                    RuleVersion.rule_id == record.id, RuleVersion.version == record.active_version
                )
            )
        if active is not None and active.checksum == checksum:
            result.rules.append(
                {"name": record.name, "version": active.version, "change": "unchanged"}
            )
            continue
        change = "created" if record.latest_version == 0 else "updated"
        version = record.latest_version + 1
        session.add(
            RuleVersion(
                rule_id=record.id,
                version=version,
                source=src.source,
                checksum=checksum,
                file=src.file[:1000],
                mode=src.rule.mode,
                created_at=now,
                created_by=actor,
            )
        )
        before = {"active_version": record.active_version}
        record.latest_version = version
        record.active_version = version
        record.updated_at = now
        after = {"active_version": version, "checksum": checksum, "file": src.file}
        record_change(
            session, "create" if change == "created" else "update", "event_rule", record.name,
            before=None if change == "created" else before, after=after,
        )  # fmt: skip
        _emit(session, f"events.rule.{change}", "event_rule", record.name, {"version": version})
        result.rules.append({"name": record.name, "version": version, "change": change})
    if prune:
        for record in session.scalars(
            select(RuleRecord).where(
                RuleRecord.active_version.is_not(None), RuleRecord.name.not_in(list(seen))
            )
        ):
            result.rules.append(_deactivate(session, record))
    if any(r["change"] != "unchanged" for r in result.rules):
        _bump_stamp(session)
    return result


def _emit(
    session: Session, event_type: str, object_type: str, object_id: Any, payload: dict[str, Any]
) -> None:
    from popcorn import outbox

    outbox.emit(session, event_type, object_type, object_id, payload)


def _deactivate(session: Session, record: RuleRecord) -> dict[str, Any]:
    before = {"active_version": record.active_version}
    record.active_version = None
    record.updated_at = utcnow()
    record_change(
        session, "deactivate", "event_rule", record.name, before=before,
        after={"active_version": None},
    )  # fmt: skip
    _emit(session, "events.rule.deactivated", "event_rule", record.name, before)
    return {"name": record.name, "version": before["active_version"], "change": "deactivated"}


def get_rule_record(*, session: Session, name: str) -> RuleRecord:
    record = session.scalar(select(RuleRecord).where(RuleRecord.name == name))
    if record is None:
        raise NotFound(f"no rule {name!r}", details={"name": name})
    return record


def deactivate_rule(*, session: Session, name: str) -> dict[str, Any]:
    """Stop using a rule (its versions stay; activate one to bring it back)."""
    record = get_rule_record(session=session, name=name)
    if record.active_version is None:
        raise Conflict(f"rule {name!r} is not active", details={"name": name})
    out = _deactivate(session, record)
    _bump_stamp(session)
    return out


def activate_rule_version(*, session: Session, name: str, version: int) -> dict[str, Any]:
    """Make a stored version the active one (a rollback, or re-enabling a rule)."""
    record = get_rule_record(session=session, name=name)
    row = session.scalar(
        select(RuleVersion).where(RuleVersion.rule_id == record.id, RuleVersion.version == version)
    )
    if row is None:
        raise NotFound(
            f"rule {name!r} has no version {version}", details={"name": name, "version": version}
        )
    try:
        parse_rules(row.source, f"{name}@v{version}")
    except RuleSyntaxError as exc:
        raise rule_error(exc) from None
    before = {"active_version": record.active_version}
    record.active_version = version
    record.updated_at = utcnow()
    record_change(
        session, "activate", "event_rule", name, before=before, after={"active_version": version}
    )
    _emit(session, "events.rule.activated", "event_rule", name, {"version": version})
    _bump_stamp(session)
    return {"name": name, "version": version, "change": "activated"}


def describe_rule(rule: Rule | None) -> dict[str, Any]:
    if rule is None:
        return {}
    return {
        "events": list(rule.events),
        "mode": rule.mode,
        "priority": rule.priority,
        "stop": rule.stop,
        "description": rule.description,
        "actions": [a.type for a in rule.actions],
        "throttle": rule.throttle.seconds if rule.throttle else None,
        "dedupe": rule.dedupe.seconds if rule.dedupe else None,
    }


def list_rules(*, session: Session, include_inactive: bool = False) -> list[dict[str, Any]]:
    compiled = active_rules(session=session)
    stmt = select(RuleRecord).order_by(RuleRecord.name)
    if not include_inactive:
        stmt = stmt.where(RuleRecord.active_version.is_not(None))
    out = []
    for record in session.scalars(stmt):
        out.append(
            {
                "name": record.name,
                "active_version": record.active_version,
                "latest_version": record.latest_version,
                "updated_at": record.updated_at,
                "error": compiled.broken.get(record.name, ""),
                **describe_rule(
                    compiled.ruleset.get(record.name) if record.active_version else None
                ),
            }
        )
    return out


def show_rule(*, session: Session, name: str) -> dict[str, Any]:
    record = get_rule_record(session=session, name=name)
    versions = list(
        session.scalars(
            select(RuleVersion)
            .where(RuleVersion.rule_id == record.id)
            .order_by(RuleVersion.version.desc())
        )
    )
    active = next((v for v in versions if v.version == record.active_version), None)
    rule = None
    if active is not None:
        rule = active_rules(session=session).ruleset.get(name)
    return {
        "name": record.name,
        "active_version": record.active_version,
        "latest_version": record.latest_version,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "source": active.source if active else "",
        "file": active.file if active else "",
        **describe_rule(rule),
        "versions": [
            {
                "version": v.version,
                "checksum": v.checksum,
                "file": v.file,
                "mode": v.mode,
                "created_at": v.created_at,
                "created_by": v.created_by,
                "active": v.version == record.active_version,
            }
            for v in versions
        ],
    }


def get_rule_version(*, session: Session, name: str, version: int) -> RuleVersion:
    record = get_rule_record(session=session, name=name)
    row = session.scalar(
        select(RuleVersion).where(RuleVersion.rule_id == record.id, RuleVersion.version == version)
    )
    if row is None:
        raise NotFound(f"rule {name!r} has no version {version}")
    return row


def events_from_sample(obj: Any) -> list[Event]:
    """Sample events for `rules test`: CloudEvents, Alertmanager, or the stored-event shape."""
    try:
        if isinstance(obj, dict) and "specversion" not in obj and "alerts" not in obj:
            known = {k: v for k, v in obj.items() if k in Event.__dataclass_fields__}
            known.pop("_flat", None)
            return [Event.from_dict(known)]
        return parse_payload(obj)
    except EventFormatError as exc:
        raise format_error(exc) from None


def explain(
    *, session: Session, events: Sequence[Event], rules_text: str | None = None
) -> list[dict[str, Any]]:
    """For each event: every rule, whether it would match, why, and its rendered actions."""
    if rules_text is not None:
        try:
            ruleset = RuleSet(parse_rules(rules_text, "<test>"))
        except RuleSyntaxError as exc:
            raise rule_error(exc) from None
    else:
        ruleset = active_rules(session=session).ruleset
    out = []
    for ev in events:
        results = []
        for exp in ruleset.explain(ev):
            item: dict[str, Any] = {
                "rule": exp.rule.name,
                "matched": exp.matched,
                "mode": exp.rule.mode,
                "reason": exp.reason,
                "lines": exp.lines(),
            }
            if exp.matched:
                item["actions"] = _preview(exp.rule, ev)
            results.append(item)
        out.append({"event": ev.to_dict(), "rules": results})
    return out


def _context(rule: Rule, ev: Event) -> dict[str, Any]:
    context = event_context(ev)
    context["rule"] = {"name": rule.name, "description": rule.description}
    return context


def _preview(rule: Rule, ev: Event) -> list[dict[str, Any]]:
    context = _context(rule, ev)
    out = []
    for action in rule.actions:
        try:
            out.append({"type": action.type, "params": action.params.render(context)})
        except TemplateError as exc:
            out.append({"type": action.type, "error": str(exc)})
    return out


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
    _rate_state.owner = str(row.id)
    try:
        matches = compiled.ruleset.match(ev, now)
    finally:
        _rate_state.owner = None
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
        context = _context(rule, ev)
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


# --------------------------------------------------------------------------- queries


def get_event(*, session: Session, ref: str | int) -> EventRecord:
    """By Popcorn id (digits) or by the sender's event id (when only one source used it)."""
    text_ref = str(ref)
    if text_ref.isdigit():
        row = session.get(EventRecord, int(text_ref))
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


def _event_query(session: Session, params: ListParams) -> Any:
    filters = dict(params.filters)
    label_values = filters.pop("label", [])
    stmt = select(EventRecord).where(*filter_clauses(filters, {**EVENT_FILTERS}))
    postgres = session.get_bind().dialect.name == "postgresql"
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
    incident = session.get(Incident, incident_id, with_for_update=True)
    if incident is None:
        raise NotFound(f"no incident {incident_id}", details={"id": incident_id})
    if incident.status != "open":
        raise Conflict(f"incident {incident_id} is already {incident.status}")
    actions.resolve(session, incident)
    return incident


# --------------------------------------------------------------------------- secrets


def _keystore() -> Any:
    from popcorn.sealing import KeyStore

    return KeyStore(get_settings().effective_secret_key, context="popcorn/events/webhook-secret")


def set_secret(*, session: Session, name: str, value: str | None = None) -> str:
    """Store a webhook signing secret (generated if not given); returns the secret."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name):
        raise InvalidInput("name: letters, digits, _ . - (at most 100)", details={"name": name})
    secret = value or pysecrets.token_urlsafe(32)
    sealed = _keystore().encrypt(secret, associated_data=name.encode())
    row = session.scalar(select(Secret).where(Secret.name == name))
    if row is None:
        row = Secret(name=name, sealed=sealed, created_at=utcnow(), updated_at=utcnow())
        session.add(row)
        session.flush()
        record_change(session, "create", "event_secret", name, after={"name": name})
    else:
        row.sealed = sealed
        row.updated_at = utcnow()
        record_change(session, "rotate", "event_secret", name, after={"name": name})
    return secret


def secret_value(*, session: Session, name: str) -> str | None:
    row = session.scalar(select(Secret).where(Secret.name == name))
    if row is None:
        return None
    text: str = _keystore().decrypt_text(row.sealed, associated_data=name.encode())
    return text


def list_secrets(*, session: Session) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "created_at": s.created_at, "updated_at": s.updated_at}
        for s in session.scalars(select(Secret).order_by(Secret.name))
    ]


def delete_secret(*, session: Session, name: str) -> None:
    row = session.scalar(select(Secret).where(Secret.name == name))
    if row is None:
        raise NotFound(f"no secret {name!r}", details={"name": name})
    session.delete(row)
    record_change(session, "delete", "event_secret", name, before={"name": name})


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
