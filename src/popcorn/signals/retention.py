"""Retention: how long samples are kept, the hourly job that drops older days, compaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change, recording_update
from popcorn.db import get_setting, put_setting, session_scope, utcnow
from popcorn.errors import InvalidInput
from popcorn.signals import store
from popcorn.signals.catalog import from_ms
from popcorn.signals.models import Series, Setting

DEFAULT_RETENTION_DAYS = 30
RETENTION_SCHEDULE = "signals.retention"
COMPACT_SCHEDULE = "signals.compact"
COMPACT_EVERY_SECONDS = 120  # a steady sender's small objects are merged within minutes


def get_settings_view(*, session: Session) -> dict[str, Any]:
    return {
        "retention_days": int(
            get_setting(session, Setting, "retention_days", DEFAULT_RETENTION_DAYS)
        )
    }


def set_retention(*, session: Session, days: int) -> dict[str, Any]:
    """Keep samples for `days` days; older day partitions go at the next retention run."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        raise InvalidInput("retention_days: must be a whole number from 1 to 3650")

    def view(_: object) -> dict[str, Any]:
        return get_settings_view(session=session)

    with recording_update(session, "signals_settings", None, view, object_id="retention"):
        put_setting(session, Setting, "retention_days", days)
    ensure_retention_schedule(session=session)
    return get_settings_view(session=session)


def run_retention_now(*, session: Session) -> jobs.JobRecord:
    """Enqueue the retention job at once (an admin asked); returns its record."""
    return jobs.enqueue(session, "signals.retention")


def ensure_retention_schedule(*, session: Session) -> None:
    """The hourly `signals.retention` job and the two-minutely `signals.compact` one exist
    once anything is stored or retention is set. The first writers of an installation make
    them at once: `ensure_schedule` lets the later one keep the earlier one's."""
    wanted = {RETENTION_SCHEDULE: 3600, COMPACT_SCHEDULE: COMPACT_EVERY_SECONDS}
    present = set(session.scalars(select(jobs.Schedule.name).where(jobs.Schedule.name.in_(wanted))))
    for name, seconds in wanted.items():  # one order for every writer
        if name not in present:
            jobs.ensure_schedule(
                session=session, name=name, task=name, interval_seconds=seconds, queue="low"
            )


def run_retention() -> dict[str, Any]:
    """Retention in its own transaction, then compaction (which takes its own, per day)."""
    with session_scope() as session:
        summary = apply_retention(session=session)
        ensure_retention_schedule(session=session)  # an installation from before compaction
    compacted = compact()
    return {**summary, "compacted_days": compacted["days"]}


def apply_retention(*, session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Delete days older than the retention and fix the series they touched.

    Series left without samples are removed; the others get their first time and sample
    count from what remains. The objects are deleted once `session` commits.
    """
    days = int(get_setting(session, Setting, "retention_days", DEFAULT_RETENTION_DAYS))
    cutoff = store.cutoff_day(days, now)
    dropped, removed = store.drop_days_before(session, cutoff)
    cutoff_dt = datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=UTC)
    deleted_series = 0
    if removed:
        touched = list(
            session.scalars(
                select(Series)
                .where(Series.fingerprint.in_(list(removed)))
                .order_by(Series.fingerprint)  # ingest's order: neither waits in a cycle
                .with_for_update()
            )
        )
        gone = [s for s in touched if s.last_at < cutoff_dt]
        keep = [s for s in touched if s.last_at >= cutoff_dt]
        if gone:
            session.execute(delete(Series).where(Series.id.in_([s.id for s in gone])))
            deleted_series = len(gone)
        firsts = store.first_timestamps(session, (s.fingerprint for s in keep))
        for s in keep:
            s.sample_count = max(0, s.sample_count - removed.get(s.fingerprint, 0))
            if s.fingerprint in firsts:
                s.first_at = from_ms(firsts[s.fingerprint])
            s.updated_at = utcnow()
    summary = {
        "retention_days": days,
        "cutoff": cutoff.isoformat(),
        "dropped_days": [d.isoformat() for d in dropped],
        "samples_removed": int(sum(removed.values())),
        "series_removed": deleted_series,
    }
    if dropped:
        record_change(session, "delete", "signals_partitions", cutoff.isoformat(), after=summary)
    return summary


def compact(
    *,
    grace_seconds: float = store.COMPACT_GRACE_SECONDS,
    orphan_grace_seconds: float = store.ORPHAN_GRACE_SECONDS,
    sweep: bool = True,
) -> dict[str, Any]:
    """Merge each day's runs of small settled objects, drop the samples later writes
    replaced, and (with `sweep`, hourly: it lists the whole store) delete objects no
    transaction listed. Each day commits on its own under a lease, so this runs beside
    ingest and beside compactions on other machines.

    Series counts need no fixing here: ingest counts a sample at an already stored
    timestamp as a replacement, not as a new sample.
    """
    days = 0
    duplicates = 0
    busy: list[str] = []
    for day in store.days_to_compact():
        removed = store.compact_day(day, grace_seconds)
        if removed is None:
            busy.append(day.isoformat())
            continue
        days += 1
        duplicates += sum(removed.values())
    return {
        "days": days,
        "duplicates_removed": int(duplicates),
        "busy_days": busy,
        "orphans_removed": store.sweep_orphans(orphan_grace_seconds) if sweep else 0,
    }


def storage_stats(*, session: Session) -> dict[str, Any]:
    parts = store.partitions(session)
    return {
        "series": int(session.scalar(select(func.count(Series.id))) or 0),
        "samples": int(
            session.scalar(select(func.coalesce(func.sum(Series.sample_count), 0))) or 0
        ),
        "bytes": store.bytes_used(session),
        "partitions": len(parts),
        "oldest_day": parts[0].isoformat() if parts else None,
        "newest_day": parts[-1].isoformat() if parts else None,
        **get_settings_view(session=session),
    }
