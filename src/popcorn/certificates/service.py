"""Certificate management: authorities, issuance, inventory, revocation, rotation, expiry.

Everything the API, the CLI, the jobs and other domains do with certificates
goes through these functions. They take a session (the caller's transaction)
and raise `popcorn.errors` types; engine errors (`ca.CertificateError`) become
`InvalidInput` naming the field. The few functions that do network I/O
(`run_discovery`, `run_scan`) open their own short transactions around it,
so no database transaction waits on a remote host.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import ColumnElement, Select, Table, case, exists, func, insert, or_, select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.certificates import ca
from popcorn.certificates.destinations import CertificateBundle, DeploymentError
from popcorn.certificates.discover import DiscoveryResult, discover
from popcorn.certificates.keystore import export_pkcs12
from popcorn.certificates.models import (
    STATUSES,
    Authority,
    Certificate,
    CertificateDestination,
    Deployment,
    Destination,
    Endpoint,
    Notification,
    Source,
)
from popcorn.certificates.ocsp import CertificateStatus, build_ocsp_response
from popcorn.certificates.plugins import (
    ISSUERS,
    LOCAL_ISSUER,
    IssuerContext,
    PendingIssuerPlugin,
    build_destination,
)
from popcorn.certificates.schemas import (
    AuthorityCreate,
    AuthorityRead,
    AuthorityUpdate,
    CertificateDetail,
    CertificateImport,
    CertificateIssue,
    CertificateRead,
    CertificateUpdate,
    DestinationCreate,
    EndpointBrief,
    Export,
    ExportRead,
    ProfileName,
    SourceCreate,
)
from popcorn.config import get_settings
from popcorn.context import current_actor
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.outbox import OutboxEvent, emit
from popcorn.sealing import KeyStore

DEFAULT_INTERVALS = (30, 15, 7, 1)
"""Days before expiry at which a warning is sent (once each)."""
EXPIRING_DAYS = 30
"""A certificate reads as `expiring` this many days before it expires."""
DEFAULT_VALIDITY_DAYS = 90
PENDING_CHECK_SECONDS = 60
"""A pending certificate is checked this long after the request (and by every daily scan)."""
CRL_VALIDITY = dt.timedelta(days=7)
CRL_REFRESH_BEFORE = dt.timedelta(days=2)
KEY_CONTEXT = "popcorn/certificates/private-key"


# --------------------------------------------------------------------------- helpers


def key_store() -> KeyStore:
    """Keys are sealed under the installation's secret; a database dump alone reveals none."""
    return KeyStore(get_settings().effective_secret_key, context=KEY_CONTEXT)


def _seal(pem: str, fingerprint: str) -> str:
    return key_store().encrypt(pem, associated_data=fingerprint.encode())


def _unseal(envelope: str, fingerprint: str) -> str:
    return key_store().decrypt_text(envelope, associated_data=fingerprint.encode())


@contextmanager
def _engine_errors() -> Iterator[None]:
    """Engine refusals are the caller's bad input: a 422 naming the field."""
    try:
        yield
    except ca.CertificateError as exc:
        message = str(exc)
        field = message.split(":", 1)[0] if ":" in message else "input"
        raise InvalidInput(message, details={"field": field}) from exc


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("*", "star")).strip("-")
    return slug[:120] or "certificate"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


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


def _certificate_audit(row: Certificate) -> dict[str, Any]:
    return {
        "name": row.name,
        "status": row.status,
        "authority_id": row.authority_id,
        "serial_hex": row.serial_hex,
        "common_name": row.common_name,
        "domains": list(row.domains or []),
        "owner": row.owner,
        "team": row.team,
        "not_after": _iso(row.not_after),
        "replaced_by_id": row.replaced_by_id,
        "rotate_before_days": row.rotate_before_days,
    }


def _authority_audit(row: Authority) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
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


def _event_payload(row: Certificate, now: dt.datetime | None = None) -> dict[str, Any]:
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
        "not_after": _iso(row.not_after),
        "days_left": days_left(row.not_after, now),
        "status": effective_status(row, now),
    }


# --------------------------------------------------------------------------- authorities


def get_authority(*, session: Session, ref: int | str, lock: bool = False) -> Authority:
    """An authority by id or name."""
    row: Authority | None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = session.get(Authority, int(ref), with_for_update=lock)
    else:
        stmt = select(Authority).where(Authority.name == ref)
        row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFound(f"no authority {ref!r}", details={"authority": ref})
    return row


def list_authorities(*, session: Session) -> list[Authority]:
    return list(session.scalars(select(Authority).order_by(Authority.id)))


def public_base_url(row: Authority) -> str | None:
    """Where TLS clients reach this installation: the authority's URL, else the setting."""
    base = row.public_base_url or getattr(get_settings(), "public_url", None)
    return str(base).rstrip("/") if base else None


