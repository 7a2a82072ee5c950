"""The certificate inventory's read side: each row's status by the clock, the filters, the list.

Apart from `service` (issuance, authorities, the CA engine on `cryptography`) so that
`certs list`, the pages and the metrics read certificates without importing the engines.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, or_, select
from sqlalchemy.orm import Session

from popcorn.certificates.models import STATUSES as STATUSES  # the statuses a list filters by
from popcorn.certificates.models import Certificate
from popcorn.certificates.schemas import CertificateRead
from popcorn.db import utcnow
from popcorn.errors import InvalidInput
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate

EXPIRING_DAYS = 30
"""A certificate reads as `expiring` this many days before it expires."""


def days_left(not_after: dt.datetime | None, now: dt.datetime) -> int | None:
    """Whole days until expiry (negative once expired)."""
    if not_after is None:
        return None
    return math.floor((not_after - now).total_seconds() / 86400)


def effective_status(row: Certificate, now: dt.datetime | None = None) -> str:
    """The stored status, with active split into active/expiring/expired by the clock."""
    if row.status != "active" or row.not_after is None:
        return row.status
    now = now or utcnow()
    if row.not_after <= now:
        return "expired"
    if row.not_after <= now + dt.timedelta(days=EXPIRING_DAYS):
        return "expiring"
    return "active"


def status_expression(now: dt.datetime) -> ColumnElement[str]:
    """`effective_status` in SQL, for filters, counts and metrics."""
    return case(
        (Certificate.status != "active", Certificate.status),
        (Certificate.not_after <= now, "expired"),
        (Certificate.not_after <= now + dt.timedelta(days=EXPIRING_DAYS), "expiring"),
        else_="active",
    )


def certificate_read(row: Certificate, now: dt.datetime | None = None) -> CertificateRead:
    now = now or utcnow()
    return CertificateRead.model_validate(row).model_copy(
        update={"status": effective_status(row, now), "days_left": days_left(row.not_after, now)}
    )


def certificate_filters(now: dt.datetime) -> dict[str, Any]:
    return {
        "id": Certificate.id,
        "name": Certificate.name,
        "status": status_expression(now),
        "source": Certificate.source,
        "owner": Certificate.owner,
        "team": Certificate.team,
        "authority_id": Certificate.authority_id,
        "common_name": Certificate.common_name,
        "domain": Certificate.domains_text,
        "serial": Certificate.serial_hex,
        "fingerprint": Certificate.sha256_fingerprint,
        "profile": Certificate.profile,
        "key_type": Certificate.key_type,
        "not_before": Certificate.not_before,
        "not_after": Certificate.not_after,
        "created_at": Certificate.created_at,
        "replaced_by_id": Certificate.replaced_by_id,
    }


def list_certificates(
    *, session: Session, params: ListParams, now: dt.datetime | None = None
) -> PageResult:
    """Filters as in every list, plus `expires_within=<days>` and free text `q`."""
    now = now or utcnow()
    filters = dict(params.filters)
    stmt: Select[Any] = select(Certificate)
    within = filters.pop("expires_within", None)
    if within:
        try:
            days = int(within[-1])
        except ValueError:
            raise InvalidInput(
                "expires_within must be a whole number of days", details={"expires_within": within}
            ) from None
        stmt = stmt.where(Certificate.not_after <= now + dt.timedelta(days=days))
    if "domain" in filters:  # a domain matches one entry of the list, not a substring
        filters["domain__ic"] = [f",{v.lower()}," for v in filters.pop("domain")]
    stmt = stmt.where(*filter_clauses(filters, certificate_filters(now)))
    if params.q:
        pattern = f"%{params.q.lower()}%"
        stmt = stmt.where(
            or_(
                *[
                    func.lower(column).like(pattern)
                    for column in (
                        Certificate.name,
                        Certificate.common_name,
                        Certificate.domains_text,
                        Certificate.owner,
                        Certificate.team,
                        Certificate.serial_hex,
                        Certificate.sha256_fingerprint,
                    )
                ]
            )
        )
    return paginate(session, stmt, params, key=Certificate.id)
