"""Who is acting and under which request, for audit records and domain events.

The API sets it per request, the CLI per command, workers per job; services
read it instead of taking an `actor` argument everywhere.
"""

from __future__ import annotations

import getpass
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    name: str
    role: str = "admin"
    request_id: str = ""


_current: ContextVar[Actor | None] = ContextVar("popcorn_actor", default=None)


def current_actor() -> Actor:
    actor = _current.get()
    if actor is None:
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        return Actor(name=f"cli:{user}", role="admin", request_id="")
    return actor


@contextmanager
def acting_as(name: str, role: str = "admin", request_id: str | None = None) -> Iterator[Actor]:
    actor = Actor(name=name, role=role, request_id=request_id or uuid.uuid4().hex)
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)


def set_actor(actor: Actor | None) -> None:
    _current.set(actor)


def sees_details() -> bool:
    """Whether the current actor may read full errors and tracebacks (operators and admins)."""
    return current_actor().role in ("operator", "admin")
