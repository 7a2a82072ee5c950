"""Helpers for the certificate tests: openssl, a real threaded TLS server, boto3 clients."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from popcorn.certificates.ca import IssuedCertificate, certificate_info, certificates_to_pem

CRL_URL = "http://pki.example.test/crl/intermediate.crl"
OCSP_URL = "http://pki.example.test/ocsp"


def require_openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("openssl command not installed")
    return path


def openssl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_openssl(), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)
    return path


class TLSServer:
    """A threaded TLS server answering one HTTP/1.0 reply per connection.

    The reply body names the client certificate's common name (or "anonymous")
    so tests can see what the server authenticated.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._workers: list[threading.Thread] = []

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            self._workers.append(worker)
            worker.start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                der = tls.getpeercert(binary_form=True)
                name = (certificate_info(der).common_name if der else None) or "anonymous"
                body = f"hello {name}".encode()
                tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (OSError, ValueError) as exc:
            self.errors.append(str(exc))
            conn.close()

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for worker in self._workers:
            worker.join(timeout=5)
        self.listener.close()


def server_context(
    issued: IssuedCertificate, *, client_ca_pem: str | None = None
) -> ssl.SSLContext:
    """A server context serving `issued` with its intermediates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    intermediates = certificates_to_pem(c for c in issued.chain if c.subject != c.issuer)
    with tempfile.TemporaryDirectory() as tmp:
        cert = Path(tmp, "fullchain.pem")
        cert.write_text(issued.certificate_pem + intermediates)
        key = Path(tmp, "key.pem")
        key.write_text(issued.private_key_pem or "")
        context.load_cert_chain(cert, key)
    if client_ca_pem is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=client_ca_pem)
    return context


@contextlib.contextmanager
def serving(issued: IssuedCertificate, *, client_ca_pem: str | None = None) -> Iterator[TLSServer]:
    with TLSServer(server_context(issued, client_ca_pem=client_ca_pem)) as server:
        yield server


def boto_client(service: str, endpoint: str) -> object:
    import boto3

    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
