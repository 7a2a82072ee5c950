"""Creating, chaining and importing certificate authorities, and their issuing policy."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from popcorn.certificates.ca.keys import (
    CLOCK_SKEW,
    AuthorityError,
    CAPrivateKey,
    CAPublicKey,
    CertificateError,
    IPNetwork,
    IssuanceError,
    KeyType,
    _check_public_key,
    _common_name,
    _is_ca,
    _is_self_signed,
    _to_bytes,
    certificate_to_pem,
    certificates_to_pem,
    generate_private_key,
    keys_match,
    load_private_key,
    order_chain,
    parse_pem_bundle,
    private_key_to_pem,
    random_serial,
    signing_hash,
)

# --------------------------------------------------------------------------- authorities


@dataclass(frozen=True)
class Subject:
    """Distinguished name fields Popcorn lets users set."""

    common_name: str
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    state: str | None = None
    locality: str | None = None

    def to_name(self) -> x509.Name:
        if not self.common_name or len(self.common_name) > 64:
            raise IssuanceError("common_name: must be 1 to 64 characters")
        if self.country is not None and not re.fullmatch(r"[A-Z]{2}", self.country):
            raise IssuanceError(f"country: {self.country!r} is not a two-letter code")
        parts = [
            ("country", NameOID.COUNTRY_NAME, self.country),
            ("state", NameOID.STATE_OR_PROVINCE_NAME, self.state),
            ("locality", NameOID.LOCALITY_NAME, self.locality),
            ("organization", NameOID.ORGANIZATION_NAME, self.organization),
            ("organizational_unit", NameOID.ORGANIZATIONAL_UNIT_NAME, self.organizational_unit),
            ("common_name", NameOID.COMMON_NAME, self.common_name),
        ]
        for field_name, _, value in parts:
            if value is not None and not 0 < len(value) <= 64:
                raise IssuanceError(f"{field_name}: must be 1 to 64 characters")
        return x509.Name([x509.NameAttribute(oid, v) for _, oid, v in parts if v is not None])


@dataclass(frozen=True)
class AuthorityPolicy:
    """Limits an authority enforces on what it issues, and URLs it writes into certificates.

    `allowed_dns_suffixes` / `allowed_ip_networks`: None allows any name or
    address, an empty tuple allows none.
    """

    max_validity_days: int = 397
    allowed_dns_suffixes: tuple[str, ...] | None = None
    allowed_ip_networks: tuple[str, ...] | None = None
    crl_url: str | None = None
    ocsp_url: str | None = None
    ca_issuers_url: str | None = None

    def __post_init__(self) -> None:
        if self.max_validity_days < 1:
            raise AuthorityError("max_validity_days: must be at least 1")
        if self.allowed_ip_networks is not None:
            for net in self.allowed_ip_networks:
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    raise AuthorityError(
                        f"allowed_ip_networks: {net!r} is not an IP network"
                    ) from None
        for name, url in (
            ("crl_url", self.crl_url),
            ("ocsp_url", self.ocsp_url),
            ("ca_issuers_url", self.ca_issuers_url),
        ):
            if url is not None and not re.match(r"^https?://\S+$", url):
                raise AuthorityError(f"{name}: {url!r} is not an http(s) URL")

    def networks(self) -> list[IPNetwork] | None:
        if self.allowed_ip_networks is None:
            return None
        return [ipaddress.ip_network(n, strict=False) for n in self.allowed_ip_networks]


@dataclass(frozen=True)
class Authority:
    """A CA Popcorn can sign with: its certificate, key, issuers above it, and policy."""

    certificate: x509.Certificate
    private_key: CAPrivateKey
    chain: tuple[x509.Certificate, ...] = ()
    policy: AuthorityPolicy = field(default_factory=AuthorityPolicy)

    @property
    def name(self) -> str:
        return _common_name(self.certificate.subject) or self.certificate.subject.rfc4514_string()

    @property
    def certificate_pem(self) -> str:
        return certificate_to_pem(self.certificate)

    @property
    def chain_pem(self) -> str:
        """Issuers above this authority, nearest first (empty for a root)."""
        return certificates_to_pem(self.chain)

    @property
    def path(self) -> tuple[x509.Certificate, ...]:
        """This authority's certificate followed by its issuers up to the root."""
        return (self.certificate, *self.chain)

    def private_key_pem(self, password: bytes | None = None) -> str:
        return private_key_to_pem(self.private_key, password)


def _path_length(certificate: x509.Certificate) -> int | None:
    return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length


