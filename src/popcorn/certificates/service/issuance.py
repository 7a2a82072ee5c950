"""Issuance and the inventory: issue, import, read, list and change certificates."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import AuditRecord, record_change, records_for
from popcorn.certificates import ca
from popcorn.certificates.catalog import (
    certificate_read,
    list_certificates,
)
from popcorn.certificates.models import (
    Authority,
    Certificate,
    CertificateDestination,
    Destination,
    Endpoint,
)
from popcorn.certificates.schemas import (
    AgentCertificateIssue,
    AgentCertificateRead,
    CertificateDetail,
    CertificateImport,
    CertificateIssue,
    CertificateUpdate,
    EndpointBrief,
    ProfileName,
)
from popcorn.certificates.service.authorities import ca_bundle, get_authority, issuer_for
from popcorn.certificates.service.common import (
    AGENT_PURPOSE,
    DEFAULT_VALIDITY_DAYS,
    PENDING_CHECK_SECONDS,
    RESERVED_PREFIX,
    certificate_audit,
    engine_errors,
    event_payload,
    get_certificate,
    get_destination,
    seal,
    slug,
    unseal,
)
from popcorn.certificates.service.deployments import deploy_certificate
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, Forbidden, InvalidInput
from popcorn.listing import ListParams, PageResult
from popcorn.outbox import emit


def certificate_detail(*, session: Session, row: Certificate) -> CertificateDetail:
    """One certificate with its PEMs, the endpoints serving it and where it is deployed."""
    base = certificate_read(row).model_dump()
    endpoints = session.scalars(
        select(Endpoint).where(Endpoint.certificate_id == row.id).order_by(Endpoint.id)
    )
    destinations = session.scalars(
        select(Destination.name)
        .join(CertificateDestination, CertificateDestination.destination_id == Destination.id)
        .where(CertificateDestination.certificate_id == row.id)
        .order_by(Destination.name)
    )
    replaces = session.scalar(select(Certificate.id).where(Certificate.replaced_by_id == row.id))
    return CertificateDetail(
        **base,
        certificate_pem=row.certificate_pem,
        chain_pem=row.chain_pem,
        endpoints=[EndpointBrief.model_validate(e) for e in endpoints],
        destinations=list(destinations),
        replaces_id=replaces,
    )


def _fill(row: Certificate, certificate: x509.Certificate, chain_pem: str) -> ca.CertificateInfo:
    info = ca.certificate_info(certificate)
    domains = list(dict.fromkeys([*info.dns_names, *info.ip_addresses]))
    row.certificate_pem = ca.certificate_to_pem(certificate)
    row.chain_pem = chain_pem
    row.common_name = info.common_name or ""
    row.domains = domains
    row.domains_text = "," + ",".join(d.lower() for d in domains) + ","
    row.key_type = info.key_type
    row.key_size = info.key_size
    row.serial_hex = info.serial_hex
    row.sha256_fingerprint = info.sha256_fingerprint
    row.sha1_fingerprint = info.sha1_fingerprint
    row.subject = info.subject
    row.issuer = info.issuer
    row.not_before = info.not_before
    row.not_after = info.not_after
    if row.profile is None:
        row.profile = _profile_of(certificate)
    return info


def _profile_of(certificate: x509.Certificate) -> str | None:
    try:
        usages = set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None
    server = ExtendedKeyUsageOID.SERVER_AUTH in usages
    client = ExtendedKeyUsageOID.CLIENT_AUTH in usages
    return "both" if server and client else "server" if server else "client" if client else None


def _unique_name(session: Session, wanted: str | None, base: str) -> str:
    if wanted:
        if session.scalar(select(Certificate.id).where(Certificate.name == wanted)) is not None:
            raise Conflict(f"a certificate named {wanted!r} exists", details={"name": wanted})
        return wanted
    name = base[:240]
    while session.scalar(select(Certificate.id).where(Certificate.name == name)) is not None:
        name = f"{base[:240]}-{secrets.token_hex(3)}"
    return name


def _default_name(label: str, row: Certificate) -> str:
    """Lemur-style: who it is for, when it ends, and a piece of its serial."""
    return f"{slug(label)}-{row.not_after:%Y%m%d}-{row.serial_hex[-12:].lower()}"


def _request_record(request: ca.CertificateRequest) -> dict[str, Any]:
    """What rotation needs to ask for the same certificate again (no secrets)."""
    return {
        "common_name": request.common_name,
        "dns_names": list(request.dns_names),
        "ip_addresses": list(request.ip_addresses),
        "profile": str(request.profile),
        "validity_days": request.validity_days,
        "key_type": str(request.key_type),
        "organization": request.organization,
        "organizational_unit": request.organizational_unit,
        "country": request.country,
        "state": request.state,
        "locality": request.locality,
        "csr_pem": request.csr_pem.decode()
        if isinstance(request.csr_pem, bytes)
        else request.csr_pem,
    }


@dataclass(frozen=True)
class IssueMeta:
    name: str | None = None
    owner: str = ""
    team: str = ""
    description: str = ""
    rotate_before_days: int | None = None


def issue_under(
    session: Session, authority: Authority, request: ca.CertificateRequest, meta: IssueMeta
) -> Certificate:
    """Sign (or start signing) under `authority` and record the result in the inventory."""
    plugin = issuer_for(authority)
    with engine_errors():
        result = plugin.create_certificate(request)
    now = utcnow()
    row = Certificate(
        authority_id=authority.id,
        source="issued",
        owner=meta.owner,
        team=meta.team,
        description=meta.description,
        profile=str(request.profile),
        validity_days=request.validity_days,
        requested_key_type=None if request.csr_pem else str(request.key_type),
        request=_request_record(request),
        rotate_before_days=meta.rotate_before_days,
        created_by=current_actor().name,
        created_at=now,
        updated_at=now,
        domains=[],
    )
    label = request.common_name or (request.dns_names[0] if request.dns_names else "certificate")
    if isinstance(result, ca.PendingCertificate):
        row.status = "pending"
        row.external_id = result.external_id
        row.common_name = request.common_name or ""
        row.name = _unique_name(session, meta.name, f"{slug(label)}-pending-{secrets.token_hex(4)}")
    else:
        record_issued(row, result)
        row.name = _unique_name(session, meta.name, _default_name(row.common_name or label, row))
    session.add(row)
    session.flush()
    if row.status == "pending":
        from popcorn.jobs import enqueue

        enqueue(session, "certificates.complete_pending", delay_seconds=PENDING_CHECK_SECONDS)
    record_change(session, "issue", "certificate", row.id, after=certificate_audit(row))
    emit(
        session,
        "certificates.certificate.pending"
        if row.status == "pending"
        else "certificates.certificate.issued",
        "certificate",
        row.id,
        event_payload(row, now),
    )
    return row


def record_issued(row: Certificate, issued: ca.IssuedCertificate) -> None:
    info = _fill(row, issued.certificate, issued.chain_pem)
    row.status = "active"
    row.external_id = issued.external_id or row.external_id
    if issued.private_key_pem is not None:
        row.private_key_encrypted = seal(issued.private_key_pem, info.sha256_fingerprint)


def requested_names(request: ca.CertificateRequest) -> list[str]:
    """Every subject and DNS name the certificate would carry, from the request or its CSR."""
    names = [request.common_name or "", *request.dns_names]
    if request.csr_pem:
        with engine_errors():
            csr = ca.load_csr(request.csr_pem)
        names += [
            str(attribute.value)
            for attribute in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
        try:
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            sans = None
        if sans is not None:
            names += sans.get_values_for_type(x509.DNSName)
    return [name for name in names if name]


def check_general_issuance(authority: Authority, request: ca.CertificateRequest) -> None:
    """The general path (API, CLI, rotation) never issues what only the platform may.

    An `agents` authority's certificates are trusted by every Bolt agent, so it
    issues only through `issue_agent_certificate`; names starting with
    `popcorn-` (the runbook engine is `popcorn-runbook`) are the platform's own.
    """
    if authority.purpose == AGENT_PURPOSE:
        raise Forbidden(
            f"authority {authority.name!r} issues Bolt agents' certificates only "
            "(an admin issues them with POST /api/v1/certificates/agents)",
            code="agent_authority",
            details={"authority": authority.name, "purpose": authority.purpose},
        )
    for name in requested_names(request):
        if name.lower().startswith(RESERVED_PREFIX):
            raise InvalidInput(
                f"common_name: {name!r} is reserved for the platform "
                f"(names starting with {RESERVED_PREFIX!r})",
                details={"field": "common_name", "name": name},
            )


def issue_certificate(*, session: Session, spec: CertificateIssue) -> Certificate:
    """Issue under an authority's policy, then deploy to the named destinations."""
    authority = get_authority(session=session, ref=spec.authority)
    destinations = [get_destination(session=session, ref=ref) for ref in spec.destinations]
    request = _request_of(spec, authority)
    check_general_issuance(authority, request)
    meta = IssueMeta(spec.name, spec.owner, spec.team, spec.description, spec.rotate_before_days)
    row = issue_under(session, authority, request, meta)
    for destination in destinations:
        session.add(CertificateDestination(certificate_id=row.id, destination_id=destination.id))
    session.flush()
    if destinations and row.status == "active":
        deploy_certificate(session=session, certificate_id=row.id)
    return row


