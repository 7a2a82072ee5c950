"""Rotation, pending issuance and the daily scan that drives them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.certificates import ca
from popcorn.certificates.models import (
    Authority,
    Certificate,
    CertificateDestination,
)
from popcorn.certificates.plugins import (
    PendingIssuerPlugin,
)
from popcorn.certificates.service.authorities import get_authority, issuer_for
from popcorn.certificates.service.common import (
    AGENT_PURPOSE,
    DEFAULT_INTERVALS,
    DEFAULT_VALIDITY_DAYS,
    certificate_audit,
    event_payload,
    get_certificate,
    iso,
)
from popcorn.certificates.service.deployments import deploy_certificate
from popcorn.certificates.service.issuance import (
    IssueMeta,
    check_general_issuance,
    issue_under,
    record_issued,
)
from popcorn.certificates.service.notifications import send_expiry_notifications
from popcorn.certificates.service.revocation import refresh_crls
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, Forbidden, InvalidInput, NotFound
from popcorn.jobs import JobRecord
from popcorn.outbox import emit

# --------------------------------------------------------------------------- rotation


def _rotation_request(
    row: Certificate, authority: Authority, validity_days: int | None
) -> ca.CertificateRequest:
    saved = dict(row.request or {})
    if validity_days is not None:
        validity = validity_days  # asked for explicitly: the authority's policy decides
    else:
        previous = row.validity_days or saved.get("validity_days") or DEFAULT_VALIDITY_DAYS
        validity = min(int(previous), authority.max_validity_days)
    if saved:
        csr = saved.get("csr_pem") if row.private_key_encrypted is None else None
        return ca.CertificateRequest(
            common_name=saved.get("common_name"),
            dns_names=saved.get("dns_names") or [],
            ip_addresses=saved.get("ip_addresses") or [],
            profile=saved.get("profile") or row.profile or "server",
            validity_days=validity,
            csr_pem=csr,
            key_type=saved.get("key_type") or "ecdsa-p256",
            organization=saved.get("organization"),
            organizational_unit=saved.get("organizational_unit"),
            country=saved.get("country"),
            state=saved.get("state"),
            locality=saved.get("locality"),
        )
    # imported or discovered under one of our authorities: ask for what the certificate says
    info = ca.certificate_info(row.certificate_pem)
    key_type = {
        ("RSA", 2048): "rsa-2048",
        ("RSA", 3072): "rsa-3072",
        ("RSA", 4096): "rsa-4096",
        ("ECDSA", 384): "ecdsa-p384",
    }.get((info.key_type, info.key_size), "ecdsa-p256")
    return ca.CertificateRequest(
        common_name=info.common_name,
        dns_names=list(info.dns_names),
        ip_addresses=list(info.ip_addresses),
        profile=row.profile or "server",
        validity_days=validity,
        key_type=key_type,
    )


def rotate_certificate(
    *, session: Session, certificate_id: int, validity_days: int | None = None
) -> Certificate:
    """Reissue with the same profile, names and authority, deploy it, then retire the old one.

    The old certificate points at its replacement at once; it is marked
    `replaced` only when every destination took the new one (the scan
    retries the deployments otherwise).
    """
    old = get_certificate(session=session, certificate_id=certificate_id, lock=True)
    if old.status != "active":
        raise Conflict(
            f"certificate {old.id} is {old.status}; only active certificates are rotated",
            details={"status": old.status},
        )
    if old.replaced_by_id is not None:
        raise Conflict(
            f"certificate {old.id} was already rotated to {old.replaced_by_id}",
            details={"replaced_by_id": old.replaced_by_id},
        )
    if old.authority_id is None:
        raise Conflict(
            f"certificate {old.id} was not issued by an authority in Popcorn; import its "
            "replacement instead",
            details={"issuer": old.issuer},
        )
    authority = get_authority(session=session, ref=old.authority_id)
    request = _rotation_request(old, authority, validity_days)
    check_general_issuance(authority, request)  # agents' certificates are reissued by an admin
    new = issue_under(
        session,
        authority,
        request,
        IssueMeta(None, old.owner, old.team, old.description, old.rotate_before_days),
    )
    for destination_id in session.scalars(
        select(CertificateDestination.destination_id).where(
            CertificateDestination.certificate_id == old.id
        )
    ):
        session.add(CertificateDestination(certificate_id=new.id, destination_id=destination_id))
    before = certificate_audit(old)
    old.replaced_by_id = new.id
    old.updated_at = utcnow()
    session.flush()
    record_change(
        session, "rotate", "certificate", old.id, before=before, after=certificate_audit(old)
    )
    if new.status == "active":
        finish_rotation(session=session, old=old)
    return new


def finish_rotation(*, session: Session, old: Certificate) -> bool:
    """Deploy the replacement; once every destination has it, mark the old one replaced."""
    if old.replaced_by_id is None or old.status != "active":
        return False
    new = get_certificate(session=session, certificate_id=old.replaced_by_id)
    if new.status != "active":
        return False
    deployments = deploy_certificate(session=session, certificate_id=new.id)
    if any(d.status != "succeeded" for d in deployments):
        return False
    before = certificate_audit(old)
    old.status = "replaced"
    old.updated_at = utcnow()
    record_change(
        session, "replace", "certificate", old.id, before=before, after=certificate_audit(old)
    )
    emit(
        session,
        "certificates.certificate.rotated",
        "certificate",
        old.id,
        {
            **event_payload(old),
            "replaced_by_id": new.id,
            "new_serial": new.serial_hex,
            "new_not_after": iso(new.not_after),
            "deployments": [d.location for d in deployments],
        },
    )
    return True


# --------------------------------------------------------------------------- pending issuance


def complete_pending(*, session: Session) -> dict[str, int]:
    """Ask asynchronous issuers about pending certificates; finish rotations waiting on them."""
    counts = {"issued": 0, "failed": 0, "pending": 0}
    pending = list(
        session.scalars(
            select(Certificate).where(Certificate.status == "pending").order_by(Certificate.id)
        )
    )
    for row in pending:
        authority = session.get(Authority, row.authority_id) if row.authority_id else None
        try:
            plugin = issuer_for(authority) if authority is not None else None
        except Conflict:  # its plugin is not installed in this process: try again later
            plugin = None
        if not isinstance(plugin, PendingIssuerPlugin) or not row.external_id:
            counts["pending"] += 1
            continue
        before = certificate_audit(row)
        try:
            issued = plugin.fetch_certificate(row.external_id)
        except ValueError as exc:
            row.status = "failed"
            row.last_error = str(exc)
            counts["failed"] += 1
            record_change(
                session,
                "fail",
                "certificate",
                row.id,
                before=before,
                after={**certificate_audit(row), "error": row.last_error},
            )
            emit(
                session,
                "certificates.certificate.failed",
                "certificate",
                row.id,
                {"certificate_id": row.id, "name": row.name, "error": row.last_error},
            )
            continue
        if issued is None:
            counts["pending"] += 1
            continue
        record_issued(row, issued)
        row.updated_at = utcnow()
        session.flush()
        counts["issued"] += 1
        record_change(
            session, "issue", "certificate", row.id, before=before, after=certificate_audit(row)
        )
        emit(session, "certificates.certificate.issued", "certificate", row.id, event_payload(row))
        old = session.scalar(select(Certificate).where(Certificate.replaced_by_id == row.id))
        if old is not None:
            finish_rotation(session=session, old=old)
        elif session.scalar(
            select(CertificateDestination.id).where(CertificateDestination.certificate_id == row.id)
        ):
            deploy_certificate(session=session, certificate_id=row.id)
    return counts


def rotation_candidates(*, session: Session, now: dt.datetime | None = None) -> list[int]:
    """Active certificates inside their rotation window (the certificate's or its authority's)."""
    now = now or utcnow()
    days = func.coalesce(Certificate.rotate_before_days, Authority.rotate_before_days)
    longest = session.scalar(
        select(func.max(days))
        .select_from(Certificate)
        .join(Authority, Certificate.authority_id == Authority.id)
    )
    if not longest:
        return []
    rows = session.execute(
        select(Certificate.id, Certificate.not_after, days)
        .join(Authority, Certificate.authority_id == Authority.id)
        .where(Authority.purpose != AGENT_PURPOSE)
        .where(
            Certificate.status == "active",
            Certificate.replaced_by_id.is_(None),
            Certificate.not_after <= now + dt.timedelta(days=int(longest)),
            days.is_not(None),
        )
        .order_by(Certificate.not_after)
    )
    return [
        cid
        for cid, not_after, before in rows
        if not_after is not None and not_after - now <= dt.timedelta(days=int(before))
    ]


def run_scan(
    *,
    intervals: Sequence[int] = DEFAULT_INTERVALS,
    now: dt.datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The daily job: expiry warnings, automatic rotations, retried deployments, fresh CRLs.

    Each rotation commits on its own, so one failing issuer or destination
    does not undo the others.
    """
    now = now or utcnow()
    with session_scope() as session:
        completed = complete_pending(session=session)
    with session_scope() as session:
        notified = send_expiry_notifications(session=session, intervals=intervals, now=now)
    with session_scope(readonly=True) as session:
        candidates = rotation_candidates(session=session, now=now)
        unfinished = list(
            session.scalars(
                select(Certificate.id).where(
                    Certificate.status == "active", Certificate.replaced_by_id.is_not(None)
                )
            )
        )
    rotated: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    total = len(candidates) + len(unfinished)
    for done, certificate_id in enumerate([*candidates, *unfinished], start=1):
        try:
            with session_scope() as session:
                if certificate_id in unfinished:
                    old = get_certificate(session=session, certificate_id=certificate_id, lock=True)
                    if finish_rotation(session=session, old=old):
                        rotated.append({"id": old.id, "replaced_by_id": old.replaced_by_id})
                else:
                    new = rotate_certificate(session=session, certificate_id=certificate_id)
                    rotated.append({"id": certificate_id, "replaced_by_id": new.id})
        except (InvalidInput, Conflict, NotFound, Forbidden) as exc:
            failed.append({"id": certificate_id, "error": exc.message})
        if progress is not None:
            progress(done, total)
    with session_scope() as session:
        crls = refresh_crls(session=session, now=now)
    return {
        **notified,
        "rotated": rotated,
        "rotation_failures": failed,
        "crls_published": crls,
        "pending": completed,
    }


def queue_scan(*, session: Session, intervals: Sequence[int] = DEFAULT_INTERVALS) -> JobRecord:
    """Run the daily scan now, as a job (it may rotate many certificates)."""
    from popcorn.jobs import enqueue

    return enqueue(session, "certificates.scan", arguments={"intervals": list(intervals)})
