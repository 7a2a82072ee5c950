"""Private keys sealed at rest, and PKCS#12 export read back by openssl."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from certhelpers import openssl, write
from cryptography.hazmat.primitives.serialization import pkcs12

from popcorn.certificates.ca import (
    Authority,
    IssuedCertificate,
    KeyType,
    generate_private_key,
    private_key_to_pem,
)
from popcorn.certificates.keystore import PKCS12Error, export_pkcs12
from popcorn.sealing import DecryptionError, KeyStore

SECRET = "correct horse battery staple"


def test_text_and_binary_envelopes_round_trip(server_cert: IssuedCertificate) -> None:
    store = KeyStore(SECRET)
    key_pem = server_cert.private_key_pem or ""
    sealed = store.encrypt(key_pem)
    assert sealed.startswith("pck1:") and "PRIVATE KEY" not in sealed
    assert store.decrypt_text(sealed) == key_pem
    assert store.decrypt(sealed.encode()) == key_pem.encode()
    raw = store.encrypt_bytes(b"\x00\x01binary")
    assert store.decrypt(raw) == b"\x00\x01binary"
    assert store.encrypt(key_pem) != sealed


def test_wrong_secret_or_context_cannot_open() -> None:
    sealed = KeyStore(SECRET).encrypt("key material")
    with pytest.raises(DecryptionError, match="authentication failed"):
        KeyStore("another secret").decrypt(sealed)
    with pytest.raises(DecryptionError, match="authentication failed"):
        KeyStore(SECRET, context="popcorn/other-purpose").decrypt(sealed)


def test_associated_data_binds_an_envelope_to_its_record() -> None:
    store = KeyStore(SECRET)
    sealed = store.encrypt("key of certificate 7", associated_data=b"certificate:7")
    assert store.decrypt_text(sealed, associated_data=b"certificate:7") == "key of certificate 7"
    with pytest.raises(DecryptionError):
        store.decrypt(sealed, associated_data=b"certificate:8")


@pytest.mark.parametrize("position", [3, 5, 25, 40, -1])
def test_any_tampered_byte_is_detected(position: int) -> None:
    store = KeyStore(SECRET)
    raw = bytearray(store.encrypt_bytes(b"a private key, long enough to tamper with"))
    raw[position] ^= 0x40
    with pytest.raises(DecryptionError):
        store.decrypt(bytes(raw))


def test_garbage_and_unknown_versions_are_clear_errors() -> None:
    store = KeyStore(SECRET)
    with pytest.raises(DecryptionError, match="not a Popcorn key store envelope"):
        store.decrypt("-----BEGIN PRIVATE KEY-----")
    with pytest.raises(DecryptionError, match="corrupted base64"):
        store.decrypt("pck1:!!!")
    raw = bytearray(store.encrypt_bytes(b"x" * 32))
    raw[3] = 9
    with pytest.raises(DecryptionError, match="unsupported version 9"):
        store.decrypt(bytes(raw))
    truncated = "pck1:" + base64.urlsafe_b64encode(b"PCK\x01short").decode()
    with pytest.raises(DecryptionError, match="not a Popcorn"):
        store.decrypt(truncated)
    with pytest.raises(ValueError, match="secret"):
        KeyStore("")


def test_rotation_reads_old_envelopes_and_reseals_them() -> None:
    old = KeyStore("old secret").encrypt("the key")
    rotated_store = KeyStore("new secret", previous_secrets=["old secret"])
    assert rotated_store.decrypt_text(old) == "the key"
    resealed = rotated_store.rotate(old)
    assert KeyStore("new secret").decrypt_text(resealed) == "the key"
    with pytest.raises(DecryptionError):
        KeyStore("old secret").decrypt(resealed)


@pytest.mark.parametrize("legacy", [False, True])
def test_pkcs12_export_opens_in_openssl_and_cryptography(
    tmp_path: Path,
    root: Authority,
    intermediate: Authority,
    server_cert: IssuedCertificate,
    legacy: bool,
) -> None:
    assert server_cert.private_key is not None
    blob = export_pkcs12(
        server_cert.certificate,
        server_cert.private_key,
        server_cert.chain,
        password="p12-pass",
        friendly_name="www.example.test",
        legacy=legacy,
    )
    loaded = pkcs12.load_pkcs12(blob, b"p12-pass")
    assert loaded.cert is not None and loaded.cert.certificate == server_cert.certificate
    assert loaded.cert.friendly_name == b"www.example.test"
    assert [c.certificate for c in loaded.additional_certs] == list(server_cert.chain)
    assert loaded.key is not None
    assert private_key_to_pem(loaded.key) == server_cert.private_key_pem  # type: ignore[arg-type]
    path = write(tmp_path / "bundle.p12", blob)
    args = ["pkcs12", "-in", str(path), "-nodes", "-passin", "pass:p12-pass"]
    if legacy:
        args.append("-legacy")
    result = openssl(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("BEGIN CERTIFICATE") == 3
    assert "BEGIN PRIVATE KEY" in result.stdout
    wrong = openssl("pkcs12", "-in", str(path), "-nodes", "-passin", "pass:nope")
    assert wrong.returncode != 0


def test_pkcs12_refuses_mismatched_key_and_empty_password(
    server_cert: IssuedCertificate,
) -> None:
    other = generate_private_key(KeyType.EC_P256)
    with pytest.raises(PKCS12Error, match="does not match"):
        export_pkcs12(server_cert.certificate, other, password="x")
    assert server_cert.private_key is not None
    with pytest.raises(PKCS12Error, match="password"):
        export_pkcs12(server_cert.certificate, server_cert.private_key, password="")