def _request_of(spec: CertificateIssue, authority: Authority) -> ca.CertificateRequest:
    validity = spec.validity_days or min(DEFAULT_VALIDITY_DAYS, authority.max_validity_days)
    return ca.CertificateRequest(
        common_name=spec.common_name,
        dns_names=spec.dns_names,
        ip_addresses=spec.ip_addresses,
        profile=spec.profile,
        validity_days=validity,
        csr_pem=spec.csr_pem,
        key_type=spec.key_type,
        organization=spec.organization,
        organizational_unit=spec.organizational_unit,
        country=spec.country,
        state=spec.state,
        locality=spec.locality,
    )


def _matching_authority(
    authorities: Sequence[tuple[int, x509.Certificate]], certificate: x509.Certificate
) -> int | None:
    for authority_id, ca_cert in authorities:
        if certificate.issuer == ca_cert.subject and ca.is_issued_by(certificate, ca_cert):
            return authority_id
    return None


def authority_index(session: Session) -> list[tuple[int, x509.Certificate]]:
    rows = session.execute(
        select(Authority.id, Authority.certificate_pem).where(Authority.certificate_pem != "")
    )
    return [(authority_id, ca.load_certificate(pem)) for authority_id, pem in rows]


def import_certificate(
    *, session: Session, spec: CertificateImport, source: str = "imported"
) -> Certificate:
    """Adopt an existing certificate (and key) into the inventory, ordered with its chain."""
    with engine_errors():
        certs = ca.parse_pem_bundle(spec.certificate_pem)
        if spec.chain_pem and spec.chain_pem.strip():
            certs += ca.parse_pem_bundle(spec.chain_pem)
        ordered = ca.order_chain(certs)
        leaf = ordered[0]
        key_pem: str | None = None
        if spec.private_key_pem:
            key = ca.load_private_key(
                spec.private_key_pem, spec.key_password.encode() if spec.key_password else None
            )
            if not ca.keys_match(leaf, key):
                raise ca.CertificateError("private_key_pem: does not match the certificate")
            key_pem = ca.private_key_to_pem(key)
    return record_foreign(
        session,
        leaf,
        ordered[1:],
        key_pem,
        source=source,
        meta=IssueMeta(spec.name, spec.owner, spec.team, spec.description, spec.rotate_before_days),
    )


