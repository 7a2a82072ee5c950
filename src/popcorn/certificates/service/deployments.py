"""Destinations and deployments: where certificates and their keys are sent."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.certificates import ca
from popcorn.certificates.destinations import CertificateBundle, DeploymentError, destination_kind
from popcorn.certificates.models import (
    Certificate,
    CertificateDestination,
    Deployment,
    Destination,
)
from popcorn.certificates.schemas import (
    DestinationCreate,
)
from popcorn.certificates.service.common import (
    get_certificate,
    get_destination,
    key_store,
    slug,
    unseal,
)
from popcorn.db import utcnow
from popcorn.errors import Conflict
from popcorn.outbox import emit


def list_destinations(*, session: Session) -> list[Destination]:
    return list(session.scalars(select(Destination).order_by(Destination.id)))


def create_destination(*, session: Session, spec: DestinationCreate) -> Destination:
    if session.scalar(select(Destination.id).where(Destination.name == spec.name)) is not None:
        raise Conflict(f"a destination named {spec.name!r} exists", details={"name": spec.name})
    row = Destination(
        name=spec.name,
        kind=spec.kind,
        description=spec.description,
        options=spec.options,
        secret_encrypted=key_store().encrypt(spec.password, associated_data=spec.name.encode())
        if spec.password
        else None,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        "create",
        "certificate_destination",
        row.id,
        after={"name": row.name, "kind": row.kind, "options": row.options},
    )
    return row


def delete_destination(*, session: Session, ref: int | str) -> Destination:
    row = get_destination(session=session, ref=ref)
    record_change(
        session,
        "delete",
        "certificate_destination",
        row.id,
        before={"name": row.name, "kind": row.kind},
    )
    session.delete(row)
    return row


def _bundle_name(row: Certificate, kind: str) -> str:
    """Stable across rotations (same common name) except where the target needs unique names."""
    base = slug(row.common_name or row.name)
    return f"{base}-{row.serial_hex[-12:].lower()}" if kind == "aws-iam" else base


def deploy_certificate(
    *, session: Session, certificate_id: int, destinations: Sequence[int | str] | None = None
) -> list[Deployment]:
    """Deploy to the given destinations, or to all the certificate's; each outcome is recorded."""
    row = get_certificate(session=session, certificate_id=certificate_id)
    if row.status not in {"active", "replaced"}:
        raise Conflict(f"certificate {row.id} is {row.status} and cannot be deployed")
    if destinations is None:
        targets = list(
            session.scalars(
                select(Destination)
                .join(
                    CertificateDestination, CertificateDestination.destination_id == Destination.id
                )
                .where(CertificateDestination.certificate_id == row.id)
                .order_by(Destination.id)
            )
        )
    else:
        targets = [get_destination(session=session, ref=ref) for ref in destinations]
    key_pem = (
        unseal(row.private_key_encrypted, row.sha256_fingerprint or "")
        if row.private_key_encrypted is not None
        else None
    )
    chain = [c for c in ca.parse_pem_bundle(row.chain_pem)] if row.chain_pem.strip() else []
    if chain and chain[-1].subject == chain[-1].issuer:
        chain = chain[:-1]  # servers send intermediates; clients have the root
    done = []
    for target in targets:
        bundle = CertificateBundle(
            _bundle_name(row, target.kind),
            row.certificate_pem,
            ca.certificates_to_pem(chain),
            key_pem,
        )
        record = Deployment(
            certificate_id=row.id, destination_id=target.id, created_at=utcnow(), details={}
        )
        try:
            secret = (
                key_store().decrypt_text(
                    target.secret_encrypted, associated_data=target.name.encode()
                )
                if target.secret_encrypted
                else None
            )
            landed = (
                destination_kind(target.kind).build(dict(target.options), secret).deploy(bundle)
            )
        except (ca.CertificateError, DeploymentError, ValueError) as exc:
            record.status = "failed"
            record.error = str(exc)
        else:
            record.status = "succeeded"
            record.location = landed.location
            record.details = dict(landed.details)
        session.add(record)
        done.append(record)
    session.flush()
    for record in done:
        record_change(
            session,
            "deploy",
            "certificate",
            row.id,
            after={
                "destination_id": record.destination_id,
                "status": record.status,
                "location": record.location,
                "error": record.error,
            },
        )
        emit(
            session,
            "certificates.certificate.deployed"
            if record.status == "succeeded"
            else "certificates.deployment.failed",
            "certificate",
            row.id,
            {
                "certificate_id": row.id,
                "name": row.name,
                "destination_id": record.destination_id,
                "location": record.location,
                "error": record.error,
            },
        )
    return done


def list_deployments(*, session: Session, certificate_id: int) -> list[Deployment]:
    get_certificate(session=session, certificate_id=certificate_id)
    return list(
        session.scalars(
            select(Deployment)
            .where(Deployment.certificate_id == certificate_id)
            .order_by(Deployment.id)
        )
    )
