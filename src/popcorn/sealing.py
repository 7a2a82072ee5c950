"""Secrets at rest: one sealing scheme for every domain.

Popcorn stores every secret it must read back (private keys, webhook secrets) sealed
with AES-256-GCM under a key derived by HKDF-SHA256 from the deployment's
secret (`POPCORN_SECRET_KEY`) and a context label, so a database dump alone
reveals no key. Envelopes are versioned so the format can evolve, and a
store can hold previous secrets to read old envelopes during a rotation.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


MAGIC = b"PCK"
VERSION = 1
TEXT_PREFIX = "pck1:"
DEFAULT_CONTEXT = "popcorn/certificates/private-key"
_SALT = 16
_NONCE = 12
_HEADER = len(MAGIC) + 1 + _SALT + _NONCE


class DecryptionError(ValueError):
    """An envelope could not be opened: wrong secret, tampered data, or not an envelope."""


class KeyStore:
    """Seals and opens secrets with a key derived from `secret` and `context`."""

    def __init__(
        self,
        secret: str,
        *,
        context: str = DEFAULT_CONTEXT,
        previous_secrets: Sequence[str] = (),
    ) -> None:
        if not secret:
            raise ValueError("secret: must not be empty")
        if not context:
            raise ValueError("context: must not be empty")
        self._secrets = [secret.encode(), *(s.encode() for s in previous_secrets if s)]
        self._context = context.encode()

    def _key(self, secret: bytes, salt: bytes) -> AESGCM:
        # cryptography loads on first use: a command that only lists rows never seals
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=self._context)
        return AESGCM(hkdf.derive(secret))

    def _aad(self, header: bytes, associated_data: bytes) -> bytes:
        return header + self._context + b"\x00" + associated_data

    def encrypt_bytes(self, plaintext: bytes | str, *, associated_data: bytes = b"") -> bytes:
        """Binary envelope: magic, version, salt, nonce, ciphertext and tag."""
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        salt = os.urandom(_SALT)
        nonce = os.urandom(_NONCE)
        header = MAGIC + bytes([VERSION]) + salt + nonce
        sealed = self._key(self._secrets[0], salt).encrypt(
            nonce, data, self._aad(header, associated_data)
        )
        return header + sealed

    def encrypt(self, plaintext: bytes | str, *, associated_data: bytes = b"") -> str:
        """Text envelope (`pck1:` + base64url), for a text column."""
        raw = self.encrypt_bytes(plaintext, associated_data=associated_data)
        return TEXT_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii")

    def decrypt(self, envelope: bytes | str, *, associated_data: bytes = b"") -> bytes:
        """Open a text or binary envelope; DecryptionError if it is not genuine."""
        from cryptography.exceptions import InvalidTag

        raw = _envelope_bytes(envelope)
        if len(raw) < _HEADER + 16 or not raw.startswith(MAGIC):
            raise DecryptionError("envelope: not a Popcorn key store envelope")
        if raw[len(MAGIC)] != VERSION:
            raise DecryptionError(f"envelope: unsupported version {raw[len(MAGIC)]}")
        header = raw[:_HEADER]
        salt = header[len(MAGIC) + 1 : len(MAGIC) + 1 + _SALT]
        nonce = header[-_NONCE:]
        for secret in self._secrets:
            try:
                return self._key(secret, salt).decrypt(
                    nonce, raw[_HEADER:], self._aad(header, associated_data)
                )
            except InvalidTag:
                continue
        raise DecryptionError(
            "envelope: authentication failed (wrong secret key, other context, or tampered data)"
        )

    def decrypt_text(self, envelope: bytes | str, *, associated_data: bytes = b"") -> str:
        data = self.decrypt(envelope, associated_data=associated_data)
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise DecryptionError("envelope: content is not UTF-8 text") from None

    def rotate(self, envelope: bytes | str, *, associated_data: bytes = b"") -> str:
        """Re-seal an envelope (possibly under a previous secret) with the current secret."""
        return self.encrypt(
            self.decrypt(envelope, associated_data=associated_data),
            associated_data=associated_data,
        )


def _envelope_bytes(envelope: bytes | str) -> bytes:
    if isinstance(envelope, bytes) and envelope.startswith(MAGIC):
        return envelope
    text = envelope.decode("ascii", "replace") if isinstance(envelope, bytes) else envelope
    if not text.startswith(TEXT_PREFIX):
        raise DecryptionError("envelope: not a Popcorn key store envelope")
    try:
        return base64.b64decode(text[len(TEXT_PREFIX) :], altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError("envelope: corrupted base64") from None
