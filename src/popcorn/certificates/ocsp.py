"""OCSP responder for Popcorn's authorities.

Answers a DER OCSP request (RFC 6960) from a lookup of the serial's status,
signed directly by the authority. Bad requests get an OCSP error response,
never an exception, because OCSP clients only understand OCSP answers.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp

from popcorn.certificates.ca import Authority, CertificateError, signing_hash

_REQUEST_HASHES: tuple[type[hashes.HashAlgorithm], ...] = (
    hashes.SHA1,
    hashes.SHA256,
    hashes.SHA384,
    hashes.SHA512,
)


class OCSPStatus(StrEnum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CertificateStatus:
    """What the slice knows about a serial: good, revoked (when, why), or not ours."""

    status: OCSPStatus
    revoked_at: dt.datetime | None = None
    reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        if self.status is OCSPStatus.REVOKED and self.revoked_at is None:
            raise CertificateError("revoked_at: required for a revoked certificate")

    @classmethod
    def good(cls) -> CertificateStatus:
        return cls(OCSPStatus.GOOD)

    @classmethod
    def unknown(cls) -> CertificateStatus:
        return cls(OCSPStatus.UNKNOWN)

    @classmethod
    def revoked(
        cls, revoked_at: dt.datetime, reason: x509.ReasonFlags | None = None
    ) -> CertificateStatus:
        return cls(OCSPStatus.REVOKED, revoked_at, reason)


StatusLookup = Callable[[int], CertificateStatus]

_CERT_STATUS = {
    OCSPStatus.GOOD: ocsp.OCSPCertStatus.GOOD,
    OCSPStatus.REVOKED: ocsp.OCSPCertStatus.REVOKED,
    OCSPStatus.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
}


def _public_key_bits(certificate: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING contents, which OCSP hashes to name the issuer key."""
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    raise CertificateError(f"issuer: {type(key).__name__} keys are not supported")


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def decode_get_request(path_segment: str) -> bytes:
    """The DER request carried in an OCSP GET URL (URL-encoded base64); b'' if unreadable."""
    text = urllib.parse.unquote(path_segment)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def build_ocsp_response(
    request_der: bytes,
    authority: Authority,
    lookup: StatusLookup,
    *,
    validity: dt.timedelta = dt.timedelta(hours=1),
    now: dt.datetime | None = None,
) -> bytes:
    """A DER OCSP response for `request_der`, signed by `authority`.

    Requests that cannot be parsed get MALFORMED_REQUEST; requests about
    another issuer get UNAUTHORIZED. The request's nonce is echoed.
    """
    try:
        request = ocsp.load_der_ocsp_request(request_der)
        algorithm = request.hash_algorithm
        extensions = request.extensions
    except (ValueError, NotImplementedError, TypeError):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    if not isinstance(algorithm, _REQUEST_HASHES):
        return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    issuer = authority.certificate
    name_hash = _digest(algorithm, issuer.subject.public_bytes())
    key_hash = _digest(algorithm, _public_key_bits(issuer))
    if request.issuer_name_hash != name_hash or request.issuer_key_hash != key_hash:
        return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)

    status = lookup(request.serial_number)
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    revoked_at = status.revoked_at.astimezone(dt.UTC) if status.revoked_at else None
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=name_hash,
            issuer_key_hash=key_hash,
            serial_number=request.serial_number,
            algorithm=algorithm,
            cert_status=_CERT_STATUS[status.status],
            this_update=moment,
            next_update=moment + validity,
            revocation_time=revoked_at if status.status is OCSPStatus.REVOKED else None,
            revocation_reason=status.reason if status.status is OCSPStatus.REVOKED else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
    )
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):
            builder = builder.add_extension(extension.value, critical=False)
    response = builder.sign(authority.private_key, signing_hash(authority.private_key))
    return response.public_bytes(serialization.Encoding.DER)