def crl_url(row: Authority) -> str | None:
    base = public_base_url(row)
    return f"{base}/pki/crl/{row.id}.crl" if base and row.kind != "external" else None


def ocsp_url(row: Authority) -> str | None:
    base = public_base_url(row)
    return f"{base}/pki/ocsp/{row.id}" if base and row.kind != "external" else None


def ca_issuers_url(row: Authority) -> str | None:
    base = public_base_url(row)
    return f"{base}/pki/ca/{row.id}.crt" if base and row.certificate_pem else None


def policy_of(row: Authority) -> ca.AuthorityPolicy:
    with _engine_errors():
        return ca.AuthorityPolicy(
            max_validity_days=row.max_validity_days,
            allowed_dns_suffixes=tuple(row.allowed_dns_suffixes)
            if row.allowed_dns_suffixes is not None
            else None,
            allowed_ip_networks=tuple(row.allowed_ip_networks)
            if row.allowed_ip_networks is not None
            else None,
            crl_url=crl_url(row),
            ocsp_url=ocsp_url(row),
            ca_issuers_url=ca_issuers_url(row),
        )


def signing_authority(row: Authority) -> ca.Authority:
    """The engine's view of a stored CA, with its key opened from the key store."""
    if row.private_key_encrypted is None:
        raise Conflict(
            f"authority {row.name!r} has no signing key in Popcorn", details={"authority": row.id}
        )
    certificate = ca.load_certificate(row.certificate_pem)
    key = ca.load_private_key(_unseal(row.private_key_encrypted, row.sha256_fingerprint))
    chain = tuple(ca.parse_pem_bundle(row.chain_pem)) if row.chain_pem.strip() else ()
    return ca.Authority(certificate, key, chain, policy_of(row))


def issuer_for(row: Authority) -> ca.IssuerPlugin:
    factory = ISSUERS.get(row.plugin)
    if factory is None:
        raise Conflict(
            f"issuer plugin {row.plugin!r} of authority {row.name!r} is not installed",
            details={"plugin": row.plugin, "installed": sorted(ISSUERS)},
        )
    signing = signing_authority(row) if row.plugin == LOCAL_ISSUER else None
    certificate = ca.load_certificate(row.certificate_pem) if row.certificate_pem else None
    return factory(IssuerContext(row.name, dict(row.options or {}), certificate, signing))


def _store_authority(row: Authority, made: ca.Authority) -> None:
    info = ca.certificate_info(made.certificate)
    row.certificate_pem = made.certificate_pem
    row.chain_pem = made.chain_pem
    row.subject = info.subject
    row.serial_hex = info.serial_hex
    row.sha256_fingerprint = info.sha256_fingerprint
    row.not_before = info.not_before
    row.not_after = info.not_after
    row.key_type = f"{info.key_type}-{info.key_size}"
    row.private_key_encrypted = _seal(made.private_key_pem(), info.sha256_fingerprint)


def create_authority(*, session: Session, spec: AuthorityCreate) -> Authority:
    """A root or intermediate with a new key, an imported CA, or an external issuer."""
    if session.scalar(select(Authority.id).where(Authority.name == spec.name)) is not None:
        raise Conflict(f"an authority named {spec.name!r} exists", details={"name": spec.name})
    now = utcnow()
    row = Authority(
        name=spec.name,
        kind=spec.kind,
        plugin=spec.plugin or LOCAL_ISSUER,
        description=spec.description,
        max_validity_days=spec.max_validity_days,
        allowed_dns_suffixes=spec.allowed_dns_suffixes,
        allowed_ip_networks=spec.allowed_ip_networks,
        public_base_url=spec.public_base_url,
        rotate_before_days=spec.rotate_before_days,
        options=spec.options,
        created_by=current_actor().name,
        created_at=now,
        updated_at=now,
    )
    policy_of(row)  # refuse a bad policy before any key is made
    subject = ca.Subject(
        common_name=spec.common_name or spec.name[:64],
        organization=spec.organization,
        organizational_unit=spec.organizational_unit,
        country=spec.country,
    )
    with _engine_errors():
        if spec.kind == "root":
            made = ca.create_root_authority(
                subject,
                key_type=spec.key_type,
                validity_days=spec.validity_days,
                path_length=spec.path_length,
            )
            _store_authority(row, made)
        elif spec.kind == "intermediate":
            assert spec.parent is not None
            parent = get_authority(session=session, ref=spec.parent)
            if parent.kind == "external":
                raise InvalidInput(
                    f"parent: {parent.name!r} is an external authority and cannot sign here",
                    details={"field": "parent"},
                )
            made = ca.create_intermediate_authority(
                signing_authority(parent),
                subject,
                key_type=spec.key_type,
                validity_days=spec.validity_days,
                path_length=spec.path_length if spec.path_length is not None else 0,
            )
            row.parent_id = parent.id
            _store_authority(row, made)
        elif spec.kind == "imported":
            made = ca.import_authority(
                spec.certificate_pem or "",
                spec.private_key_pem or "",
                key_password=spec.key_password.encode() if spec.key_password else None,
                chain_pem=spec.chain_pem,
            )
            _store_authority(row, made)
        else:
            if row.plugin == LOCAL_ISSUER or row.plugin not in ISSUERS:
                raise InvalidInput(
                    f"plugin: {row.plugin!r} is not an installed external issuer",
                    details={"field": "plugin", "installed": sorted(set(ISSUERS) - {LOCAL_ISSUER})},
                )
            if spec.certificate_pem:
                cert = ca.load_certificate(spec.certificate_pem)
                info = ca.certificate_info(cert)
                row.certificate_pem = ca.certificate_to_pem(cert)
                row.chain_pem = spec.chain_pem or ""
                row.subject = info.subject
                row.serial_hex = info.serial_hex
                row.sha256_fingerprint = info.sha256_fingerprint
                row.not_before, row.not_after = info.not_before, info.not_after
    if row.sha256_fingerprint and session.scalar(
        select(Authority.id).where(Authority.sha256_fingerprint == row.sha256_fingerprint)
    ):
        raise Conflict(
            "this CA certificate is already an authority", details={"field": "certificate_pem"}
        )
    session.add(row)
    session.flush()
    record_change(session, "create", "certificate_authority", row.id, after=_authority_audit(row))
    emit(
        session,
        "certificates.authority.created",
        "certificate_authority",
        row.id,
        {"name": row.name, "kind": row.kind, "plugin": row.plugin},
    )
    return row


