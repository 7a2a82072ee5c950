"""Discovery against real local TLS servers, and against endpoints that fail in each way."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
from certhelpers import TLSServer, server_context, serving

from popcorn.certificates.ca import (
    Authority,
    CertificateRequest,
    IssuedCertificate,
    issue_certificate,
)
from popcorn.certificates.discover import (
    Endpoint,
    EndpointError,
    discover,
    fetch_chain,
    parse_endpoint,
)


def test_the_full_served_chain_is_read_leaf_first(
    intermediate: Authority, server_cert: IssuedCertificate
) -> None:
    with serving(server_cert) as server:
        result = fetch_chain(f"127.0.0.1:{server.port}", timeout=5)
    assert result.ok, result.error
    assert result.chain == (server_cert.certificate, intermediate.certificate)
    assert result.leaf == server_cert.certificate
    assert result.tls_version == "TLSv1.3" and result.cipher
    infos = result.infos()
    assert infos[0].sha256_fingerprint == server_cert.info.sha256_fingerprint
    assert infos[1].is_ca


def test_sni_selects_the_certificate_discovered(
    intermediate: Authority, server_cert: IssuedCertificate
) -> None:
    other = issue_certificate(intermediate, CertificateRequest(common_name="api.example.test"))
    default = server_context(server_cert)
    alternative = server_context(other)

    def choose(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        if name == "api.example.test":
            sock.context = alternative

    default.sni_callback = choose
    with TLSServer(default) as server:
        named = fetch_chain(Endpoint("127.0.0.1", server.port, "api.example.test"))
        plain = fetch_chain(Endpoint("127.0.0.1", server.port))
    assert named.leaf == other.certificate
    assert plain.leaf == server_cert.certificate


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Accepts TCP connections (via the backlog) but never speaks."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.fixture
def ssh_like_port() -> Iterator[int]:
    """Speaks something that is not TLS."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n" * 20)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def test_failures_are_recorded_per_endpoint_in_input_order(
    server_cert: IssuedCertificate, silent_port: int, ssh_like_port: int
) -> None:
    refused = closed_port()
    with serving(server_cert) as server:
        targets: list[Endpoint | str] = [
            f"127.0.0.1:{server.port}",
            f"127.0.0.1:{refused}",
            Endpoint("127.0.0.1", silent_port),
            f"127.0.0.1:{ssh_like_port}",
            "host:notaport",
            f"localhost:{server.port}",
        ]
        results = discover(targets, timeout=0.5, max_workers=4)
    assert [r.target for r in results] == [
        f"127.0.0.1:{server.port}",
        f"127.0.0.1:{refused}",
        f"127.0.0.1:{silent_port}",
        f"127.0.0.1:{ssh_like_port}",
        "host:notaport",
        f"localhost:{server.port}",
    ]
    assert results[0].ok and results[5].ok
    assert results[1].error == "connection refused"
    assert results[2].error == "timed out"
    assert results[3].error is not None and results[3].error.startswith("TLS error")
    assert results[4].error is not None and "port" in results[4].error
    assert results[4].endpoint is None


def test_many_endpoints_concurrently(server_cert: IssuedCertificate) -> None:
    with serving(server_cert) as server:
        results = discover([f"127.0.0.1:{server.port}"] * 30, timeout=5, max_workers=8)
    assert len(results) == 30
    assert all(r.leaf == server_cert.certificate for r in results)


def test_endpoint_strings_parse() -> None:
    assert parse_endpoint("example.test") == Endpoint("example.test", 443)
    assert parse_endpoint("example.test:8443") == Endpoint("example.test", 8443)
    assert parse_endpoint("[::1]:9443") == Endpoint("::1", 9443)
    assert parse_endpoint("10.0.0.1:443/www.example.test") == Endpoint(
        "10.0.0.1", 443, "www.example.test"
    )
    assert parse_endpoint("::1") == Endpoint("::1", 443)
    assert Endpoint("10.0.0.1").sni is None and Endpoint("a.test").sni == "a.test"
    assert str(Endpoint("::1", 8443)) == "[::1]:8443"
    for bad in ("[::1", "host:99999", "host:", ":443", "[::1]x"):
        with pytest.raises(EndpointError):
            parse_endpoint(bad)
    assert discover([]) == []
    with pytest.raises(EndpointError, match="max_workers"):
        discover(["a.test"], max_workers=0)


def test_inventory_sources_need_the_inventory_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the inventory domain an inventory sweep is a clear 503, not an import error."""
    from popcorn import domains
    from popcorn.certificates import service
    from popcorn.db import session_scope
    from popcorn.errors import Unavailable

    monkeypatch.setattr(domains, "installed", lambda name: name != "inventory")
    with pytest.raises(Unavailable, match="inventory"), session_scope() as session:
        service.inventory_endpoints(session=session, scope={"site": "lax1"}, ports=[443])
