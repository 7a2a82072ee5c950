"""Popcorn's certificate authority engine.

Creates and imports authorities, issues TLS certificates (also the mutual-TLS
certificates of Bolt agents) under per-authority policy, extracts inventory
information from any certificate, and signs CRLs. Pure functions over
`cryptography` objects: the certificates slice stores the results.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CAPrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
CAPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MIN_RSA_BITS = 2048
SERIAL_BITS = 159
CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start this long before issuance so hosts with a slow clock accept them."""

_SUPPORTED_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"^(?:\*\.)?(?:{_DNS_LABEL}\.)*{_DNS_LABEL}$")


# --------------------------------------------------------------------------- errors


class CertificateError(ValueError):
    """Base of every error the certificate engine raises for bad input."""


class InvalidPEMError(CertificateError):
    """A certificate, key or bundle could not be parsed."""


class AuthorityError(CertificateError):
    """An authority cannot be created or imported as asked."""


class IssuanceError(CertificateError):
    """A certificate request was refused."""


class MalformedCSRError(IssuanceError):
    """The CSR is not parseable or its signature does not verify."""


class WeakKeyError(IssuanceError):
    """The public key is too weak or of an unsupported type."""


class SANPolicyError(IssuanceError):
    """A subject alternative name is invalid or not allowed by the authority."""


class ValidityError(IssuanceError):
    """The requested validity is out of the authority's limits."""


class ChainError(CertificateError):
    """A set of certificates does not form a chain."""


class CRLError(CertificateError):
    """A CRL cannot be built from the given entries."""


# --------------------------------------------------------------------------- keys


class KeyType(StrEnum):
    """Key algorithms Popcorn generates for authorities and certificates."""

    RSA2048 = "rsa-2048"
    RSA3072 = "rsa-3072"
    RSA4096 = "rsa-4096"
    EC_P256 = "ecdsa-p256"
    EC_P384 = "ecdsa-p384"


def generate_private_key(key_type: KeyType | str) -> CAPrivateKey:
    """Generate a fresh private key of a supported type."""
    try:
        kind = KeyType(key_type)
    except ValueError:
        allowed = ", ".join(k.value for k in KeyType)
        raise WeakKeyError(f"key_type: {key_type!r} is not one of {allowed}") from None
    if kind is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if kind is KeyType.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.value.split("-")[1]))


def private_key_to_pem(key: CAPrivateKey, password: bytes | None = None) -> str:
    """Serialize a private key as PKCS#8 PEM, encrypted when a password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    ).decode("ascii")


def load_private_key(pem: bytes | str, password: bytes | None = None) -> CAPrivateKey:
    """Load an RSA or EC private key from PEM."""
    try:
        key = serialization.load_pem_private_key(_to_bytes(pem), password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidPEMError(f"private_key: not a readable PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise WeakKeyError(f"private_key: {type(key).__name__} keys are not supported")
    _check_public_key(key.public_key(), "private_key")
    return key


def _check_public_key(key: object, field_name: str) -> CAPublicKey:
    """Refuse keys TLS clients would reject or that are too weak."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise WeakKeyError(
                f"{field_name}: RSA key of {key.key_size} bits is under the minimum of "
                f"{MIN_RSA_BITS}"
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _SUPPORTED_CURVES:
            raise WeakKeyError(f"{field_name}: elliptic curve {key.curve.name} is not supported")
        return key
    raise WeakKeyError(f"{field_name}: {type(key).__name__} keys are not supported")