def record_foreign(
    session: Session,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    key_pem: str | None,
    *,
    source: str,
    meta: IssueMeta,
    authorities: Sequence[tuple[int, x509.Certificate]] | None = None,
) -> Certificate:
    info = ca.certificate_info(leaf)
    existing = session.scalar(
        select(Certificate.id).where(Certificate.sha256_fingerprint == info.sha256_fingerprint)
    )
    if existing is not None:
        raise Conflict(
            f"this certificate is already in the inventory as {existing}",
            details={"id": existing, "fingerprint": info.sha256_fingerprint},
        )
    now = utcnow()
    row = Certificate(
        source=source,
        status="active",
        owner=meta.owner,
        team=meta.team,
        description=meta.description,
        rotate_before_days=meta.rotate_before_days,
        created_by=current_actor().name,
        created_at=now,
        updated_at=now,
        request={},
    )
    _fill(row, leaf, ca.certificates_to_pem(chain))
    if info.not_before and info.not_after:
        row.validity_days = max(1, (info.not_after - info.not_before).days)
    row.authority_id = _matching_authority(
        authorities if authorities is not None else authority_index(session), leaf
    )
    if key_pem is not None:
        row.private_key_encrypted = seal(key_pem, info.sha256_fingerprint)
    label = info.common_name or (row.domains[0] if row.domains else info.sha256_fingerprint[:12])
    row.name = _unique_name(session, meta.name, _default_name(label, row))
    session.add(row)
    session.flush()
    record_change(session, "import", "certificate", row.id, after=certificate_audit(row))
    emit(
        session,
        f"certificates.certificate.{source}",
        "certificate",
        row.id,
        event_payload(row, now),
    )
    return row


