"""Shared pieces of the certificates service: sealed keys, statuses, audit snapshots."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from popcorn.certificates import ca
from popcorn.certificates.catalog import days_left, effective_status
from popcorn.certificates.models import (
    Authority,
    Certificate,
    Destination,
)
from popcorn.config import get_settings
from popcorn.db import utcnow
from popcorn.errors import InvalidInput, NotFound
from popcorn.lookup import get_by_ref, parse_id
from popcorn.sealing import KeyStore

DEFAULT_INTERVALS = (30, 15, 7, 1)
"""Days before expiry at which a warning is sent (once each)."""
DEFAULT_VALIDITY_DAYS = 90
PENDING_CHECK_SECONDS = 60
"""A pending certificate is checked this long after the request (and by every daily scan)."""
CRL_VALIDITY = dt.timedelta(days=7)
CRL_REFRESH_BEFORE = dt.timedelta(days=2)
KEY_CONTEXT = "popcorn/certificates/private-key"
AGENT_PURPOSE = "agents"
"""An authority with this purpose issues Bolt agents' certificates only, through the platform."""
RESERVED_PREFIX = "popcorn-"
"""Names of the platform's own clients (the runbook engine is `popcorn-runbook`)."""


# --------------------------------------------------------------------------- helpers


def key_store() -> KeyStore:
    """Keys are sealed under the installation's secret; a database dump alone reveals none."""
    return KeyStore(get_settings().effective_secret_key, context=KEY_CONTEXT)


def seal(pem: str, fingerprint: str) -> str:
    return key_store().encrypt(pem, associated_data=fingerprint.encode())


def unseal(envelope: str, fingerprint: str) -> str:
    return key_store().decrypt_text(envelope, associated_data=fingerprint.encode())


@contextmanager
def engine_errors() -> Iterator[None]:
    """Engine refusals are the caller's bad input: a 422 naming the field."""
    try:
        yield
    except ca.CertificateError as exc:
        message = str(exc)
        field = message.split(":", 1)[0] if ":" in message else "input"
        raise InvalidInput(message, details={"field": field}) from exc


def slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("*", "star")).strip("-")
    return slug[:120] or "certificate"


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def certificate_audit(row: Certificate) -> dict[str, Any]:
    return {
        "name": row.name,
        "status": row.status,
        "authority_id": row.authority_id,
        "serial_hex": row.serial_hex,
        "common_name": row.common_name,
        "domains": list(row.domains or []),
        "owner": row.owner,
        "team": row.team,
        "not_after": iso(row.not_after),
        "replaced_by_id": row.replaced_by_id,
        "rotate_before_days": row.rotate_before_days,
    }


def authority_audit(row: Authority) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "purpose": row.purpose,
        "plugin": row.plugin,
        "parent_id": row.parent_id,
        "subject": row.subject,
        "max_validity_days": row.max_validity_days,
        "allowed_dns_suffixes": row.allowed_dns_suffixes,
        "allowed_ip_networks": row.allowed_ip_networks,
        "public_base_url": row.public_base_url,
        "rotate_before_days": row.rotate_before_days,
        "description": row.description,
    }


def event_payload(row: Certificate, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "certificate_id": row.id,
        "name": row.name,
        "common_name": row.common_name,
        "domains": list(row.domains or []),
        "owner": row.owner,
        "team": row.team,
        "authority_id": row.authority_id,
        "serial": row.serial_hex,
        "not_after": iso(row.not_after),
        "days_left": days_left(row.not_after, now),
        "status": effective_status(row, now),
    }


def get_certificate(
    *, session: Session, certificate_id: int | str, lock: bool = False
) -> Certificate:
    """A certificate by id; ids that cannot exist (past 64 bits) are simply not found."""
    ident = parse_id(certificate_id)
    row = session.get(Certificate, ident, with_for_update=lock) if ident is not None else None
    if row is None:
        raise NotFound(f"no certificate {certificate_id}", details={"id": str(certificate_id)})
    return row


def get_destination(*, session: Session, ref: int | str) -> Destination:
    """A destination by name, else by id."""
    return get_by_ref(session, Destination, ref, label="destination")
