"""Authorities and issuance, checked with cryptography and with `openssl verify`."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from certhelpers import CRL_URL, OCSP_URL, openssl, write
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from popcorn.certificates.ca import (
    Authority,
    AuthorityError,
    AuthorityPolicy,
    CertificateRequest,
    ChainError,
    CRLError,
    InvalidPEMError,
    IssuanceError,
    IssuedCertificate,
    IssuerPlugin,
    KeyType,
    LocalCAIssuer,
    MalformedCSRError,
    SANPolicyError,
    Subject,
    ValidityError,
    WeakKeyError,
    certificate_info,
    certificates_to_pem,
    create_csr,
    create_intermediate_authority,
    create_root_authority,
    generate_private_key,
    import_authority,
    issue_certificate,
    keys_match,
    load_private_key,
    order_chain,
    parse_pem_bundle,
    private_key_to_pem,
)


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType:
    return cert.extensions.get_extension_for_class(kind).value


def verify_with_openssl(
    tmp_path: Path, root: Authority, leaf: IssuedCertificate, *extra: str
) -> tuple[int, str]:
    ca = write(tmp_path / "root.pem", root.certificate_pem)
    untrusted = certificates_to_pem(c for c in leaf.chain if c != root.certificate)
    args = ["verify", "-CAfile", str(ca)]
    if untrusted:
        args += ["-untrusted", str(write(tmp_path / "untrusted.pem", untrusted))]
    result = openssl(*args, *extra, str(write(tmp_path / "leaf.pem", leaf.certificate_pem)))
    return result.returncode, result.stdout + result.stderr


# --------------------------------------------------------------------------- authorities


@pytest.mark.parametrize(
    ("key_type", "algorithm", "bits"),
    [
        (KeyType.RSA2048, "RSA", 2048),
        (KeyType.RSA3072, "RSA", 3072),
        (KeyType.RSA4096, "RSA", 4096),
        (KeyType.EC_P256, "ECDSA", 256),
        (KeyType.EC_P384, "ECDSA", 384),
    ],
)
def test_root_authority_of_each_key_type_is_a_valid_self_signed_ca(
    tmp_path: Path, key_type: KeyType, algorithm: str, bits: int
) -> None:
    root = create_root_authority(
        Subject("Root " + key_type.value, organization="Popcorn", country="US"), key_type=key_type
    )
    info = certificate_info(root.certificate)
    assert (info.key_type, info.key_size) == (algorithm, bits)
    assert info.is_ca and info.self_signed
    assert info.subject == f"CN=Root {key_type.value},O=Popcorn,C=US"
    usage = ext(root.certificate, x509.KeyUsage)
    assert isinstance(usage, x509.KeyUsage) and usage.key_cert_sign and usage.crl_sign
    ski = ext(root.certificate, x509.SubjectKeyIdentifier)
    aki = ext(root.certificate, x509.AuthorityKeyIdentifier)
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == ski.digest
    pem = write(tmp_path / "root.pem", root.certificate_pem)
    result = openssl("verify", "-CAfile", str(pem), str(pem))
    assert result.returncode == 0, result.stderr


def test_intermediate_chains_to_root_for_openssl(
    tmp_path: Path, root: Authority, intermediate: Authority
) -> None:
    assert intermediate.chain == (root.certificate,)
    constraints = ext(intermediate.certificate, x509.BasicConstraints)
    assert isinstance(constraints, x509.BasicConstraints)
    assert constraints.ca and constraints.path_length == 0
    aki = ext(intermediate.certificate, x509.AuthorityKeyIdentifier)
    ski = ext(root.certificate, x509.SubjectKeyIdentifier)
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.digest
    ca = write(tmp_path / "root.pem", root.certificate_pem)
    inter = write(tmp_path / "inter.pem", intermediate.certificate_pem)
    result = openssl("verify", "-CAfile", str(ca), str(inter))
    assert result.returncode == 0, result.stderr


def test_path_length_zero_forbids_further_intermediates(intermediate: Authority) -> None:
    with pytest.raises(AuthorityError, match="path length 0"):
        create_intermediate_authority(intermediate, "Too deep")


def test_intermediate_cannot_outlive_its_parent(root: Authority) -> None:
    with pytest.raises(AuthorityError, match="validity_days"):
        create_intermediate_authority(root, "Long lived", validity_days=20000)


def test_authority_subject_fields_are_validated() -> None:
    with pytest.raises(AuthorityError, match="country"):
        create_root_authority(Subject("Root", country="USA"))
    with pytest.raises(AuthorityError, match="common_name"):
        create_root_authority("x" * 65)


def test_imported_authority_issues_certificates_openssl_accepts(tmp_path: Path) -> None:
    original = create_root_authority("Imported Root", key_type=KeyType.EC_P256)
    imported = import_authority(
        original.certificate_pem,
        original.private_key_pem(b"secret"),
        key_password=b"secret",
        policy=AuthorityPolicy(max_validity_days=30),
    )
    assert imported.certificate == original.certificate
    leaf = issue_certificate(
        imported, CertificateRequest(common_name="svc.example.test", validity_days=30)
    )
    code, output = verify_with_openssl(tmp_path, imported, leaf)
    assert code == 0, output


def test_imported_intermediate_needs_and_uses_its_chain(
    tmp_path: Path, root: Authority, intermediate: Authority
) -> None:
    key_pem = intermediate.private_key_pem()
    with pytest.raises(AuthorityError, match="chain"):
        import_authority(intermediate.certificate_pem, key_pem)
    imported = import_authority(
        intermediate.certificate_pem, key_pem, chain_pem=root.certificate_pem
    )
    assert imported.chain == (root.certificate,)
    leaf = issue_certificate(imported, CertificateRequest(common_name="a.example.test"))
    code, output = verify_with_openssl(tmp_path, root, leaf)
    assert code == 0, output


def test_import_rejects_key_that_does_not_match(root: Authority) -> None:
    other = generate_private_key(KeyType.EC_P384)
    with pytest.raises(AuthorityError, match="does not match"):
        import_authority(root.certificate_pem, private_key_to_pem(other))


def test_import_rejects_a_certificate_that_is_not_a_ca(server_cert: IssuedCertificate) -> None:
    with pytest.raises(AuthorityError, match="not a CA"):
        import_authority(server_cert.certificate_pem, server_cert.private_key_pem or "")


def test_import_rejects_garbage_and_wrong_passwords(root: Authority) -> None:
    with pytest.raises(InvalidPEMError, match="bundle"):
        import_authority("not a certificate", root.private_key_pem())
    with pytest.raises(InvalidPEMError, match="private_key"):
        import_authority(root.certificate_pem, root.private_key_pem(b"one"), key_password=b"two")


def test_import_rejects_expired_ca() -> None:
    old = create_root_authority(
        "Old Root", validity_days=10, now=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    )
    with pytest.raises(AuthorityError, match="expired"):
        import_authority(old.certificate_pem, old.private_key_pem())


# --------------------------------------------------------------------------- issuance


def test_server_certificate_with_generated_key_verifies_for_tls_servers(
    tmp_path: Path, root: Authority, intermediate: Authority
) -> None:
    issued = issue_certificate(
        intermediate,
        CertificateRequest(
            common_name="www.example.test",
            dns_names=["api.example.test", "*.cdn.example.test"],
            ip_addresses=["127.0.0.1", "::1"],
            organization="Popcorn",
            validity_days=90,
        ),
    )
    assert issued.private_key is not None
    assert keys_match(issued.certificate, issued.private_key)
    info = issued.info
    assert info.dns_names == ("www.example.test", "api.example.test", "*.cdn.example.test")
    assert info.ip_addresses == ("127.0.0.1", "::1")
    assert info.issuer == "CN=Popcorn Test Intermediate"
    assert info.not_after - info.not_before == dt.timedelta(days=90, minutes=5)
    code, output = verify_with_openssl(
        tmp_path, root, issued, "-purpose", "sslserver", "-verify_hostname", "api.example.test"
    )
    assert code == 0, output
    code, output = verify_with_openssl(
        tmp_path, root, issued, "-verify_hostname", "other.example.test"
    )
    assert code != 0 and "hostname mismatch" in output


@pytest.mark.parametrize("key_type", [KeyType.RSA2048, KeyType.EC_P256, KeyType.EC_P384])
def test_issue_from_csr_keeps_the_requesters_key(
    tmp_path: Path, root: Authority, intermediate: Authority, key_type: KeyType
) -> None:
    key = generate_private_key(key_type)
    csr = create_csr(key, "node1.example.test", dns_names=["node1-alt.example.test"])
    issued = issue_certificate(intermediate, CertificateRequest(csr_pem=csr))
    assert issued.private_key is None
    assert keys_match(issued.certificate, key)
    assert issued.info.dns_names == ("node1.example.test", "node1-alt.example.test")
    if key_type is KeyType.RSA2048:
        usage = ext(issued.certificate, x509.KeyUsage)
        assert isinstance(usage, x509.KeyUsage) and usage.key_encipherment
    code, output = verify_with_openssl(tmp_path, root, issued, "-purpose", "sslserver")
    assert code == 0, output


def test_request_fields_override_the_csr_subject_and_sans(intermediate: Authority) -> None:
    csr = create_csr(generate_private_key(KeyType.EC_P256), "asked.example.test")
    issued = issue_certificate(
        intermediate,
        CertificateRequest(
            csr_pem=csr, common_name="granted.example.test", dns_names=["b.example.test"]
        ),
    )
    assert issued.info.common_name == "granted.example.test"
    assert issued.info.dns_names == ("granted.example.test", "b.example.test")


@pytest.mark.parametrize(
    ("profile", "usages", "server_ok", "client_ok"),
    [
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH], True, False),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH], False, True),
        ("both", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], True, True),
    ],
)
def test_profiles_set_the_extended_key_usage_openssl_checks(
    tmp_path: Path,
    root: Authority,
    intermediate: Authority,
    profile: str,
    usages: list[x509.ObjectIdentifier],
    server_ok: bool,
    client_ok: bool,
) -> None:
    issued = issue_certificate(
        intermediate,
        CertificateRequest(common_name="bolt-agent.example.test", profile=profile),
    )
    eku = ext(issued.certificate, x509.ExtendedKeyUsage)
    assert isinstance(eku, x509.ExtendedKeyUsage) and list(eku) == usages
    assert (verify_with_openssl(tmp_path, root, issued, "-purpose", "sslserver")[0] == 0) is (
        server_ok
    )
    assert (verify_with_openssl(tmp_path, root, issued, "-purpose", "sslclient")[0] == 0) is (
        client_ok
    )


def test_client_certificate_needs_no_san(intermediate: Authority) -> None:
    issued = issue_certificate(
        intermediate, CertificateRequest(common_name="agent-0042", profile="client")
    )
    assert issued.info.dns_names == () and issued.info.common_name == "agent-0042"


def test_revocation_urls_are_written_when_the_authority_has_them(
    root: Authority, intermediate: Authority
) -> None:
    issued = issue_certificate(intermediate, CertificateRequest(common_name="a.example.test"))
    points = ext(issued.certificate, x509.CRLDistributionPoints)
    assert isinstance(points, x509.CRLDistributionPoints)
    assert [n.value for p in points for n in p.full_name or []] == [CRL_URL]
    aia = ext(issued.certificate, x509.AuthorityInformationAccess)
    assert isinstance(aia, x509.AuthorityInformationAccess)
    assert [a.access_location.value for a in aia] == [OCSP_URL]
    bare = issue_certificate(root, CertificateRequest(common_name="b.example.test"))
    with pytest.raises(x509.ExtensionNotFound):
        bare.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints)


def test_serials_are_positive_159_bit_and_distinct(intermediate: Authority) -> None:
    serials = {
        issue_certificate(intermediate, CertificateRequest(common_name="s.example.test")).serial
        for _ in range(40)
    }
    assert len(serials) == 40
    assert all(0 < s < 2**159 for s in serials)
    assert max(s.bit_length() for s in serials) > 150


def test_local_ca_plugin_issues_and_revokes(root: Authority, intermediate: Authority) -> None:
    plugin: IssuerPlugin = LocalCAIssuer(intermediate)
    issued = plugin.create_certificate(CertificateRequest(common_name="p.example.test"))
    assert isinstance(issued, IssuedCertificate)
    entry = plugin.revoke_certificate(issued.certificate, reason="keyCompromise")
    assert entry.serial == issued.serial
    assert entry.reason is x509.ReasonFlags.key_compromise
    foreign = issue_certificate(root, CertificateRequest(common_name="f.example.test"))
    with pytest.raises(CRLError, match="not issued by"):
        plugin.revoke_certificate(foreign.certificate)
    with pytest.raises(CRLError, match="reason"):
        plugin.revoke_certificate(issued.certificate, reason="bored")


# --------------------------------------------------------------------------- refusals


def test_malformed_csrs_are_refused(intermediate: Authority) -> None:
    for bad in (
        "garbage",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ):
        with pytest.raises(MalformedCSRError, match="csr"):
            issue_certificate(intermediate, CertificateRequest(csr_pem=bad))


def test_csr_with_a_broken_signature_is_refused(intermediate: Authority) -> None:
    csr = x509.load_pem_x509_csr(
        create_csr(generate_private_key(KeyType.RSA2048), "x.example.test").encode()
    )
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    with pytest.raises(MalformedCSRError, match="signature"):
        issue_certificate(intermediate, CertificateRequest(csr_pem=bytes(der)))


def test_weak_and_unsupported_keys_are_refused(intermediate: Authority) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(Subject("weak.example.test").to_name())
        .sign(weak, hashes.SHA256())
    )
    pem = csr.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(WeakKeyError, match="1024 bits"):
        issue_certificate(intermediate, CertificateRequest(csr_pem=pem))
    k1 = ec.generate_private_key(ec.SECP256K1())
    csr_k1 = create_csr(k1, "k1.example.test")
    with pytest.raises(WeakKeyError, match="secp256k1"):
        issue_certificate(intermediate, CertificateRequest(csr_pem=csr_k1))
    edkey = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(WeakKeyError, match="Ed25519"):
        load_private_key(
            edkey.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with pytest.raises(WeakKeyError, match="key_type"):
        issue_certificate(
            intermediate, CertificateRequest(common_name="a.example.test", key_type="dsa-1024")
        )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (CertificateRequest(common_name="www.evil.test"), "not under an allowed suffix"),
        (
            CertificateRequest(common_name="a.example.test", dns_names=["example.test.evil"]),
            "suffix",
        ),
        (CertificateRequest(common_name="a.example.test", ip_addresses=["10.0.0.1"]), "network"),
        (CertificateRequest(common_name="10.1.2.3"), "not in an allowed network"),
        (CertificateRequest(common_name="a.example.test", dns_names=["a_b.example.test"]), "valid"),
        (CertificateRequest(common_name="a.example.test", dns_names=["a.*.example.test"]), "valid"),
        (CertificateRequest(common_name="a.example.test", ip_addresses=["999.1.1.1"]), "IP"),
        (CertificateRequest(common_name="just a label"), "needs at least one"),
    ],
)
def test_disallowed_or_invalid_sans_are_refused(
    intermediate: Authority, request_: CertificateRequest, message: str
) -> None:
    with pytest.raises(SANPolicyError, match=message):
        issue_certificate(intermediate, request_)


def test_empty_allow_lists_allow_nothing() -> None:
    root = create_root_authority(
        "Client-only Root",
        key_type=KeyType.EC_P256,
        policy=AuthorityPolicy(allowed_dns_suffixes=(), allowed_ip_networks=()),
    )
    with pytest.raises(SANPolicyError, match="none"):
        issue_certificate(root, CertificateRequest(common_name="a.example.test"))
    issued = issue_certificate(root, CertificateRequest(common_name="agent", profile="client"))
    assert issued.info.common_name == "agent"


def test_validity_limits_are_enforced(intermediate: Authority) -> None:
    with pytest.raises(ValidityError, match="exceeds the authority's maximum of 397"):
        issue_certificate(
            intermediate, CertificateRequest(common_name="a.example.test", validity_days=398)
        )
    with pytest.raises(ValidityError, match="positive"):
        issue_certificate(
            intermediate, CertificateRequest(common_name="a.example.test", validity_days=0)
        )
    with pytest.raises(ValueError, match="timezone-aware"):
        issue_certificate(
            intermediate,
            CertificateRequest(common_name="a.example.test"),
            now=dt.datetime(2026, 1, 1),
        )
    short_lived = create_root_authority("Short Root", key_type=KeyType.EC_P256, validity_days=30)
    with pytest.raises(ValidityError, match="expires"):
        issue_certificate(
            short_lived, CertificateRequest(common_name="a.example.test", validity_days=60)
        )


def test_bad_profile_and_subject_fields_are_refused(intermediate: Authority) -> None:
    with pytest.raises(IssuanceError, match="profile"):
        issue_certificate(
            intermediate, CertificateRequest(common_name="a.example.test", profile="email")
        )
    with pytest.raises(IssuanceError, match="common_name"):
        issue_certificate(intermediate, CertificateRequest(dns_names=["a.example.test"]))
    with pytest.raises(IssuanceError, match="country"):
        issue_certificate(
            intermediate, CertificateRequest(common_name="a.example.test", country="usa")
        )


def test_every_refusal_is_a_value_error() -> None:
    for error in (
        IssuanceError,
        MalformedCSRError,
        WeakKeyError,
        SANPolicyError,
        ValidityError,
        AuthorityError,
        InvalidPEMError,
        ChainError,
        CRLError,
    ):
        assert issubclass(error, ValueError)


# --------------------------------------------------------------------------- inventory


def test_bundle_is_ordered_leaf_to_root(
    root: Authority, intermediate: Authority, server_cert: IssuedCertificate
) -> None:
    certs = [server_cert.certificate, intermediate.certificate, root.certificate]
    shuffled = certs[:]
    random.Random(7).shuffle(shuffled)
    parsed = parse_pem_bundle(certificates_to_pem([*shuffled, root.certificate]))
    assert order_chain(parsed) == certs
    assert order_chain([server_cert.certificate, intermediate.certificate]) == certs[:2]


def test_unrelated_certificates_are_not_a_chain(
    root: Authority, server_cert: IssuedCertificate
) -> None:
    stranger = create_root_authority("Stranger", key_type=KeyType.EC_P256)
    with pytest.raises(ChainError, match="exactly one leaf"):
        order_chain([server_cert.certificate, stranger.certificate])
    with pytest.raises(ChainError, match="no certificates"):
        order_chain([])
    with pytest.raises(InvalidPEMError, match="no PEM certificate"):
        parse_pem_bundle("hello")


def test_info_of_an_imported_pem_certificate(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    cert = tmp_path / "c.pem"
    result = openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        "10",
        "-subj",
        "/CN=legacy.example.test/O=Elsewhere",
        "-addext",
        "subjectAltName=DNS:legacy.example.test,IP:192.0.2.7",
    )
    assert result.returncode == 0, result.stderr
    text = cert.read_text()
    info = certificate_info(text)
    fingerprint = openssl("x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256").stdout
    serial = openssl("x509", "-in", str(cert), "-noout", "-serial").stdout
    assert fingerprint.strip().split("=")[1].replace(":", "") == info.sha256_fingerprint
    assert serial.strip().split("=")[1].lstrip("0") == info.serial_hex
    assert info.common_name == "legacy.example.test"
    assert info.dns_names == ("legacy.example.test",)
    assert info.ip_addresses == ("192.0.2.7",)
    assert (info.key_type, info.key_size) == ("RSA", 2048)
    assert info.self_signed and info.not_after - info.not_before == dt.timedelta(days=10)
    with pytest.raises(InvalidPEMError):
        certificate_info(b"\x30\x03\x02\x01")