def update_authority(*, session: Session, ref: int | str, spec: AuthorityUpdate) -> Authority:
    row = get_authority(session=session, ref=ref, lock=True)
    before = _authority_audit(row)
    for field, value in spec.model_dump(exclude_unset=True).items():
        setattr(row, field, value)
    policy_of(row)
    row.updated_at = utcnow()
    record_change(
        session,
        "update",
        "certificate_authority",
        row.id,
        before=before,
        after=_authority_audit(row),
    )
    return row


def authority_read(row: Authority) -> AuthorityRead:
    return AuthorityRead.model_validate(row).model_copy(
        update={"crl_url": crl_url(row), "ocsp_url": ocsp_url(row)}
    )


def ca_bundle(*, session: Session, authority: int | str | Authority) -> str:
    """The authority's certificate and its issuers up to the root: what clients trust."""
    row = (
        authority
        if isinstance(authority, Authority)
        else get_authority(session=session, ref=authority)
    )
    if not row.certificate_pem:
        raise Conflict(f"authority {row.name!r} has no CA certificate stored")
    return row.certificate_pem + row.chain_pem


def ca_certificate_der(*, session: Session, authority_id: int) -> bytes:
    row = get_authority(session=session, ref=authority_id)
    if not row.certificate_pem:
        raise NotFound(f"authority {authority_id} has no CA certificate")
    return ca.load_certificate(row.certificate_pem).public_bytes(serialization.Encoding.DER)


# --------------------------------------------------------------------------- certificates


def get_certificate(*, session: Session, certificate_id: int, lock: bool = False) -> Certificate:
    row = session.get(Certificate, certificate_id, with_for_update=lock)
    if row is None:
        raise NotFound(f"no certificate {certificate_id}", details={"id": certificate_id})
    return row


def certificate_read(row: Certificate, now: dt.datetime | None = None) -> CertificateRead:
    now = now or utcnow()
    return CertificateRead.model_validate(row).model_copy(
        update={"status": effective_status(row, now), "days_left": days_left(row.not_after, now)}
    )


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
    return f"{_slug(label)}-{row.not_after:%Y%m%d}-{row.serial_hex[-12:].lower()}"


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
class _Meta:
    name: str | None = None
    owner: str = ""
    team: str = ""
    description: str = ""
    rotate_before_days: int | None = None


def _issue(
    session: Session, authority: Authority, request: ca.CertificateRequest, meta: _Meta
) -> Certificate:
    """Sign (or start signing) under `authority` and record the result in the inventory."""
    plugin = issuer_for(authority)
    with _engine_errors():
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
        row.name = _unique_name(
            session, meta.name, f"{_slug(label)}-pending-{secrets.token_hex(4)}"
        )
    else:
        _record_issued(row, result)
        row.name = _unique_name(session, meta.name, _default_name(row.common_name or label, row))
    session.add(row)
    session.flush()
    if row.status == "pending":
        from popcorn.jobs import enqueue

        enqueue(session, "certificates.complete_pending", delay_seconds=PENDING_CHECK_SECONDS)
    record_change(session, "issue", "certificate", row.id, after=_certificate_audit(row))
    emit(
        session,
        "certificates.certificate.pending"
        if row.status == "pending"
        else "certificates.certificate.issued",
        "certificate",
        row.id,
        _event_payload(row, now),
    )
    return row


