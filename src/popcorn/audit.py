"""The change log: one record per change, written in the change's own transaction.

Like NetBox's change log, every object type shares one table, so "what changed,
who did it, under which request" has one answer everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from popcorn.context import current_actor
from popcorn.db import Base, JSONType, UTCDateTime, utcnow
from popcorn.errors import InvalidInput
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.schemas import ReadSchema


class AuditRecord(Base):
    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_object", "object_type", "object_id"),
        Index("ix_audit_time", "time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(50))
    object_type: Mapped[str] = mapped_column(String(80))
    object_id: Mapped[str] = mapped_column(String(80))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    diff: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    request_id: Mapped[str] = mapped_column(String(64), default="")


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """Changed keys as {key: [old, new]}."""
    before = before or {}
    after = after or {}
    return {
        key: [before.get(key), after.get(key)]
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


def record_change(
    session: Session,
    action: str,
    object_type: str,
    object_id: Any,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditRecord:
    actor = current_actor()
    rec = AuditRecord(
        time=utcnow(),
        actor=actor.name,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        before=before,
        after=after,
        diff=diff(before, after),
        request_id=actor.request_id,
    )
    session.add(rec)
    return rec


def records_for(session: Session, object_type: str, object_id: Any) -> list[AuditRecord]:
    stmt = (
        select(AuditRecord)
        .where(AuditRecord.object_type == object_type, AuditRecord.object_id == str(object_id))
        .order_by(AuditRecord.id)
    )
    return list(session.scalars(stmt))


@contextmanager
def recording_update(
    session: Session,
    object_type: str,
    row: Any,
    snapshot: Callable[[Any], dict[str, Any]],
    *,
    object_id: Any = None,
    action: str = "update",
) -> Iterator[Any]:
    """Change `row` inside the block; one audit record with its before and after follows.

    The one way to audit an update: the snapshot is taken before the block and again
    after a flush, so defaults and database-side values are in the record.
    """
    before = snapshot(row)
    yield row
    session.flush()
    record_change(
        session,
        action,
        object_type,
        object_id if object_id is not None else row.id,
        before=before,
        after=snapshot(row),
    )


def apply_fields(row: Any, spec: BaseModel) -> None:
    """Set on `row` exactly the fields the client sent (a field sent as null is cleared)."""
    for key in spec.model_fields_set:
        setattr(row, key, getattr(spec, key))


class AuditRead(ReadSchema):
    id: int
    time: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    diff: dict[str, Any]
    request_id: str


AUDIT_FILTERS = {
    "actor": AuditRecord.actor,
    "action": AuditRecord.action,
    "object_type": AuditRecord.object_type,
    "object_id": AuditRecord.object_id,
    "time": AuditRecord.time,
    "request_id": AuditRecord.request_id,
}


def list_audit(*, session: Session, params: ListParams) -> PageResult:
    """One page of the change log, oldest first (filters: AUDIT_FILTERS)."""
    if params.q:
        raise InvalidInput("free-text search is not supported on the audit log")
    stmt = select(AuditRecord).where(*filter_clauses(params.filters, AUDIT_FILTERS))
    return paginate(session, stmt, params, key=AuditRecord.id)


def recent_changes(
    *, session: Session, filters: Mapping[str, Sequence[str]], limit: int = 50
) -> list[AuditRecord]:
    """The newest records matching the same filters as `list_audit`."""
    stmt = select(AuditRecord).where(*filter_clauses(filters, AUDIT_FILTERS))
    return list(session.scalars(stmt.order_by(AuditRecord.id.desc()).limit(limit)))
