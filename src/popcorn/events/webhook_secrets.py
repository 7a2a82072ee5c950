"""Webhook signing secrets: sealed at rest, managed by admins."""

from __future__ import annotations

import re
import secrets as pysecrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.config import get_settings
from popcorn.db import utcnow
from popcorn.errors import InvalidInput, NotFound
from popcorn.events.models import Secret

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