def update_certificate(
    *, session: Session, certificate_id: int, spec: CertificateUpdate
) -> Certificate:
    row = get_certificate(session=session, certificate_id=certificate_id, lock=True)
    before = certificate_audit(row)
    data = spec.model_dump(exclude_unset=True)
    refs = data.pop("destinations", None)
    if "rotate_before_days" in data and not data["rotate_before_days"]:
        data["rotate_before_days"] = None
    for field, value in data.items():
        setattr(row, field, value)
    if refs is not None:
        wanted = {get_destination(session=session, ref=r).id for r in refs}
        links = list(
            session.scalars(
                select(CertificateDestination).where(
                    CertificateDestination.certificate_id == row.id
                )
            )
        )
        for link in links:
            if link.destination_id not in wanted:
                session.delete(link)
        for destination_id in wanted - {link.destination_id for link in links}:
            session.add(
                CertificateDestination(certificate_id=row.id, destination_id=destination_id)
            )
    row.updated_at = utcnow()
    after = certificate_audit(row)
    if refs is not None:
        after["destinations"] = sorted(str(r) for r in refs)
    record_change(session, "update", "certificate", row.id, before=before, after=after)
    return row


# --------------------------------------------------------------------------- Bolt agents


class AgentCertificate(NamedTuple):
    cert_pem: str
    key_pem: str
    chain_pem: str
    certificate_id: int


def issue_agent_certificate(
    *,
    session: Session,
    authority: int | str,
    agent_name: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    profile: ProfileName = "both",
    validity_days: int | None = None,
) -> AgentCertificate:
    """A mutual-TLS certificate for a Bolt agent (or a runbook client), recorded in the inventory.

    `profile` "both" serves and authenticates with one certificate; "server"
    or "client" issue them separately. The chain excludes the root, which
    peers get from `ca_bundle`. Only an authority whose purpose is `agents`
    issues these, and only through here (the API route is admin-only), so
    no one can mint a client certificate that agents trust by another path.
    """
    spec = CertificateIssue(
        authority=authority,
        common_name=agent_name,
        dns_names=list(dns_names),
        ip_addresses=list(ip_addresses),
        profile=profile,
        validity_days=validity_days,
        owner=f"bolt-agent:{agent_name}",
        description=f"Bolt agent {agent_name} ({profile})",
    )
    row_authority = get_authority(session=session, ref=authority)
    if row_authority.purpose != AGENT_PURPOSE:
        raise InvalidInput(
            f"authority: {row_authority.name!r} is not an agents authority (create one with "
            "purpose 'agents'; agents must trust a CA nobody else issues from)",
            details={"field": "authority", "purpose": row_authority.purpose},
        )
    row = issue_under(
        session,
        row_authority,
        _request_of(spec, row_authority),
        IssueMeta(None, spec.owner, "", spec.description, None),
    )
    if row.status != "active" or row.private_key_encrypted is None:
        raise Conflict(f"authority {authority!r} did not issue the agent certificate at once")
    chain = ca.parse_pem_bundle(row.chain_pem) if row.chain_pem.strip() else []
    intermediates = [c for c in chain if c.subject != c.issuer]
    return AgentCertificate(
        row.certificate_pem,
        unseal(row.private_key_encrypted, row.sha256_fingerprint or ""),
        ca.certificates_to_pem(intermediates),
        row.id,
    )


def list_certificate_reads(
    *, session: Session, params: ListParams, now: dt.datetime | None = None
) -> PageResult:
    """`list_certificates` with each row read as the API shows it (status by the clock)."""
    now = now or utcnow()
    page = list_certificates(session=session, params=params, now=now)
    page.items = [certificate_read(row, now) for row in page.items]
    return page


def certificate_history(*, session: Session, certificate_id: int | str) -> list[AuditRecord]:
    """The change log of one certificate: issue, export, deploy, revoke, rotate."""
    row = get_certificate(session=session, certificate_id=certificate_id)
    return records_for(session, "certificate", row.id)


def issue_agent_credentials(
    *, session: Session, spec: AgentCertificateIssue
) -> AgentCertificateRead:
    """An agent's certificate, its key (shown once) and the bundle its peers trust."""
    issued = issue_agent_certificate(session=session, **spec.model_dump())
    return AgentCertificateRead(
        certificate_id=issued.certificate_id,
        certificate_pem=issued.cert_pem,
        private_key_pem=issued.key_pem,
        chain_pem=issued.chain_pem,
        ca_bundle_pem=ca_bundle(session=session, authority=spec.authority),
    )
