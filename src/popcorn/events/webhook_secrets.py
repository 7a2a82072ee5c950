"""Webhook signing secrets: sealed at rest, managed by admins, bound to their destinations.

A signature tells a receiver "this came from Popcorn". Operators write rules,
and a rule's webhook chooses its URL and payload, so a secret that signed for
any URL would let an operator have the platform sign anything for any
receiver that trusts it. Each secret therefore carries the destinations an
admin stored it for (`allowed_targets`: URL prefixes or host names), and a
webhook is signed with it only when its URL is one of them.
"""

from __future__ import annotations

import re
import secrets as pysecrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.config import get_settings
from popcorn.db import utcnow
from popcorn.errors import InvalidInput, NotFound
from popcorn.events.models import Secret
from popcorn.sealing import KeyStore

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?|\[[0-9a-f:.]+\](:\d{1,5})?")


def _keystore() -> KeyStore:
    return KeyStore(get_settings().effective_secret_key, context="popcorn/events/webhook-secret")


def _canonical(url: str) -> str | None:
    """scheme://host[:port]/path of an http(s) URL (no user info, query or fragment)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}{f':{port}' if port else ''}{parts.path or '/'}"


def normalize_targets(targets: Sequence[str]) -> list[str]:
    """Validated allowed targets: `https://host/prefix` URL prefixes or bare `host[:port]`."""
    out: set[str] = set()
    for raw in targets:
        text = raw.strip()
        if "://" in text:
            parts = urlsplit(text)
            canonical = _canonical(text)
            if canonical is None or parts.username or parts.query or parts.fragment:
                raise InvalidInput(
                    f"allowed_targets: {raw[:200]!r} is not an http(s) URL prefix "
                    "(no user info, query or fragment)",
                    details={"target": raw[:200]},
                )
            out.add(canonical)
        elif _HOST.fullmatch(text.lower()):
            out.add(text.lower())
        else:
            raise InvalidInput(
                f"allowed_targets: {raw[:200]!r} is neither a URL prefix nor a host name",
                details={"target": raw[:200]},
            )
    if not out:
        raise InvalidInput("allowed_targets: name at least one URL prefix or host")
    return sorted(out)


def allows(targets: Sequence[str], url: str) -> bool:
    """May a secret bound to `targets` sign a delivery to `url`?"""
    canonical = _canonical(url)
    if canonical is None:
        return False
    netloc = canonical.split("://", 1)[1].split("/", 1)[0]
    bare = re.sub(r":\d+$", "", netloc)  # the host without its port ("[::1]" keeps brackets)
    for target in targets:
        if "://" not in target:
            if target in (netloc, bare):  # a bare host allows any port; host:port only that one
                return True
            continue
        if canonical == target or (
            canonical.startswith(target) and (target.endswith("/") or canonical[len(target)] == "/")
        ):
            return True
    return False


def set_secret(
    *, session: Session, name: str, allowed_targets: Sequence[str], value: str | None = None
) -> str:
    """Store a signing secret (generated if not given) with where it may sign; returns it."""
    if not _NAME.fullmatch(name):
        raise InvalidInput("name: letters, digits, _ . - (at most 100)", details={"name": name})
    targets = normalize_targets(allowed_targets)
    secret = value or pysecrets.token_urlsafe(32)
    sealed = _keystore().encrypt(secret, associated_data=name.encode())
    row = session.scalar(select(Secret).where(Secret.name == name))
    after = {"name": name, "allowed_targets": targets}
    if row is None:
        row = Secret(
            name=name,
            sealed=sealed,
            allowed_targets=targets,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        session.add(row)
        session.flush()
        record_change(session, "create", "event_secret", name, after=after)
    else:
        before = {"name": name, "allowed_targets": list(row.allowed_targets or [])}
        row.sealed = sealed
        row.allowed_targets = targets
        row.updated_at = utcnow()
        record_change(session, "rotate", "event_secret", name, before=before, after=after)
    return secret


def get_secret(*, session: Session, name: str) -> Secret | None:
    return session.scalar(select(Secret).where(Secret.name == name))


def secret_value(*, session: Session, name: str) -> str | None:
    row = get_secret(session=session, name=name)
    if row is None:
        return None
    return reveal(row)


def reveal(row: Secret) -> str:
    """The secret itself (for signing only; never shown after it was set)."""
    text: str = _keystore().decrypt_text(row.sealed, associated_data=row.name.encode())
    return text


def list_secrets(*, session: Session) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "allowed_targets": list(s.allowed_targets or []),
            "created_at": s.created_at,
            "updated_at": s.updated_at,
        }
        for s in session.scalars(select(Secret).order_by(Secret.name))
    ]


def delete_secret(*, session: Session, name: str) -> None:
    row = get_secret(session=session, name=name)
    if row is None:
        raise NotFound(f"no secret {name!r}", details={"name": name})
    session.delete(row)
    record_change(session, "delete", "event_secret", name, before={"name": name})
