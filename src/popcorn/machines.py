"""The machines an installation runs on, and the startup check that needs them.

Every `popcorn up`, `serve`, `worker` and `scheduler` records its host in the `machines`
table (`machine_name`, or the hostname). Files written to a local-directory object store are
seen by one machine only, so once a second machine has registered on a shared (external)
database, processes refuse to start with a local-directory store instead of analysing data
the other machine cannot see.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

from sqlalchemy import String, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from popcorn.config import get_settings
from popcorn.db import Base, JSONType, UTCDateTime, session_scope, utcnow
from popcorn.errors import Conflict
from popcorn.storage import LocalStore, ObjectStore, get_store

# A machine not started for this long no longer counts (it was retired or renamed).
FORGET_AFTER = timedelta(days=30)


class Machine(Base):
    """A host that ran a Popcorn process, and when it last started one."""

    __tablename__ = "machines"

    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    roles: Mapped[list[str]] = mapped_column(JSONType, default=list)
    storage: Mapped[str] = mapped_column(String(1000), default="")
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def register(role: str, hostname: str | None = None) -> None:
    """Record that this host runs `role` now."""
    name = (hostname or get_settings().machine_name or socket.gethostname())[:255]
    location = get_store().location[:1000]
    for _attempt in range(2):  # two processes of a new host may insert at once
        try:
            with session_scope() as session:
                row = session.get(Machine, name, with_for_update=True)
                if row is None:
                    session.add(Machine(hostname=name, roles=[role], storage=location))
                    return
                row.roles = sorted({*row.roles, role})
                row.storage = location
                row.last_seen_at = utcnow()
                return
        except IntegrityError:
            continue


def active_count() -> int:
    with session_scope(readonly=True) as session:
        since = utcnow() - FORGET_AFTER
        return int(session.scalar(select(func.count()).where(Machine.last_seen_at >= since)) or 0)


def check_shared_storage(database_url: str | None = None, store: ObjectStore | None = None) -> None:
    """Refuse a local-directory store when several machines share an external database."""
    url = database_url or get_settings().effective_database_url
    if url.startswith("sqlite"):
        return  # an embedded database is one machine's by construction
    store = store or get_store()
    if not isinstance(store, LocalStore):
        return
    machines = active_count()
    if machines > 1:
        raise Conflict(
            f"{machines} machines share this database but the object store is the local "
            f"directory {store.location}: set storage_url to s3://bucket/prefix so that "
            "every machine sees the same files",
            details={"machines": machines, "storage": store.location},
        )


def startup(role: str) -> None:
    """What every long-running process does first: register, then check."""
    register(role)
    check_shared_storage()
