"""Events settings: a small key-value table, and the retention they control.

`get_setting`/`put_setting` are the one way the events modules keep state of
their own (retention, the rules stamp, drainer markers): an upsert, so
concurrent first writers never collide.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from popcorn import db, jobs
from popcorn.audit import record_change, recording_update
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput
from popcorn.events.actions import MAX_HOPS
from popcorn.events.models import ActionRun, EventRecord, IncidentEvent, MatchRecord, Setting

DEFAULT_RETENTION_DAYS = 14
RETENTION_SCHEDULE = "events.retention"


def get_setting(session: Session, name: str, default: Any) -> Any:
    return db.get_setting(session, Setting, name, default)


def put_setting(session: Session, name: str, value: Any) -> None:
    db.put_setting(session, Setting, name, value)


def get_settings_view(*, session: Session) -> dict[str, Any]:
    return {
        "retention_days": int(get_setting(session, "retention_days", DEFAULT_RETENTION_DAYS)),
        "max_hops": MAX_HOPS,
    }


def update_settings(*, session: Session, retention_days: int) -> dict[str, Any]:
    """Keep events for `retention_days`; older ones go at the next hourly retention run."""
    if not 1 <= retention_days <= 3650:
        raise InvalidInput("retention_days: must be a whole number from 1 to 3650")

    def view(_: object) -> dict[str, Any]:
        return get_settings_view(session=session)

    with recording_update(session, "events_settings", None, view, object_id="retention"):
        put_setting(session, "retention_days", retention_days)
    ensure_retention_schedule(session=session)
    return get_settings_view(session=session)


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
    days = int(get_setting(session, "retention_days", DEFAULT_RETENTION_DAYS))
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
