"""Destinations and deployments: where certificates and their keys are sent.

A destination receives private keys, so only admins make one, and every
deploy goes only where an admin allowed: a directory (or PKCS#12 file) only
under a deploy root (`POPCORN_DEPLOY_ROOTS`) once symlinks and `..` are
resolved, a network destination only to an endpoint the outbound allow-list
(`POPCORN_OUTBOUND_ALLOW`) names. Both are checked when the destination is
made and again at every deploy (roots and allow-list may have changed), and
each deploy is audited with the target it resolved to.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from popcorn.config import get_settings
from popcorn.db import utcnow
from popcorn.errors import Conflict, Forbidden, InvalidInput
from popcorn.outbound import check_url
from popcorn.outbox import emit


def deploy_roots() -> list[Path]:
    """The admin's deploy roots, resolved; relative entries are ignored (never cwd-dependent)."""
    raw = (part.strip() for part in get_settings().deploy_roots.split(","))
    return [Path(os.path.realpath(p)) for p in raw if p and os.path.isabs(p)]


def deploy_path(raw: str) -> Path:
    """`raw` with symlinks and `..` resolved, if it lies under a deploy root; else refused."""
    if not os.path.isabs(raw):
        raise InvalidInput(
            f"path: {raw!r} must be an absolute directory", details={"field": "path", "path": raw}
        )
    resolved = Path(os.path.realpath(raw))
    roots = deploy_roots()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise Forbidden(
            f"path: {raw!r} resolves to {str(resolved)!r}, which is not under a deploy root "
            "(an admin lists them in POPCORN_DEPLOY_ROOTS)",
            code="deploy_path_refused",
            details={"path": raw, "resolved": str(resolved), "roots": [str(r) for r in roots]},
        )
    return resolved


def approved_target(kind: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The target a destination reaches, checked; and its options pointing at that target.

    Raises Forbidden (or InvalidInput for a malformed path or URL) when an
    admin has not allowed the target.
    """
    plugin = destination_kind(kind)
    if plugin.local_path is not None:
        resolved = str(deploy_path(str(options.get(plugin.local_path, ""))))
        return resolved, {**options, plugin.local_path: resolved}
    assert plugin.endpoint is not None  # the registry holds one or the other
    url = plugin.endpoint(options)
    check_url(url, purpose=f"{kind} destination")
    return url, dict(options)


def list_destinations(*, session: Session) -> list[Destination]:
    return list(session.scalars(select(Destination).order_by(Destination.id)))


def create_destination(*, session: Session, spec: DestinationCreate) -> Destination:
    if session.scalar(select(Destination.id).where(Destination.name == spec.name)) is not None:
        raise Conflict(f"a destination named {spec.name!r} exists", details={"name": spec.name})
    target, _ = approved_target(spec.kind, spec.options)
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
        after={"name": row.name, "kind": row.kind, "options": row.options, "target": target},
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
        resolved = ""
        try:
            resolved, options = approved_target(target.kind, dict(target.options))
            secret = (
                key_store().decrypt_text(
                    target.secret_encrypted, associated_data=target.name.encode()
                )
                if target.secret_encrypted
                else None
            )
            landed = destination_kind(target.kind).build(options, secret).deploy(bundle)
        except (ca.CertificateError, DeploymentError, ValueError, Forbidden) as exc:
            record.status = "failed"
            record.error = str(exc)
            record.details = {"target": resolved}
        else:
            record.status = "succeeded"
            record.location = landed.location
            record.details = {**landed.details, "target": resolved}
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
                "target": record.details.get("target", ""),
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
