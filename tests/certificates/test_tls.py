"""Issued certificates served by a real TLS server, checked by openssl s_client and httpx."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from certhelpers import openssl, serving, write

from popcorn.certificates.ca import (
    Authority,
    CertificateRequest,
    IssuedCertificate,
    KeyType,
    certificates_to_pem,
    create_root_authority,
    issue_certificate,
)


def client_context(
    root: Authority, client: IssuedCertificate | None = None, directory: Path | None = None
) -> ssl.SSLContext:
    """A client trusting `root`, presenting `client` (and its intermediates) if given."""
    context = ssl.create_default_context(cadata=root.certificate_pem)
    if client is not None and directory is not None:
        chain = certificates_to_pem(c for c in client.chain if c.subject != c.issuer)
        cert = write(directory / "client.pem", client.certificate_pem + chain)
        key = write(directory / "client.key", client.private_key_pem or "")
        context.load_cert_chain(cert, key)
    return context


def s_client(port: int, ca: Path, name: str) -> tuple[int, str]:
    result = openssl(
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        name,
        "-CAfile",
        str(ca),
        "-verify_return_error",
        "-verify_hostname",
        name,
        "-brief",
    )
    return result.returncode, result.stdout + result.stderr


def test_openssl_s_client_verifies_the_served_chain(
    tmp_path: Path, root: Authority, server_cert: IssuedCertificate
) -> None:
    ca = write(tmp_path / "root.pem", root.certificate_pem)
    with serving(server_cert) as server:
        code, output = s_client(server.port, ca, "www.example.test")
    assert code == 0, output
    assert "Verification: OK" in output


def test_openssl_s_client_refuses_a_server_from_another_root(
    tmp_path: Path, server_cert: IssuedCertificate
) -> None:
    other = create_root_authority("Other Root", key_type=KeyType.EC_P256)
    ca = write(tmp_path / "other.pem", other.certificate_pem)
    with serving(server_cert) as server:
        code, output = s_client(server.port, ca, "www.example.test")
    assert code != 0
    assert "unable to get local issuer certificate" in output


def test_httpx_trusting_the_root_talks_to_the_server(
    root: Authority, server_cert: IssuedCertificate
) -> None:
    with serving(server_cert) as server:
        response = httpx.get(f"https://localhost:{server.port}/", verify=client_context(root))
        by_ip = httpx.get(f"https://127.0.0.1:{server.port}/", verify=client_context(root))
    assert response.status_code == 200 and response.text == "hello anonymous"
    assert by_ip.status_code == 200


def test_httpx_refuses_the_server_without_trusting_the_root(
    server_cert: IssuedCertificate,
) -> None:
    with serving(server_cert) as server, pytest.raises(httpx.ConnectError, match="CERTIFICATE"):
        httpx.get(f"https://localhost:{server.port}/", verify=ssl.create_default_context())


@pytest.fixture(scope="module")
def agent_cert(intermediate: Authority) -> IssuedCertificate:
    return issue_certificate(
        intermediate, CertificateRequest(common_name="bolt-agent-7", profile="client")
    )


def test_mutual_tls_accepts_an_agent_certificate_from_the_ca(
    tmp_path: Path, root: Authority, server_cert: IssuedCertificate, agent_cert: IssuedCertificate
) -> None:
    with serving(server_cert, client_ca_pem=root.certificate_pem) as server:
        response = httpx.get(
            f"https://localhost:{server.port}/", verify=client_context(root, agent_cert, tmp_path)
        )
    assert response.text == "hello bolt-agent-7"


def test_mutual_tls_rejects_a_client_without_a_certificate(
    root: Authority, server_cert: IssuedCertificate
) -> None:
    with (
        serving(server_cert, client_ca_pem=root.certificate_pem) as server,
        pytest.raises(httpx.TransportError),
    ):
        httpx.get(f"https://localhost:{server.port}/", verify=client_context(root))
    assert any("CERTIFICATE" in e for e in server.errors)


def test_mutual_tls_rejects_a_client_certificate_from_another_ca(
    tmp_path: Path, root: Authority, server_cert: IssuedCertificate
) -> None:
    rogue_ca = create_root_authority("Rogue", key_type=KeyType.EC_P256)
    rogue = issue_certificate(
        rogue_ca, CertificateRequest(common_name="bolt-agent-7", profile="client")
    )
    with (
        serving(server_cert, client_ca_pem=root.certificate_pem) as server,
        pytest.raises(httpx.TransportError),
    ):
        httpx.get(f"https://localhost:{server.port}/", verify=client_context(root, rogue, tmp_path))
    assert any("certificate verify failed" in e for e in server.errors)


def test_mutual_tls_rejects_a_server_only_certificate_as_client_identity(
    tmp_path: Path, root: Authority, intermediate: Authority, server_cert: IssuedCertificate
) -> None:
    server_only = issue_certificate(
        intermediate, CertificateRequest(common_name="svc.example.test", profile="server")
    )
    with (
        serving(server_cert, client_ca_pem=root.certificate_pem) as server,
        pytest.raises(httpx.TransportError),
    ):
        httpx.get(
            f"https://localhost:{server.port}/", verify=client_context(root, server_only, tmp_path)
        )
    assert any("unsuitable certificate purpose" in e for e in server.errors)