def _ski(key: CAPublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            _check_public_key(issuer.public_key(), "issuer")
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _revocation_extensions(
    builder: x509.CertificateBuilder, policy: AuthorityPolicy
) -> x509.CertificateBuilder:
    """CRL distribution point and AIA (OCSP, CA issuers) from the issuer's policy."""
    if policy.crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(policy.crl_url)], None, None, None
                    )
                ]
            ),
            critical=False,
        )
    access = []
    if policy.ocsp_url:
        access.append(
            x509.AccessDescription(
                x509.AuthorityInformationAccessOID.OCSP,
                x509.UniformResourceIdentifier(policy.ocsp_url),
            )
        )
    if policy.ca_issuers_url:
        access.append(
            x509.AccessDescription(
                x509.AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(policy.ca_issuers_url),
            )
        )
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    return builder


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _now(now: dt.datetime | None) -> dt.datetime:
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        raise CertificateError("now: must be timezone-aware")
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def create_root_authority(
    subject: Subject | str,
    *,
    key_type: KeyType | str = KeyType.EC_P384,
    validity_days: int = 3650,
    path_length: int | None = None,
    policy: AuthorityPolicy | None = None,
    now: dt.datetime | None = None,
) -> Authority:
    """Create a self-signed root CA with a new key."""
    subject = Subject(subject) if isinstance(subject, str) else subject
    if not 1 <= validity_days <= 36500:
        raise AuthorityError("validity_days: must be between 1 and 36500")
    if path_length is not None and path_length < 0:
        raise AuthorityError("path_length: must be zero or positive")
    key = generate_private_key(key_type)
    name = _authority_name(subject)
    start = _now(now)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(_ski(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    cert = builder.sign(key, signing_hash(key))
    return Authority(cert, key, (), policy or AuthorityPolicy())


def _authority_name(subject: Subject) -> x509.Name:
    try:
        return subject.to_name()
    except IssuanceError as exc:
        raise AuthorityError(str(exc)) from None


INTERMEDIATE_VALIDITY_DAYS = 1825  # five years, clipped to the parent's expiry


def create_intermediate_authority(
    parent: Authority,
    subject: Subject | str,
    *,
    key_type: KeyType | str = KeyType.EC_P256,
    validity_days: int | None = None,
    path_length: int | None = 0,
    policy: AuthorityPolicy | None = None,
    now: dt.datetime | None = None,
) -> Authority:
    """Create an intermediate CA signed by `parent`, within its lifetime and path length.

    Without `validity_days` it lives `INTERMEDIATE_VALIDITY_DAYS` clipped to the parent's
    expiry, so an intermediate made with defaults right after its root is valid; an
    explicit `validity_days` that outlives the parent is refused rather than shortened.
    """
    subject = Subject(subject) if isinstance(subject, str) else subject
    parent_len = _path_length(parent.certificate)
    if parent_len == 0:
        raise AuthorityError(
            f"parent: {parent.name} has path length 0 and cannot sign intermediate authorities"
        )
    if path_length is not None and path_length < 0:
        raise AuthorityError("path_length: must be zero or positive")
    if parent_len is not None and (path_length is None or path_length >= parent_len):
        raise AuthorityError(f"path_length: must be below the parent's path length {parent_len}")
    if validity_days is not None and validity_days < 1:
        raise AuthorityError("validity_days: must be at least 1")
    start = _now(now)
    parent_end = parent.certificate.not_valid_after_utc
    if validity_days is None:
        end = min(start + dt.timedelta(days=INTERMEDIATE_VALIDITY_DAYS), parent_end)
        if end <= start:
            raise AuthorityError(f"parent: {parent.name} has expired ({parent_end.isoformat()})")
    else:
        end = start + dt.timedelta(days=validity_days)
        if end > parent_end:
            raise AuthorityError(
                f"validity_days: would end after the parent expires ({parent_end.isoformat()}); "
                "leave it out to end with the parent"
            )
    key = generate_private_key(key_type)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_authority_name(subject))
        .issuer_name(parent.certificate.subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(_ski(key.public_key()), critical=False)
        .add_extension(_aki(parent.certificate), critical=False)
    )
    builder = _revocation_extensions(builder, parent.policy)
    cert = builder.sign(parent.private_key, signing_hash(parent.private_key))
    return Authority(cert, key, parent.path, policy or AuthorityPolicy())


def import_authority(
    certificate_pem: bytes | str,
    private_key_pem: bytes | str,
    *,
    key_password: bytes | None = None,
    chain_pem: bytes | str | None = None,
    policy: AuthorityPolicy | None = None,
    now: dt.datetime | None = None,
) -> Authority:
    """Adopt an existing CA: the key must match, the certificate must be a valid CA."""
    certs = parse_pem_bundle(certificate_pem)
    if len(certs) != 1:
        raise AuthorityError(f"certificate: expected one certificate, found {len(certs)}")
    cert = certs[0]
    key = load_private_key(private_key_pem, key_password)
    if not keys_match(cert, key):
        raise AuthorityError("private_key: does not match the certificate's public key")
    _check_public_key(cert.public_key(), "certificate")
    if not _is_ca(cert):
        raise AuthorityError("certificate: is not a CA (basic constraints CA:TRUE missing)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise AuthorityError("certificate: key usage does not allow signing certificates")
    moment = _now(now)
    if cert.not_valid_after_utc <= moment:
        raise AuthorityError(f"certificate: expired on {cert.not_valid_after_utc.isoformat()}")
    chain: tuple[x509.Certificate, ...] = ()
    if chain_pem is not None and _to_bytes(chain_pem).strip():
        ordered = order_chain([cert, *parse_pem_bundle(chain_pem)])
        if ordered[0] != cert:
            raise AuthorityError("chain: the certificate is not the end of the chain")
        chain = tuple(ordered[1:])
    elif not _is_self_signed(cert):
        raise AuthorityError("chain: required for an authority that is not self-signed")
    return Authority(cert, key, chain, policy or AuthorityPolicy())
