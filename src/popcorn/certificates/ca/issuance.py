"""Issuing leaf certificates under an authority's policy, and the issuer plugin interface."""

from __future__ import annotations

import datetime as dt
import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from popcorn.certificates.ca.authorities import (
    Authority,
    Subject,
    _aki,
    _now,
    _revocation_extensions,
    _ski,
)
from popcorn.certificates.ca.keys import (
    _DNS_NAME,
    CLOCK_SKEW,
    CAPrivateKey,
    CAPublicKey,
    CertificateInfo,
    CRLError,
    IPAddress,
    IPNetwork,
    IssuanceError,
    KeyType,
    MalformedCSRError,
    SANPolicyError,
    ValidityError,
    _check_public_key,
    _common_name,
    _to_bytes,
    certificate_info,
    certificate_to_pem,
    certificates_to_pem,
    generate_private_key,
    is_issued_by,
    private_key_to_pem,
    random_serial,
    signing_hash,
)

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