def _record_issued(row: Certificate, issued: ca.IssuedCertificate) -> None:
    info = _fill(row, issued.certificate, issued.chain_pem)
    row.status = "active"
    row.external_id = issued.external_id or row.external_id
    if issued.private_key_pem is not None:
        row.private_key_encrypted = _seal(issued.private_key_pem, info.sha256_fingerprint)


def issue_certificate(*, session: Session, spec: CertificateIssue) -> Certificate:
    """Issue under an authority's policy, then deploy to the named destinations."""
    authority = get_authority(session=session, ref=spec.authority)
    destinations = [get_destination(session=session, ref=ref) for ref in spec.destinations]
    validity = spec.validity_days or min(DEFAULT_VALIDITY_DAYS, authority.max_validity_days)
    request = ca.CertificateRequest(
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
    meta = _Meta(spec.name, spec.owner, spec.team, spec.description, spec.rotate_before_days)
    row = _issue(session, authority, request, meta)
    for destination in destinations:
        session.add(CertificateDestination(certificate_id=row.id, destination_id=destination.id))
    session.flush()
    if destinations and row.status == "active":
        deploy_certificate(session=session, certificate_id=row.id)
    return row


def _matching_authority(
    authorities: Sequence[tuple[int, x509.Certificate]], certificate: x509.Certificate
) -> int | None:
    for authority_id, ca_cert in authorities:
        if certificate.issuer == ca_cert.subject and ca.is_issued_by(certificate, ca_cert):
            return authority_id
    return None


def _authority_index(session: Session) -> list[tuple[int, x509.Certificate]]:
    rows = session.execute(
        select(Authority.id, Authority.certificate_pem).where(Authority.certificate_pem != "")
    )
    return [(authority_id, ca.load_certificate(pem)) for authority_id, pem in rows]


def import_certificate(
    *, session: Session, spec: CertificateImport, source: str = "imported"
) -> Certificate:
    """Adopt an existing certificate (and key) into the inventory, ordered with its chain."""
    with _engine_errors():
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
    return _record_foreign(
        session,
        leaf,
        ordered[1:],
        key_pem,
        source=source,
        meta=_Meta(spec.name, spec.owner, spec.team, spec.description, spec.rotate_before_days),
    )


def _record_foreign(
    session: Session,
    leaf: x509.Certificate,
    chain: Sequence[x509.Certificate],
    key_pem: str | None,
    *,
    source: str,
    meta: _Meta,
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
        authorities if authorities is not None else _authority_index(session), leaf
    )
    if key_pem is not None:
        row.private_key_encrypted = _seal(key_pem, info.sha256_fingerprint)
    label = info.common_name or (row.domains[0] if row.domains else info.sha256_fingerprint[:12])
    row.name = _unique_name(session, meta.name, _default_name(label, row))
    session.add(row)
    session.flush()
    record_change(session, "import", "certificate", row.id, after=_certificate_audit(row))
    emit(
        session,
        f"certificates.certificate.{source}",
        "certificate",
        row.id,
        _event_payload(row, now),
    )
    return row


def update_certificate(
    *, session: Session, certificate_id: int, spec: CertificateUpdate
) -> Certificate:
    row = get_certificate(session=session, certificate_id=certificate_id, lock=True)
    before = _certificate_audit(row)
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
    after = _certificate_audit(row)
    if refs is not None:
        after["destinations"] = sorted(str(r) for r in refs)
    record_change(session, "update", "certificate", row.id, before=before, after=after)
    return row


# --------------------------------------------------------------------------- revocation


def revoke_certificate(
    *, session: Session, certificate_id: int, reason: str = "unspecified"
) -> Certificate:
    """Revoke at the issuer and publish a new CRL in the same transaction."""
    row = get_certificate(session=session, certificate_id=certificate_id, lock=True)
    if row.status == "revoked":
        raise Conflict(
            f"certificate {row.id} was already revoked at {_iso(row.revoked_at)}",
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
    with _engine_errors():
        entry = issuer_for(authority).revoke_certificate(
            ca.load_certificate(row.certificate_pem), reason=reason
        )
    before = _certificate_audit(row)
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
        after={**_certificate_audit(row), "reason": row.revocation_reason},
    )
    emit(
        session,
        "certificates.certificate.revoked",
        "certificate",
        row.id,
        {**_event_payload(row), "reason": row.revocation_reason},
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


def publish_crl(*, session: Session, authority: Authority | int) -> bytes:
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


def current_crl(*, session: Session, authority_id: int) -> bytes | None:
    """The stored CRL while it is fresh; None when it must be (re)published first."""
    row = get_authority(session=session, ref=authority_id)
    if row.private_key_encrypted is None:
        raise NotFound(f"authority {authority_id} does not publish a CRL in Popcorn")
    if row.crl_der is None or row.crl_next_update is None:
        return None
    if row.crl_next_update - utcnow() < CRL_REFRESH_BEFORE:
        return None
    return row.crl_der


def ocsp_response(*, session: Session, authority_id: int, request_der: bytes) -> bytes:
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


# --------------------------------------------------------------------------- export


def export_certificate(*, session: Session, certificate_id: int, spec: Export) -> ExportRead:
    """The certificate with its private key, as PEM or PKCS#12; always audited."""
    row = get_certificate(session=session, certificate_id=certificate_id)
    if row.status == "pending":
        raise Conflict(f"certificate {row.id} is pending and has nothing to export yet")
    key_pem = (
        _unseal(row.private_key_encrypted, row.sha256_fingerprint or "")
        if row.private_key_encrypted is not None
        else None
    )
    filename = _slug(row.name)
    if spec.format == "pem":
        result = ExportRead(
            format="pem",
            filename=f"{filename}.pem",
            certificate_pem=row.certificate_pem,
            chain_pem=row.chain_pem,
            private_key_pem=key_pem,
        )
    else:
        if key_pem is None:
            raise Conflict(
                f"certificate {row.id} has no private key in Popcorn (it was issued from a CSR "
                "or imported without one); PKCS#12 needs the key"
            )
        with _engine_errors():
            chain = ca.parse_pem_bundle(row.chain_pem) if row.chain_pem.strip() else []
            data = export_pkcs12(
                ca.load_certificate(row.certificate_pem),
                ca.load_private_key(key_pem),
                chain,
                password=spec.password or "",
                friendly_name=row.name,
                legacy=spec.legacy,
            )
        result = ExportRead(
            format="pkcs12",
            filename=f"{filename}.p12",
            pkcs12_base64=base64.b64encode(data).decode("ascii"),
        )
    record_change(
        session,
        "export",
        "certificate",
        row.id,
        after={"format": spec.format, "private_key": key_pem is not None, "name": row.name},
    )
    emit(
        session,
        "certificates.certificate.exported",
        "certificate",
        row.id,
        {"name": row.name, "format": spec.format, "private_key": key_pem is not None},
    )
    return result


# --------------------------------------------------------------------------- destinations


def get_destination(*, session: Session, ref: int | str) -> Destination:
    row: Destination | None
    if isinstance(ref, int) or ref.isdigit():
        row = session.get(Destination, int(ref))
    else:
        row = session.scalar(select(Destination).where(Destination.name == ref))
    if row is None:
        raise NotFound(f"no destination {ref!r}", details={"destination": ref})
    return row


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
    base = _slug(row.common_name or row.name)
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
        _unseal(row.private_key_encrypted, row.sha256_fingerprint or "")
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
            landed = build_destination(target.kind, dict(target.options), secret).deploy(bundle)
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
    new = _issue(
        session,
        authority,
        request,
        _Meta(None, old.owner, old.team, old.description, old.rotate_before_days),
    )
    for destination_id in session.scalars(
        select(CertificateDestination.destination_id).where(
            CertificateDestination.certificate_id == old.id
        )
    ):
        session.add(CertificateDestination(certificate_id=new.id, destination_id=destination_id))
    before = _certificate_audit(old)
    old.replaced_by_id = new.id
    old.updated_at = utcnow()
    session.flush()
    record_change(
        session, "rotate", "certificate", old.id, before=before, after=_certificate_audit(old)
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
    before = _certificate_audit(old)
    old.status = "replaced"
    old.updated_at = utcnow()
    record_change(
        session, "replace", "certificate", old.id, before=before, after=_certificate_audit(old)
    )
    emit(
        session,
        "certificates.certificate.rotated",
        "certificate",
        old.id,
        {
            **_event_payload(old),
            "replaced_by_id": new.id,
            "new_serial": new.serial_hex,
            "new_not_after": _iso(new.not_after),
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
        before = _certificate_audit(row)
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
                after={**_certificate_audit(row), "error": row.last_error},
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
        _record_issued(row, issued)
        row.updated_at = utcnow()
        session.flush()
        counts["issued"] += 1
        record_change(
            session, "issue", "certificate", row.id, before=before, after=_certificate_audit(row)
        )
        emit(session, "certificates.certificate.issued", "certificate", row.id, _event_payload(row))
        old = session.scalar(select(Certificate).where(Certificate.replaced_by_id == row.id))
        if old is not None:
            finish_rotation(session=session, old=old)
        elif session.scalar(
            select(CertificateDestination.id).where(CertificateDestination.certificate_id == row.id)
        ):
            deploy_certificate(session=session, certificate_id=row.id)
    return counts


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
    peers get from `ca_bundle`.
    """
    row = issue_certificate(
        session=session,
        spec=CertificateIssue(
            authority=authority,
            common_name=agent_name,
            dns_names=list(dns_names),
            ip_addresses=list(ip_addresses),
            profile=profile,
            validity_days=validity_days,
            owner=f"bolt-agent:{agent_name}",
            description=f"Bolt agent {agent_name} ({profile})",
        ),
    )
    if row.status != "active" or row.private_key_encrypted is None:
        raise Conflict(f"authority {authority!r} did not issue the agent certificate at once")
    chain = ca.parse_pem_bundle(row.chain_pem) if row.chain_pem.strip() else []
    intermediates = [c for c in chain if c.subject != c.issuer]
    return AgentCertificate(
        row.certificate_pem,
        _unseal(row.private_key_encrypted, row.sha256_fingerprint or ""),
        ca.certificates_to_pem(intermediates),
        row.id,
    )


# --------------------------------------------------------------------------- discovery


def get_source(*, session: Session, ref: int | str) -> Source:
    row: Source | None
    if isinstance(ref, int) or ref.isdigit():
        row = session.get(Source, int(ref))
    else:
        row = session.scalar(select(Source).where(Source.name == ref))
    if row is None:
        raise NotFound(f"no discovery source {ref!r}", details={"source": ref})
    return row


def list_sources(*, session: Session) -> list[Source]:
    return list(session.scalars(select(Source).order_by(Source.id)))


def inventory_endpoints(
    *, session: Session, scope: dict[str, Any], ports: Sequence[int]
) -> list[str]:
    """host:port of the primary address of every inventory device in `scope`, on each port.

    Unknown sites, regions or devices raise NotFound (from the inventory), so a
    typo is not mistaken for an empty sweep.
    """
    from popcorn import domains

    domains.require("inventory", "inventory discovery sources sweep its devices")
    # the inventory facade ships with the inventory domain (its owner writes it)
    from popcorn.inventory import api as inventory_api  # type: ignore[attr-defined,unused-ignore]

    endpoints: list[str] = []
    for device in inventory_api.devices_for_scope(session=session, **scope):
        address = device.primary_ip4 or device.primary_ip6
        if not address:
            continue
        host = address.split("/", 1)[0]
        shown = f"[{host}]" if ":" in host else host
        endpoints += [f"{shown}:{port}" for port in ports]
    return endpoints


def create_source(*, session: Session, spec: SourceCreate) -> Source:
    """Endpoints (or an inventory scope) to sweep, on a cron schedule if given."""
    from popcorn.certificates.discover import parse_endpoint
    from popcorn.jobs import create_schedule

    if session.scalar(select(Source.id).where(Source.name == spec.name)) is not None:
        raise Conflict(
            f"a discovery source named {spec.name!r} exists", details={"name": spec.name}
        )
    options: dict[str, Any] = {"timeout": spec.timeout}
    if spec.kind == "inventory":
        assert spec.scope is not None
        options["scope"] = spec.scope.model_dump(exclude_none=True)
        options["ports"] = spec.ports
        inventory_endpoints(session=session, scope=options["scope"], ports=spec.ports)
    with _engine_errors():
        for text in spec.endpoints:
            parse_endpoint(text)
    row = Source(
        name=spec.name,
        kind=spec.kind,
        endpoints=spec.endpoints,
        options=options,
        owner=spec.owner,
        team=spec.team,
        created_at=utcnow(),
        last_summary={},
    )
    session.add(row)
    session.flush()
    if spec.cron:
        create_schedule(
            session=session,
            name=f"certificates.discover:{row.name}",
            task="certificates.discover",
            arguments={"source": row.id},
            cron=spec.cron,
        )
        row.options = {**row.options, "schedule": f"certificates.discover:{row.name}"}
    record_change(
        session,
        "create",
        "certificate_source",
        row.id,
        after={"name": row.name, "kind": row.kind, "options": row.options, "cron": spec.cron},
    )
    return row


def record_discovery(
    *,
    session: Session,
    results: Sequence[DiscoveryResult],
    source: Source | None = None,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Record what each endpoint served; certificates not yet known are imported as discovered."""
    now = now or utcnow()
    authorities = _authority_index(session)
    meta = _Meta(owner=source.owner if source else "", team=source.team if source else "")
    summary = {"endpoints": len(results), "ok": 0, "failed": 0, "new_certificates": 0, "changed": 0}
    for result in results:
        if result.endpoint is None:
            summary["failed"] += 1
            continue
        target = result.endpoint
        server_name = target.server_name or ""
        endpoint = session.scalar(
            select(Endpoint).where(
                Endpoint.host == target.host,
                Endpoint.port == target.port,
                Endpoint.server_name == server_name,
            )
        )
        if endpoint is None:
            endpoint = Endpoint(host=target.host, port=target.port, server_name=server_name)
            session.add(endpoint)
        endpoint.last_checked_at = now
        if source is not None:
            endpoint.source_id = source.id
        if not result.ok or result.leaf is None:
            endpoint.last_error = result.error or "no certificate"
            summary["failed"] += 1
            continue
        summary["ok"] += 1
        fingerprint = ca.certificate_info(result.leaf).sha256_fingerprint
        certificate_id = session.scalar(
            select(Certificate.id).where(Certificate.sha256_fingerprint == fingerprint)
        )
        if certificate_id is None:
            found = _record_foreign(
                session,
                result.leaf,
                result.chain[1:],
                None,
                source="discovered",
                meta=meta,
                authorities=authorities,
            )
            certificate_id = found.id
            summary["new_certificates"] += 1
        if endpoint.certificate_id is not None and endpoint.certificate_id != certificate_id:
            summary["changed"] += 1
            session.flush()
            emit(
                session,
                "certificates.endpoint.changed",
                "certificate_endpoint",
                endpoint.id,
                {
                    "endpoint": str(target),
                    "previous_certificate_id": endpoint.certificate_id,
                    "certificate_id": certificate_id,
                },
            )
        endpoint.certificate_id = certificate_id
        endpoint.last_seen_at = now
        endpoint.tls_version = result.tls_version
        endpoint.cipher = result.cipher
        endpoint.last_error = ""
    session.flush()
    return summary


def run_discovery(
    *,
    endpoints: Sequence[str] = (),
    source: int | str | None = None,
    timeout: float | None = None,
    max_workers: int = 64,
) -> dict[str, Any]:
    """Sweep a source (or a list of host:port) and record the results.

    Opens its own transactions: the network sweep runs between them, so a
    slow host never holds a database transaction open.
    """
    source_id: int | None = None
    targets = list(endpoints)
    if source is not None:
        with session_scope(readonly=True) as session:
            found = get_source(session=session, ref=source)
            source_id = found.id
            targets = list(found.endpoints)
            if found.kind == "inventory":
                targets = inventory_endpoints(
                    session=session,
                    scope=dict(found.options.get("scope") or {}),
                    ports=found.options.get("ports") or [443],
                )
            timeout = timeout or float(found.options.get("timeout", 5.0))
    if not targets and source_id is None:
        raise InvalidInput("endpoints: nothing to discover", details={"field": "endpoints"})
    with _engine_errors():
        results = discover(targets, timeout=timeout or 5.0, max_workers=max_workers)
    with session_scope() as session:
        row = session.get(Source, source_id) if source_id is not None else None
        summary = record_discovery(session=session, results=results, source=row)
        if row is not None:
            row.last_run_at = utcnow()
            row.last_summary = summary
        record_change(
            session,
            "discover",
            "certificate_source",
            source_id if source_id is not None else "adhoc",
            after=summary,
        )
    failures = [{"endpoint": r.target, "error": r.error} for r in results if not r.ok]
    return {**summary, "errors": failures[:100]}


def list_endpoints_query(params: ListParams) -> Select[Any]:
    allowed = {
        "host": Endpoint.host,
        "port": Endpoint.port,
        "server_name": Endpoint.server_name,
        "source_id": Endpoint.source_id,
        "certificate_id": Endpoint.certificate_id,
        "last_error": Endpoint.last_error,
        "last_seen_at": Endpoint.last_seen_at,
    }
    return select(Endpoint).where(*filter_clauses(params.filters, allowed))


# --------------------------------------------------------------------------- expiry scan


def _insert_notifications(
    session: Session, certificate_ids: Sequence[int], kind: str, interval: int, now: dt.datetime
) -> set[int]:
    """Insert, skipping any another scan wrote first; returns the ids this call recorded."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    table = cast(Table, Notification.__table__)
    stmt = (
        dialect.insert(table)
        .on_conflict_do_nothing(index_elements=["certificate_id", "kind", "interval_days"])
        .returning(table.c.certificate_id)
    )
    rows = [
        {"certificate_id": cid, "kind": kind, "interval_days": interval, "sent_at": now}
        for cid in certificate_ids
    ]
    return set(session.connection().execute(stmt, rows).scalars())


def _emit_many(
    session: Session, event_type: str, events: Sequence[tuple[int, dict[str, Any]]]
) -> None:
    """`outbox.emit` for many certificates in one INSERT (a first scan may warn thousands).

    Same rows as `emit` writes (actor, request id, time), without building an
    ORM object per event.
    """
    if not events:
        return
    actor = current_actor()
    now = utcnow()
    session.connection().execute(
        insert(cast(Table, OutboxEvent.__table__)),
        [
            {
                "type": event_type,
                "object_type": "certificate",
                "object_id": str(object_id),
                "payload": payload,
                "actor": actor.name,
                "request_id": actor.request_id,
                "created_at": now,
            }
            for object_id, payload in events
        ],
    )


def send_expiry_notifications(
    *,
    session: Session,
    intervals: Sequence[int] = DEFAULT_INTERVALS,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """One event per certificate and interval: the nearest interval it is inside, and expired.

    A certificate first seen 5 days before expiry gets the 7-day warning
    only, not 30, 15 and 7 at once. The unique key on notifications makes
    this safe to run twice, or on two machines at once.
    """
    now = now or utcnow()
    tiers = sorted({int(i) for i in intervals}, reverse=True)
    windows: list[tuple[str, int, dt.datetime | None, dt.datetime]] = [("expired", 0, None, now)]
    for index, days in enumerate(tiers):
        nearer = tiers[index + 1] if index + 1 < len(tiers) else 0
        windows.append(
            ("expiring", days, now + dt.timedelta(days=nearer), now + dt.timedelta(days=days))
        )
    counts = {"expiring": 0, "expired": 0}
    for kind, interval, lower, upper in windows:
        sent = exists().where(
            Notification.certificate_id == Certificate.id,
            Notification.kind == kind,
            Notification.interval_days == interval,
        )
        stmt = select(
            Certificate.id,
            Certificate.name,
            Certificate.common_name,
            Certificate.domains,
            Certificate.owner,
            Certificate.team,
            Certificate.not_after,
            Certificate.authority_id,
            Certificate.serial_hex,
        ).where(Certificate.status == "active", Certificate.not_after <= upper, ~sent)
        if lower is not None:
            stmt = stmt.where(Certificate.not_after > lower)
        due = session.execute(stmt).all()
        if not due:
            continue
        recorded = _insert_notifications(session, [r.id for r in due], kind, interval, now)
        _emit_many(
            session,
            f"certificates.certificate.{kind}",
            [
                (
                    r.id,
                    {
                        "certificate_id": r.id,
                        "name": r.name,
                        "common_name": r.common_name,
                        "domains": list(r.domains or []),
                        "owner": r.owner,
                        "team": r.team,
                        "authority_id": r.authority_id,
                        "serial": r.serial_hex,
                        "not_after": _iso(r.not_after),
                        "days_left": days_left(r.not_after, now),
                        "interval_days": interval,
                    },
                )
                for r in due
                if r.id in recorded
            ],
        )
        counts[kind] += len(recorded)
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
        except (InvalidInput, Conflict, NotFound) as exc:
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


def list_notifications_query(params: ListParams) -> Select[Any]:
    allowed = {
        "certificate_id": Notification.certificate_id,
        "kind": Notification.kind,
        "interval_days": Notification.interval_days,
        "sent_at": Notification.sent_at,
    }
    return select(Notification).where(*filter_clauses(params.filters, allowed))


# --------------------------------------------------------------------------- metrics

SOONEST_EXPIRING = 20
EXPIRY_BUCKETS = (0, 1, 7, 15, 30, 90)


def collect_metrics() -> Iterator[Any]:
    """Scrape-time gauges: certificates by status, expiry buckets, the soonest to expire."""
    from prometheus_client.core import GaugeMetricFamily

    now = utcnow()
    by_status = GaugeMetricFamily(
        "popcorn_certificates", "Certificates in the inventory by status", labels=["status"]
    )
    buckets = GaugeMetricFamily(
        "popcorn_certificates_expiring_within_days",
        "In-use certificates (active, expiring, expired) expiring within N days (cumulative)",
        labels=["days"],
    )
    soonest = GaugeMetricFamily(
        "popcorn_certificate_expiry_days",
        f"Days until expiry of the {SOONEST_EXPIRING} in-use certificates expiring soonest",
        labels=["id", "name", "common_name"],
    )
    with session_scope(readonly=True) as session:
        status = status_expression(now)
        counts = dict(session.execute(select(status, func.count()).group_by(status)).all())
        for name in STATUSES:
            by_status.add_metric([name], float(counts.get(name, 0)))
        sums = session.execute(
            select(
                *[
                    func.count().filter(Certificate.not_after <= now + dt.timedelta(days=d))
                    for d in EXPIRY_BUCKETS
                ]
            ).where(Certificate.status == "active")
        ).one()
        for days, count in zip(EXPIRY_BUCKETS, sums, strict=True):
            buckets.add_metric([str(days)], float(count or 0))
        rows = session.execute(
            select(Certificate.id, Certificate.name, Certificate.common_name, Certificate.not_after)
            .where(Certificate.status == "active", Certificate.not_after.is_not(None))
            .order_by(Certificate.not_after)
            .limit(SOONEST_EXPIRING)
        )
        for cid, name, common_name, not_after in rows:
            left = (not_after - now).total_seconds() / 86400 if not_after else 0.0
            soonest.add_metric([str(cid), name, common_name], round(left, 3))
    yield by_status
    yield buckets
    yield soonest
