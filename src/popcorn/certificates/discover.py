"""Certificate discovery: what TLS endpoints actually serve.

Connects to many host:port endpoints at once, records the certificate chain
each one presents (without verifying it: discovery must also find expired
and self-signed certificates) and records, rather than raises, each
endpoint's failure, so one dead host never spoils a sweep.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography import x509

from popcorn.certificates.ca import CertificateError, CertificateInfo, certificate_info


class EndpointError(CertificateError):
    """An endpoint string cannot be parsed."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = 443
    server_name: str | None = None
    """SNI to send; defaults to `host` unless it is an IP address."""

    def __post_init__(self) -> None:
        if not self.host:
            raise EndpointError("host: must not be empty")
        if not 0 < self.port < 65536:
            raise EndpointError(f"port: {self.port} is not between 1 and 65535")

    @property
    def sni(self) -> str | None:
        if self.server_name is not None:
            return self.server_name or None
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return self.host
        return None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(text: str, *, default_port: int = 443) -> Endpoint:
    """`host`, `host:port`, `[v6]:port` or `host:port/sni` into an Endpoint."""
    value = text.strip()
    server_name = None
    if "/" in value:
        value, server_name = value.split("/", 1)
    host, port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise EndpointError(f"endpoint: {text!r} has an unclosed '['")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise EndpointError(f"endpoint: {text!r} is not host:port")
            port = _port(rest[1:], text)
    elif value.count(":") == 1:
        host, port_text = value.split(":")
        port = _port(port_text, text)
    return Endpoint(host, port, server_name)


def _port(value: str, text: str) -> int:
    if not value.isdigit():
        raise EndpointError(f"endpoint: {text!r} has a port that is not a number")
    return int(value)


@dataclass(frozen=True)
class DiscoveryResult:
    """What one endpoint served: its chain as sent (leaf first), or the error."""

    target: str
    endpoint: Endpoint | None
    chain: tuple[x509.Certificate, ...] = ()
    tls_version: str | None = None
    cipher: str | None = None
    error: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def leaf(self) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None

    def infos(self) -> list[CertificateInfo]:
        """Inventory facts of each served certificate, leaf first."""
        return [certificate_info(c) for c in self.chain]


def _discovery_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def _peer_chain_der(sock: ssl.SSLSocket) -> list[bytes]:
    """Every certificate the peer sent, leaf first.

    Python 3.13 exposes this publicly; 3.10 to 3.12 have it on the private
    `_sslobj`. Anything else falls back to the leaf alone.
    """
    public = getattr(sock, "get_unverified_chain", None)
    if public is not None:
        return [bytes(c) for c in public()]
    private = getattr(getattr(sock, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:
        certs = private() or []
        return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs]  # type: ignore[attr-defined]
    leaf = sock.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def fetch_chain(
    endpoint: Endpoint | str,
    *,
    timeout: float = 5.0,
    context: ssl.SSLContext | None = None,
) -> DiscoveryResult:
    """Connect to one endpoint and read the chain it serves; never raises for network errors."""
    try:
        target = endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint)
    except EndpointError as exc:
        return DiscoveryResult(str(endpoint), None, error=str(exc))
    label = str(target)
    started = time.perf_counter()
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            tls_context = context or _discovery_context()
            with tls_context.wrap_socket(raw, server_hostname=target.sni) as sock:
                ders = _peer_chain_der(sock)
                version = sock.version()
                cipher = sock.cipher()
        chain = tuple(x509.load_der_x509_certificate(d) for d in ders)
    except (OSError, ValueError) as exc:
        return DiscoveryResult(
            label, target, error=_describe(exc), elapsed=time.perf_counter() - started
        )
    if not chain:
        return DiscoveryResult(
            label,
            target,
            error="no certificate presented",
            elapsed=time.perf_counter() - started,
        )
    return DiscoveryResult(
        label,
        target,
        chain=chain,
        tls_version=version,
        cipher=cipher[0] if cipher else None,
        elapsed=time.perf_counter() - started,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def discover(
    endpoints: Iterable[Endpoint | str],
    *,
    timeout: float = 5.0,
    max_workers: int = 64,
) -> list[DiscoveryResult]:
    """Fetch the chains of many endpoints concurrently; results follow the input order.

    Endpoint strings that do not parse are reported as failed results too.
    """
    if max_workers < 1:
        raise EndpointError("max_workers: must be at least 1")
    targets: Sequence[Endpoint | str] = list(endpoints)
    context = _discovery_context()

    def one(item: Endpoint | str) -> DiscoveryResult:
        return fetch_chain(item, timeout=timeout, context=context)

    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
        return list(pool.map(one, targets))
