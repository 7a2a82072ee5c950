"""Domain events: recorded in the change's transaction, delivered at least once, in order.

A service calls `emit()` beside its change. The dispatcher (run by `popcorn
scheduler`) hands each event to every subscriber whose patterns match, in id
order, and advances that subscriber's cursor in the same transaction as the
subscriber's own writes. A crash of the dispatcher, a worker or Redis only
delays delivery: the cursor in the database says where to resume.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Index, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from popcorn.context import current_actor
from popcorn.db import Base, JSONType, UTCDateTime, session_scope, utcnow

log = logging.getLogger("popcorn.outbox")

MAX_ATTEMPTS = 8


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(120), index=True)
    object_type: Mapped[str] = mapped_column(String(80))
    object_id: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    actor: Mapped[str] = mapped_column(String(200), default="")
    request_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SubscriberCursor(Base):
    __tablename__ = "outbox_cursors"

    subscriber: Mapped[str] = mapped_column(String(120), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeadLetter(Base):
    """An event a subscriber failed MAX_ATTEMPTS times; kept for inspection and replay."""

    __tablename__ = "outbox_dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber: Mapped[str] = mapped_column(String(120), index=True)
    event_id: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True)
class DomainEvent:
    id: int
    type: str
    object_type: str
    object_id: str
    payload: dict[str, Any]
    actor: str
    request_id: str
    created_at: datetime

    @classmethod
    def of(cls, row: OutboxEvent) -> DomainEvent:
        return cls(
            id=row.id,
            type=row.type,
            object_type=row.object_type,
            object_id=row.object_id,
            payload=dict(row.payload or {}),
            actor=row.actor,
            request_id=row.request_id,
            created_at=row.created_at,
        )


Handler = Callable[[DomainEvent, Session], None]


@dataclass
class Subscriber:
    name: str
    patterns: tuple[str, ...]
    handler: Handler
    batch: int = 200

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, p) for p in self.patterns)


@dataclass
class Registry:
    subscribers: dict[str, Subscriber] = field(default_factory=dict)


REGISTRY = Registry()


def subscribe(name: str, *patterns: str) -> Callable[[Handler], Handler]:
    """Register a subscriber. Its handler gets each matching event and a session to write in."""

    def decorate(handler: Handler) -> Handler:
        REGISTRY.subscribers[name] = Subscriber(name, patterns or ("*",), handler)
        return handler

    return decorate


def unsubscribe(name: str) -> None:
    REGISTRY.subscribers.pop(name, None)


def emit(
    session: Session,
    event_type: str,
    object_type: str,
    object_id: Any,
    payload: dict[str, Any] | None = None,
) -> OutboxEvent:
    actor = current_actor()
    row = OutboxEvent(
        type=event_type,
        object_type=object_type,
        object_id=str(object_id),
        payload=payload or {},
        actor=actor.name,
        request_id=actor.request_id,
        created_at=utcnow(),
    )
    session.add(row)
    return row


def emit_many(session: Session, events: list[tuple[str, str, Any, dict[str, Any]]]) -> int:
    """Many events in one multi-row insert: (type, object_type, object_id, payload) each."""
    if not events:
        return 0
    from sqlalchemy import insert

    actor = current_actor()
    now = utcnow()
    session.execute(
        insert(OutboxEvent),
        [
            {
                "type": t,
                "object_type": ot,
                "object_id": str(oid),
                "payload": payload,
                "actor": actor.name,
                "request_id": actor.request_id,
                "created_at": now,
            }
            for t, ot, oid, payload in events
        ],
    )
    return len(events)


def _cursor(session: Session, name: str) -> SubscriberCursor:
    cursor = session.get(SubscriberCursor, name, with_for_update=True)
    if cursor is None:
        # A new subscriber starts at the current end: it receives what happens from now on.
        last = session.scalar(select(func.max(OutboxEvent.id))) or 0
        cursor = SubscriberCursor(subscriber=name, last_id=last)
        session.add(cursor)
        session.flush()
    return cursor


def _pending(session: Session, sub: Subscriber, after: int) -> list[OutboxEvent]:
    stmt = (
        select(OutboxEvent).where(OutboxEvent.id > after).order_by(OutboxEvent.id).limit(sub.batch)
    )
    return list(session.scalars(stmt))


def deliver(sub: Subscriber, *, url: str | None = None) -> int:
    """Deliver one batch to one subscriber; returns how many events it consumed."""
    now = utcnow()
    with session_scope(url, readonly=True) as session:
        # Idle polls stay reads: no write lock unless there is something to deliver.
        known = session.get(SubscriberCursor, sub.name)
        if known is not None:
            newest = session.scalar(select(func.max(OutboxEvent.id))) or 0
            if newest <= known.last_id:
                return 0
    with session_scope(url) as session:
        cursor = _cursor(session, sub.name)
        if cursor.retry_at is not None and cursor.retry_at > now:
            return 0
        events = _pending(session, sub, cursor.last_id)
        if not events:
            return 0
        start_id = cursor.last_id
    # Fast path: the whole batch in one transaction with the cursor move.
    try:
        with session_scope(url) as session:
            cursor = _cursor(session, sub.name)
            if cursor.last_id != start_id:
                return 0  # another dispatcher got here first
            for row in events:
                if sub.wants(row.type):
                    sub.handler(DomainEvent.of(row), session)
            cursor.last_id = events[-1].id
            cursor.attempts = 0
            cursor.retry_at = None
            cursor.last_error = ""
            cursor.updated_at = utcnow()
        return len(events)
    except Exception:
        log.info("batch delivery to %s failed; retrying one by one", sub.name)
    return _deliver_one_by_one(sub, events, url)


def _deliver_one_by_one(sub: Subscriber, events: list[OutboxEvent], url: str | None) -> int:
    done = 0
    for row in events:
        try:
            with session_scope(url) as session:
                cursor = _cursor(session, sub.name)
                if cursor.last_id >= row.id:
                    continue
                if sub.wants(row.type):
                    sub.handler(DomainEvent.of(row), session)
                cursor.last_id = row.id
                cursor.attempts = 0
                cursor.retry_at = None
                cursor.last_error = ""
            done += 1
        except Exception as exc:
            _record_failure(sub, row, exc, url)
            break
    return done


def _record_failure(sub: Subscriber, row: OutboxEvent, exc: Exception, url: str | None) -> None:
    log.warning("subscriber %s failed on event %s: %s", sub.name, row.id, exc)
    with session_scope(url) as session:
        cursor = _cursor(session, sub.name)
        cursor.attempts += 1
        cursor.last_error = f"event {row.id}: {type(exc).__name__}: {exc}"[:2000]
        if cursor.attempts >= MAX_ATTEMPTS:
            session.add(DeadLetter(subscriber=sub.name, event_id=row.id, error=cursor.last_error))
            cursor.last_id = row.id
            cursor.attempts = 0
            cursor.retry_at = None
        else:
            backoff = min(2 ** (cursor.attempts - 1), 300)
            cursor.retry_at = utcnow() + timedelta(seconds=backoff)


def dispatch_once(*, url: str | None = None) -> int:
    """One pass over every subscriber; returns the number of events consumed."""
    total = 0
    for sub in list(REGISTRY.subscribers.values()):
        while True:
            n = deliver(sub, url=url)
            total += n
            if n < sub.batch:
                break
    return total


def replay_dead_letter(*, session: Session, dead_letter_id: int) -> None:
    """Hand a dead-lettered event to its subscriber again, now."""
    dead = session.get(DeadLetter, dead_letter_id)
    if dead is None:
        from popcorn.errors import NotFound

        raise NotFound(f"no dead letter {dead_letter_id}")
    sub = REGISTRY.subscribers.get(dead.subscriber)
    row = session.get(OutboxEvent, dead.event_id)
    if sub is None or row is None:
        from popcorn.errors import Conflict

        raise Conflict("subscriber or event no longer exists")
    sub.handler(DomainEvent.of(row), session)
    session.delete(dead)


def run_dispatcher(stop: Callable[[], bool], *, interval: float = 0.1) -> None:
    """Loop until `stop()`; survives database hiccups by logging and waiting."""
    while not stop():
        try:
            if dispatch_once() == 0:
                time.sleep(interval)
        except Exception:
            log.exception("outbox dispatch failed; retrying")
            time.sleep(1.0)
