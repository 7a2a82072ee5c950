"""CRLs checked by `openssl verify -crl_check`, OCSP answers checked by `openssl ocsp`."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from certhelpers import openssl, write
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509_ocsp

from popcorn.certificates.ca import (
    Authority,
    CertificateRequest,
    CRLError,
    IssuedCertificate,
    KeyType,
    RevokedEntry,
    build_crl,
    create_root_authority,
    issue_certificate,
)
from popcorn.certificates.ocsp import (
    CertificateStatus,
    OCSPStatus,
    build_ocsp_response,
    decode_get_request,
)

REVOKED_AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def leaves(intermediate: Authority) -> tuple[IssuedCertificate, IssuedCertificate]:
    good = issue_certificate(intermediate, CertificateRequest(common_name="good.example.test"))
    bad = issue_certificate(intermediate, CertificateRequest(common_name="bad.example.test"))
    return good, bad


# --------------------------------------------------------------------------- CRL


def test_crl_lists_revoked_serials_with_reason_number_and_next_update(
    intermediate: Authority, leaves: tuple[IssuedCertificate, IssuedCertificate]
) -> None:
    _, bad = leaves
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    signed = build_crl(
        intermediate,
        [
            RevokedEntry(bad.serial, REVOKED_AT, x509.ReasonFlags.key_compromise),
            (12345, REVOKED_AT, "superseded"),
            (777, REVOKED_AT, "unspecified"),
        ],
        crl_number=42,
        next_update=dt.timedelta(hours=6),
        now=now,
    )
    crl = x509.load_der_x509_crl(signed.der)
    assert x509.load_pem_x509_crl(signed.pem.encode()) == crl
    assert crl.is_signature_valid(intermediate.certificate.public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    assert crl.next_update_utc == now + dt.timedelta(hours=6)
    entry = crl.get_revoked_certificate_by_serial_number(bad.serial)
    assert entry is not None and entry.revocation_date_utc == REVOKED_AT
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value
    assert reason.reason is x509.ReasonFlags.key_compromise
    unspecified = crl.get_revoked_certificate_by_serial_number(777)
    assert unspecified is not None and len(unspecified.extensions) == 0
    assert len(crl) == 3


def test_openssl_refuses_a_revoked_certificate_and_accepts_the_others(
    tmp_path: Path,
    root: Authority,
    intermediate: Authority,
    leaves: tuple[IssuedCertificate, IssuedCertificate],
) -> None:
    good, bad = leaves
    crl = build_crl(
        intermediate,
        [RevokedEntry(bad.serial, REVOKED_AT, x509.ReasonFlags.key_compromise)],
        crl_number=1,
    )
    root_crl = build_crl(root, [], crl_number=1)
    ca = write(tmp_path / "root.pem", root.certificate_pem)
    untrusted = write(tmp_path / "inter.pem", intermediate.certificate_pem)
    crls = write(tmp_path / "crls.pem", crl.pem + root_crl.pem)

    def verify(leaf: IssuedCertificate, mode: str) -> tuple[int, str]:
        cert = write(tmp_path / "leaf.pem", leaf.certificate_pem)
        result = openssl(
            "verify",
            mode,
            "-CAfile",
            str(ca),
            "-untrusted",
            str(untrusted),
            "-CRLfile",
            str(crls),
            str(cert),
        )
        return result.returncode, result.stdout + result.stderr

    for mode in ("-crl_check", "-crl_check_all"):
        code, output = verify(bad, mode)
        assert code != 0 and "certificate revoked" in output
        code, output = verify(good, mode)
        assert code == 0, output


def test_revoking_the_same_serial_twice_is_refused(intermediate: Authority) -> None:
    with pytest.raises(CRLError, match="listed more than once"):
        build_crl(
            intermediate,
            [RevokedEntry(5, REVOKED_AT), RevokedEntry(5, REVOKED_AT, x509.ReasonFlags.superseded)],
            crl_number=2,
        )


def test_bad_crl_input_is_refused(intermediate: Authority) -> None:
    with pytest.raises(CRLError, match="crl_number"):
        build_crl(intermediate, [], crl_number=-1)
    with pytest.raises(CRLError, match="timezone"):
        build_crl(intermediate, [RevokedEntry(9, dt.datetime(2026, 1, 1))], crl_number=1)
    with pytest.raises(CRLError, match="reason"):
        build_crl(intermediate, [(9, REVOKED_AT, "lost-it")], crl_number=1)
    with pytest.raises(CRLError, match="next_update"):
        build_crl(intermediate, [], crl_number=1, next_update=dt.timedelta(0))


# --------------------------------------------------------------------------- OCSP


def lookup_for(bad: IssuedCertificate, good: IssuedCertificate) -> dict[int, CertificateStatus]:
    return {
        bad.serial: CertificateStatus.revoked(REVOKED_AT, x509.ReasonFlags.key_compromise),
        good.serial: CertificateStatus.good(),
    }


def ocsp_status(
    tmp_path: Path,
    root: Authority,
    intermediate: Authority,
    leaf: IssuedCertificate,
    statuses: dict[int, CertificateStatus],
) -> tuple[int, str]:
    """Build a request with openssl, answer it, and let openssl verify the answer."""
    issuer = write(tmp_path / "inter.pem", intermediate.certificate_pem)
    cert = write(tmp_path / "leaf.pem", leaf.certificate_pem)
    ca = write(tmp_path / "root.pem", root.certificate_pem)
    request = tmp_path / "req.der"
    made = openssl("ocsp", "-issuer", str(issuer), "-cert", str(cert), "-reqout", str(request))
    assert made.returncode == 0, made.stderr
    response = build_ocsp_response(
        request.read_bytes(), intermediate, lambda s: statuses.get(s, CertificateStatus.unknown())
    )
    answer = write(tmp_path / "resp.der", response)
    nonce = openssl(
        "ocsp",
        "-respin",
        str(answer),
        "-reqin",
        str(request),
        "-CAfile",
        str(ca),
        "-verify_other",
        str(issuer),
    )
    assert nonce.returncode == 0, nonce.stdout + nonce.stderr
    assert "nonce" not in (nonce.stdout + nonce.stderr).lower()
    result = openssl(
        "ocsp",
        "-respin",
        str(answer),
        "-issuer",
        str(issuer),
        "-cert",
        str(cert),
        "-CAfile",
        str(ca),
        "-no_nonce",
    )
    return result.returncode, result.stdout + result.stderr


def test_openssl_ocsp_reads_good_revoked_and_unknown(
    tmp_path: Path,
    root: Authority,
    intermediate: Authority,
    leaves: tuple[IssuedCertificate, IssuedCertificate],
) -> None:
    good, bad = leaves
    statuses = lookup_for(bad, good)
    code, output = ocsp_status(tmp_path, root, intermediate, good, statuses)
    assert code == 0 and "Response verify OK" in output and "leaf.pem: good" in output
    code, output = ocsp_status(tmp_path, root, intermediate, bad, statuses)
    assert "leaf.pem: revoked" in output and "Reason: keyCompromise" in output
    assert "Revocation Time: Jan  2 03:04:05 2026 GMT" in output
    code, output = ocsp_status(tmp_path, root, intermediate, good, {})
    assert "leaf.pem: unknown" in output


@pytest.fixture
def ocsp_server(
    intermediate: Authority, leaves: tuple[IssuedCertificate, IssuedCertificate]
) -> Iterator[str]:
    good, bad = leaves
    statuses = lookup_for(bad, good)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, request: bytes) -> None:
            body = build_ocsp_response(
                request, intermediate, lambda s: statuses.get(s, CertificateStatus.unknown())
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/ocsp-response")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self._answer(self.rfile.read(int(self.headers["Content-Length"])))

        def do_GET(self) -> None:
            self._answer(decode_get_request(self.path.lstrip("/")))

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_openssl_ocsp_client_over_http(
    tmp_path: Path,
    root: Authority,
    intermediate: Authority,
    leaves: tuple[IssuedCertificate, IssuedCertificate],
    ocsp_server: str,
) -> None:
    good, bad = leaves
    issuer = write(tmp_path / "inter.pem", intermediate.certificate_pem)
    ca = write(tmp_path / "root.pem", root.certificate_pem)
    for name, leaf, expected in (("good", good, "good"), ("bad", bad, "revoked")):
        cert = write(tmp_path / f"{name}.pem", leaf.certificate_pem)
        result = openssl(
            "ocsp",
            "-url",
            ocsp_server,
            "-issuer",
            str(issuer),
            "-cert",
            str(cert),
            "-CAfile",
            str(ca),
            "-timeout",
            "10",
        )
        output = result.stdout + result.stderr
        assert "Response verify OK" in output, output
        assert f"{name}.pem: {expected}" in output


def test_ocsp_get_requests_are_answered(
    intermediate: Authority,
    leaves: tuple[IssuedCertificate, IssuedCertificate],
    ocsp_server: str,
) -> None:
    import base64
    import urllib.parse

    import httpx

    good, _ = leaves
    request = (
        x509_ocsp.OCSPRequestBuilder()
        .add_certificate(good.certificate, intermediate.certificate, hashes.SHA256())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    path = urllib.parse.quote(base64.b64encode(request).decode(), safe="")
    response = x509_ocsp.load_der_ocsp_response(httpx.get(f"{ocsp_server}/{path}").content)
    assert response.response_status is x509_ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is x509_ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == good.serial


def test_malformed_and_foreign_requests_get_ocsp_errors(
    intermediate: Authority, leaves: tuple[IssuedCertificate, IssuedCertificate]
) -> None:
    def status(request: bytes) -> x509_ocsp.OCSPResponseStatus:
        der = build_ocsp_response(request, intermediate, lambda s: CertificateStatus.good())
        return x509_ocsp.load_der_ocsp_response(der).response_status

    assert status(b"not an ocsp request") is x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert status(decode_get_request("%%%")) is x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    other = create_root_authority("Other OCSP Root", key_type=KeyType.EC_P256)
    foreign = issue_certificate(other, CertificateRequest(common_name="x.example.test"))
    request = (
        x509_ocsp.OCSPRequestBuilder()
        .add_certificate(foreign.certificate, other.certificate, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    assert status(request) is x509_ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_revoked_status_requires_a_time() -> None:
    with pytest.raises(ValueError, match="revoked_at"):
        CertificateStatus(OCSPStatus.REVOKED)
