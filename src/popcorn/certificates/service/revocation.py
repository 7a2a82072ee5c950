"""Revocation: revoke at the issuer, publish CRLs, answer OCSP."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.certificates import ca
from popcorn.certificates.models import (
    Authority,
    Certificate,
)
from popcorn.certificates.ocsp import CertificateStatus, build_ocsp_response
from popcorn.certificates.schemas import CRLRead
from popcorn.certificates.service.authorities import (
    crl_url,
    get_authority,
    issuer_for,
    signing_authority,
)
from popcorn.certificates.service.common import (
    CRL_REFRESH_BEFORE,
    CRL_VALIDITY,
    certificate_audit,
    engine_errors,
    event_payload,
    get_certificate,
    iso,
)
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, NotFound
from popcorn.outbox import emit

# --------------------------------------------------------------------------- revocation


def revoke_certificate(
    *, session: Session, certificate_id: int, reason: str = "unspecified"
) -> Certificate:
    """Revoke at the issuer and publish a new CRL in the same transaction."""
    row = get_certificate(session=session, certificate_id=certificate_id, lock=True)
    if row.status == "revoked":
        raise Conflict(
            f"certificate {row.id} was already revoked at {iso(row.revoked_at)}",
            details={"id": row.id, "reason": row.revocation_reason},
        )
    if row.status in {"pending", "failed"}:
        raise Conflict(f"certificate {row.id} is {row.status} and has nothing to revoke")
    if row.authority_id is None:
        raise Conflict(
            f"certificate {row.id} was not issued by an authority in Popcorn; "
            "revoke it where it was issued",
            details={"issuer": row.issuer},
        )
    authority = get_authority(session=session, ref=row.authority_id, lock=True)
    with engine_errors():
        entry = issuer_for(authority).revoke_certificate(
            ca.load_certificate(row.certificate_pem), reason=reason
        )
    before = certificate_audit(row)
    row.status = "revoked"
    row.revoked_at = entry.revoked_at
    row.revocation_reason = entry.reason.value
    row.updated_at = utcnow()
    session.flush()
    record_change(
        session,
        "revoke",
        "certificate",
        row.id,
        before=before,
        after={**certificate_audit(row), "reason": row.revocation_reason},
    )
    emit(
        session,
        "certificates.certificate.revoked",
        "certificate",
        row.id,
        {**event_payload(row), "reason": row.revocation_reason},
    )
    if authority.private_key_encrypted is not None:
        publish_crl(session=session, authority=authority)
    return row


def _revoked_entries(session: Session, authority_id: int) -> list[ca.RevokedEntry]:
    rows = session.execute(
        select(Certificate.serial_hex, Certificate.revoked_at, Certificate.revocation_reason)
        .where(Certificate.authority_id == authority_id, Certificate.status == "revoked")
        .order_by(Certificate.revoked_at)
    )
    return [
        ca.RevokedEntry(int(serial, 16), revoked_at, ca.parse_reason(reason or "unspecified"))
        for serial, revoked_at, reason in rows
        if revoked_at is not None
    ]


def publish_crl(*, session: Session, authority: Authority | int | str) -> bytes:
    """Sign and store the authority's next CRL (its number goes up by one)."""
    row = (
        authority
        if isinstance(authority, Authority)
        else get_authority(session=session, ref=authority, lock=True)
    )
    if row.private_key_encrypted is None:
        raise NotFound(
            f"authority {row.id} does not publish a CRL in Popcorn", details={"authority": row.id}
        )
    now = utcnow()
    signed = ca.build_crl(
        signing_authority(row),
        _revoked_entries(session, row.id),
        crl_number=row.crl_number + 1,
        next_update=CRL_VALIDITY,
        now=now,
    )
    row.crl_number += 1
    row.crl_der = signed.der
    row.crl_next_update = signed.crl.next_update_utc
    session.flush()
    return signed.der


def current_crl(*, session: Session, authority_id: int | str) -> bytes | None:
    """The stored CRL while it is fresh; None when it must be (re)published first."""
    row = get_authority(session=session, ref=authority_id)
    if row.private_key_encrypted is None:
        raise NotFound(f"authority {authority_id} does not publish a CRL in Popcorn")
    if row.crl_der is None or row.crl_next_update is None:
        return None
    if row.crl_next_update - utcnow() < CRL_REFRESH_BEFORE:
        return None
    return row.crl_der


def ocsp_response(*, session: Session, authority_id: int | str, request_der: bytes) -> bytes:
    """An OCSP answer for a request about a certificate of this authority."""
    row = get_authority(session=session, ref=authority_id)
    if row.private_key_encrypted is None:
        raise NotFound(f"authority {authority_id} does not answer OCSP in Popcorn")

    def lookup(serial: int) -> CertificateStatus:
        found = session.execute(
            select(Certificate.status, Certificate.revoked_at, Certificate.revocation_reason).where(
                Certificate.authority_id == row.id, Certificate.serial_hex == format(serial, "X")
            )
        ).first()
        if found is None or found.status in {"pending", "failed"}:
            return CertificateStatus.unknown()
        if found.status == "revoked" and found.revoked_at is not None:
            return CertificateStatus.revoked(
                found.revoked_at, ca.parse_reason(found.revocation_reason or "unspecified")
            )
        return CertificateStatus.good()

    return build_ocsp_response(request_der, signing_authority(row), lookup)


def refresh_crls(*, session: Session, now: dt.datetime | None = None) -> int:
    """Republish CRLs that were never published or are close to their next update."""
    now = now or utcnow()
    stale = list(
        session.scalars(
            select(Authority).where(
                Authority.private_key_encrypted.is_not(None),
                or_(
                    Authority.crl_next_update.is_(None),
                    Authority.crl_next_update < now + CRL_REFRESH_BEFORE,
                ),
            )
        )
    )
    for row in stale:
        publish_crl(session=session, authority=row)
    return len(stale)


def republish_crl(*, session: Session, authority: int | str) -> CRLRead:
    """Publish a fresh CRL now; answers its number and where clients fetch it."""
    row = get_authority(session=session, ref=authority, lock=True)
    publish_crl(session=session, authority=row)
    return CRLRead(crl_number=row.crl_number, crl_url=crl_url(row))


def serve_crl(*, authority_id: int | str) -> bytes:
    """The CRL TLS clients fetch: the stored one while fresh, else a newly published one.

    Reads in a read-only transaction first, so the unauthenticated route
    takes a write lock only when a CRL is missing or close to its next update.
    """
    with session_scope(readonly=True) as session:
        der = current_crl(session=session, authority_id=authority_id)
    if der is not None:
        return der
    with session_scope() as session:
        der = current_crl(session=session, authority_id=authority_id)
        return der if der is not None else publish_crl(session=session, authority=authority_id)
