"""Authorities: the CAs Popcorn signs with, their policies, bundles and CA certificates."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn.audit import record_change
from popcorn.certificates import ca
from popcorn.certificates.models import (
    Authority,
)
from popcorn.certificates.plugins import (
    ISSUERS,
    LOCAL_ISSUER,
    IssuerContext,
)
from popcorn.certificates.schemas import (
    AuthorityCreate,
    AuthorityRead,
    AuthorityUpdate,
)
from popcorn.certificates.service.common import authority_audit, engine_errors, seal, unseal
from popcorn.config import get_settings
from popcorn.context import current_actor
from popcorn.db import utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.lookup import get_by_ref
from popcorn.outbox import emit

# --------------------------------------------------------------------------- authorities

ROOT_VALIDITY_DAYS = 3650


def get_authority(*, session: Session, ref: int | str, lock: bool = False) -> Authority:
    """An authority by name, else by id; anything else (huge, Unicode digits) is a 404."""
    return get_by_ref(session, Authority, ref, label="authority", lock=lock)


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
    with engine_errors():
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
    key = ca.load_private_key(unseal(row.private_key_encrypted, row.sha256_fingerprint))
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
    row.private_key_encrypted = seal(made.private_key_pem(), info.sha256_fingerprint)


def create_authority(*, session: Session, spec: AuthorityCreate) -> Authority:
    """A root or intermediate with a new key, an imported CA, or an external issuer."""
    if session.scalar(select(Authority.id).where(Authority.name == spec.name)) is not None:
        raise Conflict(f"an authority named {spec.name!r} exists", details={"name": spec.name})
    now = utcnow()
    row = Authority(
        name=spec.name,
        kind=spec.kind,
        purpose=spec.purpose,
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
    with engine_errors():
        if spec.kind == "root":
            made = ca.create_root_authority(
                subject,
                key_type=spec.key_type,
                validity_days=spec.validity_days or ROOT_VALIDITY_DAYS,
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
    record_change(session, "create", "certificate_authority", row.id, after=authority_audit(row))
    emit(
        session,
        "certificates.authority.created",
        "certificate_authority",
        row.id,
        {"name": row.name, "kind": row.kind, "purpose": row.purpose, "plugin": row.plugin},
    )
    return row


def update_authority(*, session: Session, ref: int | str, spec: AuthorityUpdate) -> Authority:
    row = get_authority(session=session, ref=ref, lock=True)
    before = authority_audit(row)
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
        after=authority_audit(row),
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


def ca_certificate_der(*, session: Session, authority_id: int | str) -> bytes:
    row = get_authority(session=session, ref=authority_id)
    if not row.certificate_pem:
        raise NotFound(f"authority {authority_id} has no CA certificate")
    return ca.load_certificate(row.certificate_pem).public_bytes(serialization.Encoding.DER)


def authority_reads(*, session: Session) -> list[AuthorityRead]:
    return [authority_read(row) for row in list_authorities(session=session)]


def list_issuers() -> list[str]:
    """Slugs of the installed issuer plugins."""
    return sorted(ISSUERS)