def signing_hash(key: CAPrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name == "secp384r1":
            return hashes.SHA384()
        if key.curve.name == "secp521r1":
            return hashes.SHA512()
    return hashes.SHA256()


def describe_key(key: object) -> tuple[str, int]:
    """Algorithm name and size in bits of a public key, for inventory."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    return type(key).__name__, 0


def keys_match(certificate: x509.Certificate, key: CAPrivateKey) -> bool:
    """Whether a private key belongs to a certificate."""
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(
        certificate.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)
    )


def random_serial() -> int:
    """A random positive 159-bit serial number (fits the 20-octet limit of RFC 5280)."""
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial:
            return serial


# --------------------------------------------------------------------------- PEM helpers


def _to_bytes(data: bytes | str) -> bytes:
    return data.encode("ascii", "replace") if isinstance(data, str) else data


def certificate_to_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def certificates_to_pem(certificates: Iterable[x509.Certificate]) -> str:
    return "".join(certificate_to_pem(c) for c in certificates)


def load_certificate(data: bytes | str) -> x509.Certificate:
    """Load one certificate from PEM or DER."""
    raw = _to_bytes(data)
    try:
        if b"-----BEGIN" in raw:
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as exc:
        raise InvalidPEMError(f"certificate: not a readable certificate ({exc})") from None


def parse_pem_bundle(data: bytes | str) -> list[x509.Certificate]:
    """All certificates of a PEM bundle, in file order."""
    raw = _to_bytes(data)
    if b"-----BEGIN CERTIFICATE-----" not in raw:
        raise InvalidPEMError("bundle: no PEM certificate found")
    try:
        return x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise InvalidPEMError(f"bundle: unreadable certificate ({exc})") from None


def is_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` signed `certificate` (names match and signature verifies)."""
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_self_signed(certificate: x509.Certificate) -> bool:
    return is_issued_by(certificate, certificate)


def order_chain(certificates: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Order certificates leaf first, each followed by its issuer, up to the root.

    Duplicates are dropped. The chain may stop short of a root (servers often
    omit it); certificates that are not part of the leaf's path are an error.
    """
    unique: list[x509.Certificate] = []
    for cert in certificates:
        if cert not in unique:
            unique.append(cert)
    if not unique:
        raise ChainError("chain: no certificates given")
    issuers_of: dict[int, list[int]] = {i: [] for i in range(len(unique))}
    for i, cert in enumerate(unique):
        for j, candidate in enumerate(unique):
            if i != j and is_issued_by(cert, candidate):
                issuers_of[i].append(j)
    issued_something = {j for js in issuers_of.values() for j in js}
    leaves = [i for i in range(len(unique)) if i not in issued_something]
    if len(leaves) != 1:
        names = ", ".join(unique[i].subject.rfc4514_string() for i in leaves) or "none"
        raise ChainError(f"chain: expected exactly one leaf certificate, found: {names}")
    ordered = [leaves[0]]
    while issuers_of[ordered[-1]]:
        nxt = issuers_of[ordered[-1]][0]
        if nxt in ordered:
            break
        ordered.append(nxt)
    if len(ordered) != len(unique):
        stray = [unique[i].subject.rfc4514_string() for i in range(len(unique)) if i not in ordered]
        raise ChainError(f"chain: certificates not on the leaf's path: {', '.join(stray)}")
    return [unique[i] for i in ordered]


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class CertificateInfo:
    """What the inventory records about a certificate."""

    serial: int
    serial_hex: str
    sha256_fingerprint: str
    sha1_fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    subject: str
    common_name: str | None
    issuer: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    key_type: str
    key_size: int
    is_ca: bool
    self_signed: bool
    signature_hash: str | None


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _sans(certificate: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        ext = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = tuple(ext.get_values_for_type(x509.DNSName))
    ips = tuple(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return dns, ips


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def certificate_info(certificate: x509.Certificate | bytes | str) -> CertificateInfo:
    """Inventory facts of a certificate (object, PEM or DER)."""
    cert = (
        certificate if isinstance(certificate, x509.Certificate) else load_certificate(certificate)
    )
    dns, ips = _sans(cert)
    key_type, key_size = describe_key(cert.public_key())
    algorithm = cert.signature_hash_algorithm
    return CertificateInfo(
        serial=cert.serial_number,
        serial_hex=format(cert.serial_number, "X"),
        sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex().upper(),
        sha1_fingerprint=cert.fingerprint(hashes.SHA1()).hex().upper(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        subject=cert.subject.rfc4514_string(),
        common_name=_common_name(cert.subject),
        issuer=cert.issuer.rfc4514_string(),
        dns_names=dns,
        ip_addresses=ips,
        key_type=key_type,
        key_size=key_size,
        is_ca=_is_ca(cert),
        self_signed=cert.subject == cert.issuer and _is_self_signed(cert),
        signature_hash=algorithm.name if algorithm else None,
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


def create_intermediate_authority(
    parent: Authority,
    subject: Subject | str,
    *,
    key_type: KeyType | str = KeyType.EC_P256,
    validity_days: int = 1825,
    path_length: int | None = 0,
    policy: AuthorityPolicy | None = None,
    now: dt.datetime | None = None,
) -> Authority:
    """Create an intermediate CA signed by `parent`, within its lifetime and path length."""
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
    if validity_days < 1:
        raise AuthorityError("validity_days: must be at least 1")
    start = _now(now)
    end = start + dt.timedelta(days=validity_days)
    if end > parent.certificate.not_valid_after_utc:
        raise AuthorityError(
            f"validity_days: would end after the parent expires "
            f"({parent.certificate.not_valid_after_utc.isoformat()})"
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


# --------------------------------------------------------------------------- issuance


class Profile(StrEnum):
    """What a certificate is for: TLS server, TLS client (Bolt agents), or both."""

    SERVER = "server"
    CLIENT = "client"
    BOTH = "both"


@dataclass(frozen=True)
class CertificateRequest:
    """What a user or an agent asks an issuer for.

    With `csr_pem` the CSR supplies the public key, and the subject and SANs
    unless given here; without it a key of `key_type` is generated. For
    server certificates a common name that is a host name or address is also
    put in the SANs, since clients only match SANs.
    """

    common_name: str | None = None
    dns_names: Sequence[str] = ()
    ip_addresses: Sequence[str] = ()
    profile: Profile | str = Profile.SERVER
    validity_days: int = 90
    csr_pem: bytes | str | None = None
    key_type: KeyType | str = KeyType.EC_P256
    organization: str | None = None
    organizational_unit: str | None = None
    country: str | None = None
    state: str | None = None
    locality: str | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    """A signed certificate, its issuer path (issuer first, root last), and the key if generated."""

    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    private_key: CAPrivateKey | None = None
    external_id: str | None = None

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    @property
    def certificate_pem(self) -> str:
        return certificate_to_pem(self.certificate)

    @property
    def chain_pem(self) -> str:
        return certificates_to_pem(self.chain)

    @property
    def private_key_pem(self) -> str | None:
        return private_key_to_pem(self.private_key) if self.private_key else None

    @property
    def info(self) -> CertificateInfo:
        return certificate_info(self.certificate)


@dataclass(frozen=True)
class PendingCertificate:
    """An issuer accepted the request but will sign later (e.g. an external CA's approval)."""

    external_id: str
    message: str = ""


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked serial, as stored by the slice and listed in CRLs and OCSP answers."""

    serial: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


def parse_reason(reason: x509.ReasonFlags | str) -> x509.ReasonFlags:
    """A revocation reason from its RFC 5280 name (e.g. 'keyCompromise' or 'key_compromise')."""
    if isinstance(reason, x509.ReasonFlags):
        return reason
    wanted = reason.replace("_", "").replace("-", "").lower()
    for flag in x509.ReasonFlags:
        if flag.value.lower() == wanted or flag.name.replace("_", "") == wanted:
            return flag
    names = ", ".join(f.name for f in x509.ReasonFlags)
    raise CRLError(f"reason: {reason!r} is not one of {names}")


def create_csr(
    private_key: CAPrivateKey,
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> str:
    """A PEM CSR, as a Bolt agent or a user builds it for its own key."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(Subject(common_name).to_name())
    general: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    general += [x509.IPAddress(_parse_ip(a)) for a in ip_addresses]
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    csr = builder.sign(private_key, signing_hash(private_key))
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _parse_ip(value: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise SANPolicyError(f"ip_addresses: {value!r} is not an IP address") from None


def load_csr(csr_pem: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM (or DER) CSR and verify its self-signature."""
    raw = _to_bytes(csr_pem)
    try:
        csr = x509.load_pem_x509_csr(raw) if b"-----BEGIN" in raw else x509.load_der_x509_csr(raw)
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedCSRError(
            f"csr: not a readable certificate signing request ({exc})"
        ) from None
    if not signature_ok:
        raise MalformedCSRError("csr: signature does not verify against its public key")
    return csr


def _normalize_dns(name: str) -> str:
    norm = name.strip().lower().rstrip(".")
    if len(norm) > 253 or not _DNS_NAME.match(norm):
        raise SANPolicyError(f"dns_names: {name!r} is not a valid DNS name")
    return norm


def _host_kind(value: str) -> str | None:
    """'ip' or 'dns' when a common name names a host, so it can go in the SANs."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        norm = value.strip().lower().rstrip(".")
        if norm == "localhost" or ("." in norm and _DNS_NAME.match(norm)):
            return "dns"
        return None
    return "ip"


def _check_dns_policy(name: str, suffixes: tuple[str, ...] | None) -> None:
    if suffixes is None:
        return
    base = name[2:] if name.startswith("*.") else name
    for suffix in suffixes:
        norm = suffix.strip().lower().strip(".")
        if base == norm or base.endswith("." + norm):
            return
    allowed = ", ".join(suffixes) or "none"
    raise SANPolicyError(f"dns_names: {name!r} is not under an allowed suffix ({allowed})")


def _check_ip_policy(ip: IPAddress, networks: list[IPNetwork] | None) -> None:
    if networks is None:
        return
    if not any(ip.version == net.version and ip in net for net in networks):
        allowed = ", ".join(str(n) for n in networks) or "none"
        raise SANPolicyError(f"ip_addresses: {ip} is not in an allowed network ({allowed})")


def _leaf_key_usage(key: CAPublicKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPublicKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


_EKU = {
    Profile.SERVER: [ExtendedKeyUsageOID.SERVER_AUTH],
    Profile.CLIENT: [ExtendedKeyUsageOID.CLIENT_AUTH],
    Profile.BOTH: [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
}


def issue_certificate(
    authority: Authority, request: CertificateRequest, *, now: dt.datetime | None = None
) -> IssuedCertificate:
    """Sign a leaf certificate for `request` under `authority`'s policy."""
    try:
        profile = Profile(request.profile)
    except ValueError:
        raise IssuanceError(
            f"profile: {request.profile!r} is not one of server, client, both"
        ) from None
    policy = authority.policy
    if not isinstance(request.validity_days, int) or request.validity_days < 1:
        raise ValidityError("validity_days: must be a positive number of days")
    if request.validity_days > policy.max_validity_days:
        raise ValidityError(
            f"validity_days: {request.validity_days} exceeds the authority's maximum of "
            f"{policy.max_validity_days}"
        )
    start = _now(now)
    end = start + dt.timedelta(days=request.validity_days)
    if end > authority.certificate.not_valid_after_utc:
        raise ValidityError(
            f"validity_days: would end after the authority {authority.name} expires "
            f"({authority.certificate.not_valid_after_utc.isoformat()})"
        )
    if start >= authority.certificate.not_valid_after_utc:
        raise ValidityError(f"authority: {authority.name} has expired")

    generated: CAPrivateKey | None = None
    csr_dns: list[str] = []
    csr_ips: list[str] = []
    csr_subject: x509.Name | None = None
    if request.csr_pem is not None:
        csr = load_csr(request.csr_pem)
        public_key = _check_public_key(csr.public_key(), "csr")
        csr_subject = csr.subject
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            pass
        except ValueError as exc:
            raise MalformedCSRError(f"csr: unreadable extensions ({exc})") from None
        else:
            csr_dns = list(san.get_values_for_type(x509.DNSName))
            csr_ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    else:
        generated = generate_private_key(request.key_type)
        public_key = generated.public_key()

    if request.common_name is not None or csr_subject is None:
        subject_name = Subject(
            common_name=request.common_name or "",
            organization=request.organization,
            organizational_unit=request.organizational_unit,
            country=request.country,
            state=request.state,
            locality=request.locality,
        ).to_name()
    else:
        subject_name = csr_subject
    common_name = _common_name(subject_name)

    explicit = bool(request.dns_names or request.ip_addresses)
    dns_in = list(request.dns_names) if explicit else csr_dns
    ip_in = list(request.ip_addresses) if explicit else csr_ips
    kind = _host_kind(common_name) if common_name and profile is not Profile.CLIENT else None
    if kind == "dns":
        dns_in = [common_name or "", *dns_in]
    elif kind == "ip":
        ip_in = [common_name or "", *ip_in]
    dns_names = list(dict.fromkeys(_normalize_dns(n) for n in dns_in))
    ips = list(dict.fromkeys(_parse_ip(a) for a in ip_in))
    for name in dns_names:
        _check_dns_policy(name, policy.allowed_dns_suffixes)
    networks = policy.networks()
    for ip in ips:
        _check_ip_policy(ip, networks)
    if profile is not Profile.CLIENT and not (dns_names or ips):
        raise SANPolicyError("dns_names: a server certificate needs at least one DNS name or IP")

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(authority.certificate.subject)
        .public_key(public_key)
        .serial_number(random_serial())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(_EKU[profile]), critical=False)
        .add_extension(_ski(public_key), critical=False)
        .add_extension(_aki(authority.certificate), critical=False)
    )
    if dns_names or ips:
        general: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        general += [x509.IPAddress(ip) for ip in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    builder = _revocation_extensions(builder, policy)
    cert = builder.sign(authority.private_key, signing_hash(authority.private_key))
    return IssuedCertificate(cert, authority.path, generated)


# --------------------------------------------------------------------------- plugins


class IssuerPlugin(ABC):
    """Something that signs certificates: Popcorn's own CA first, external CAs later."""

    slug: ClassVar[str]
    title: ClassVar[str]

    @abstractmethod
    def create_certificate(
        self, request: CertificateRequest
    ) -> IssuedCertificate | PendingCertificate:
        """Sign `request` now, or accept it for later signing."""

    @abstractmethod
    def revoke_certificate(
        self,
        certificate: x509.Certificate,
        *,
        reason: x509.ReasonFlags | str = x509.ReasonFlags.unspecified,
        revoked_at: dt.datetime | None = None,
    ) -> RevokedEntry:
        """Revoke a certificate this issuer signed; returns the entry to record."""


class LocalCAIssuer(IssuerPlugin):
    """Popcorn's built-in CA: signs in-process, revocation is published by CRL and OCSP."""

    slug = "popcorn-ca"
    title = "Popcorn certificate authority"

    def __init__(self, authority: Authority) -> None:
        self.authority = authority

    def create_certificate(self, request: CertificateRequest) -> IssuedCertificate:
        return issue_certificate(self.authority, request)

    def revoke_certificate(
        self,
        certificate: x509.Certificate,
        *,
        reason: x509.ReasonFlags | str = x509.ReasonFlags.unspecified,
        revoked_at: dt.datetime | None = None,
    ) -> RevokedEntry:
        if not is_issued_by(certificate, self.authority.certificate):
            raise CRLError(
                f"certificate: serial {certificate.serial_number:X} was not issued by "
                f"{self.authority.name}"
            )
        flag = parse_reason(reason)
        if flag is x509.ReasonFlags.remove_from_crl:
            raise CRLError("reason: removeFromCRL is only for delta CRLs")
        return RevokedEntry(certificate.serial_number, _now(revoked_at), flag)


# --------------------------------------------------------------------------- CRL


@dataclass(frozen=True)
class SignedCRL:
    crl: x509.CertificateRevocationList

    @property
    def der(self) -> bytes:
        return self.crl.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        return self.crl.public_bytes(serialization.Encoding.PEM).decode("ascii")


def build_crl(
    authority: Authority,
    revoked: Iterable[RevokedEntry | tuple[int, dt.datetime, x509.ReasonFlags | str]],
    *,
    crl_number: int,
    next_update: dt.timedelta = dt.timedelta(days=1),
    now: dt.datetime | None = None,
) -> SignedCRL:
    """A CRL signed by `authority` listing each revoked serial once."""
    if not 0 <= crl_number < 2**159:
        raise CRLError("crl_number: must be a non-negative integer under 2**159")
    if next_update <= dt.timedelta(0):
        raise CRLError("next_update: must be positive")
    start = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(start)
        .next_update(start + next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_aki(authority.certificate), critical=False)
    )
    seen: set[int] = set()
    for item in revoked:
        entry = (
            item
            if isinstance(item, RevokedEntry)
            else RevokedEntry(item[0], item[1], parse_reason(item[2]))
        )
        if entry.serial in seen:
            raise CRLError(f"revoked: serial {entry.serial:X} is listed more than once")
        if entry.serial <= 0:
            raise CRLError(f"revoked: serial {entry.serial} is not a positive integer")
        if entry.revoked_at.tzinfo is None:
            raise CRLError(f"revoked: time of serial {entry.serial:X} must be timezone-aware")
        seen.add(entry.serial)
        revoked_builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at.astimezone(dt.UTC))
        )
        if entry.reason is not x509.ReasonFlags.unspecified:
            revoked_builder = revoked_builder.add_extension(
                x509.CRLReason(entry.reason), critical=False
            )
        builder = builder.add_revoked_certificate(revoked_builder.build())
    crl = builder.sign(authority.private_key, signing_hash(authority.private_key))
    return SignedCRL(crl)
