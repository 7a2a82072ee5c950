"""Errors, keys, PEM handling and the inventory facts read from any certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

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
