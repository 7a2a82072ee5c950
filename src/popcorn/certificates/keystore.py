"""Key export: a certificate, its private key and chain as one PKCS#12 file.

Keys at rest are sealed by the core's `popcorn.sealing`; this module only
builds the files that leave the platform.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

from popcorn.certificates.ca import CAPrivateKey, CertificateError, keys_match


class PKCS12Error(CertificateError):
    """A PKCS#12 file cannot be built from the given parts."""


def export_pkcs12(
    certificate: x509.Certificate,
    private_key: CAPrivateKey,
    chain: Sequence[x509.Certificate] = (),
    *,
    password: str | bytes,
    friendly_name: str | None = None,
    legacy: bool = False,
) -> bytes:
    """PKCS#12 of a certificate, its key and chain, protected by `password`.

    The default is AES-256/PBKDF2-SHA256; `legacy` uses 3DES/SHA-1 for old
    Java and Windows importers that cannot read the modern form.
    """
    secret = password.encode() if isinstance(password, str) else password
    if not secret:
        raise PKCS12Error("password: must not be empty")
    if not keys_match(certificate, private_key):
        raise PKCS12Error("private_key: does not match the certificate")
    builder = PrivateFormat.PKCS12.encryption_builder()
    if legacy:
        builder = (
            builder.kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())
        )
    else:
        builder = (
            builder.kdf_rounds(100_000)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
        )
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode() if friendly_name else None,
        private_key,
        certificate,
        list(chain) or None,
        builder.build(secret),
    )
