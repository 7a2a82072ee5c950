"""Expiry warnings: one event per certificate and interval, safe to run twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, exists, insert, select
from sqlalchemy.orm import Session

from popcorn.certificates.catalog import days_left
from popcorn.certificates.models import (
    Certificate,
    Notification,
)
from popcorn.certificates.service.common import DEFAULT_INTERVALS, iso
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import OutboxEvent

# --------------------------------------------------------------------------- expiry scan


def _insert_notifications(
    session: Session, certificate_ids: Sequence[int], kind: str, interval: int, now: dt.datetime
) -> set[int]:
    """Insert, skipping any another scan wrote first; returns the ids this call recorded."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = cast(Table, Notification.__table__)
    stmt = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=["certificate_id", "kind", "interval_days"])
        .returning(table.c.certificate_id)
    )
    rows = [
        {"certificate_id": cid, "kind": kind, "interval_days": interval, "sent_at": now}
        for cid in certificate_ids
    ]
    return set(session.connection().execute(stmt, rows).scalars())


def _emit_many(
    session: Session, event_type: str, events: Sequence[tuple[int, dict[str, Any]]]
) -> None:
    """`outbox.emit` for many certificates in one INSERT (a first scan may warn thousands).

    Same rows as `emit` writes (actor, request id, time), without building an
    ORM object per event.
    """
    if not events:
        return
    actor = current_actor()
    now = utcnow()
    session.connection().execute(
        insert(cast(Table, OutboxEvent.__table__)),
        [
            {
                "type": event_type,
                "object_type": "certificate",
                "object_id": str(object_id),
                "payload": payload,
                "actor": actor.name,
                "request_id": actor.request_id,
                "created_at": now,
            }
            for object_id, payload in events
        ],
    )


def send_expiry_notifications(
    *,
    session: Session,
    intervals: Sequence[int] = DEFAULT_INTERVALS,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """One event per certificate and interval: the nearest interval it is inside, and expired.

    A certificate first seen 5 days before expiry gets the 7-day warning
    only, not 30, 15 and 7 at once. The unique key on notifications makes
    this safe to run twice, or on two machines at once.
    """
    now = now or utcnow()
    tiers = sorted({int(i) for i in intervals}, reverse=True)
    windows: list[tuple[str, int, dt.datetime | None, dt.datetime]] = [("expired", 0, None, now)]
    for index, days in enumerate(tiers):
        nearer = tiers[index + 1] if index + 1 < len(tiers) else 0
        windows.append(
            ("expiring", days, now + dt.timedelta(days=nearer), now + dt.timedelta(days=days))
        )
    counts = {"expiring": 0, "expired": 0}
    for kind, interval, lower, upper in windows:
        sent = exists().where(
            Notification.certificate_id == Certificate.id,
            Notification.kind == kind,
            Notification.interval_days == interval,
        )
        stmt = select(
            Certificate.id,
            Certificate.name,
            Certificate.common_name,
            Certificate.domains,
            Certificate.owner,
            Certificate.team,
            Certificate.not_after,
            Certificate.authority_id,
            Certificate.serial_hex,
        ).where(Certificate.status == "active", Certificate.not_after <= upper, ~sent)
        if lower is not None:
            stmt = stmt.where(Certificate.not_after > lower)
        due = session.execute(stmt).all()
        if not due:
            continue
        recorded = _insert_notifications(session, [r.id for r in due], kind, interval, now)
        _emit_many(
            session,
            f"certificates.certificate.{kind}",
            [
                (
                    r.id,
                    {
                        "certificate_id": r.id,
                        "name": r.name,
                        "common_name": r.common_name,
                        "domains": list(r.domains or []),
                        "owner": r.owner,
                        "team": r.team,
                        "authority_id": r.authority_id,
                        "serial": r.serial_hex,
                        "not_after": iso(r.not_after),
                        "days_left": days_left(r.not_after, now),
                        "interval_days": interval,
                    },
                )
                for r in due
                if r.id in recorded
            ],
        )
        counts[kind] += len(recorded)
    return counts


def list_notifications(*, session: Session, params: ListParams) -> PageResult:
    """Expiry warnings sent (filters: certificate_id, kind, interval_days, sent_at)."""
    allowed = {
        "certificate_id": Notification.certificate_id,
        "kind": Notification.kind,
        "interval_days": Notification.interval_days,
        "sent_at": Notification.sent_at,
    }
    stmt = select(Notification).where(*filter_clauses(params.filters, allowed))
    return paginate(session, stmt, params, key=Notification.id)
