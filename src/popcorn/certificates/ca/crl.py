"""Certificate revocation lists signed by an authority."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from popcorn.certificates.ca.authorities import Authority, _aki, _now
from popcorn.certificates.ca.issuance import RevokedEntry, parse_reason
from popcorn.certificates.ca.keys import CRLError, signing_hash

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
