"""Fixtures for the Bolt agent: a small test PKI and agents running as real processes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from popcorn.remediation.agent.client import AgentClient

REPO = Path(__file__).resolve().parents[3]


# --- a small PKI ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: KeyPair
    client: KeyPair  # CN=popcorn-runbook, allowed
    intruder: KeyPair  # same CA, CN not on the allow list
    rogue: KeyPair  # signed by another CA
    rogue_ca: Path


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Popcorn"),
        ]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _make_ca(directory: Path, cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


def _issue(
    directory: Path,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    cn: str,
    *,
    server: bool,
) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = KeyPair(cert=directory / f"{cn}.crt", key=directory / f"{cn}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pair.key, key)
    return pair


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert, ca_path = _make_ca(directory, "popcorn-test-ca")
    rogue_key, rogue_cert, rogue_path = _make_ca(directory, "rogue-ca")
    return Pki(
        ca=ca_path,
        server=_issue(directory, ca_key, ca_cert, "bolt-agent", server=True),
        client=_issue(directory, ca_key, ca_cert, "popcorn-runbook", server=False),
        intruder=_issue(directory, ca_key, ca_cert, "intruder", server=False),
        rogue=_issue(directory, rogue_key, rogue_cert, "rogue-runbook", server=False),
        rogue_ca=rogue_path,
    )


# --- agents as real processes -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningAgent:
    proc: subprocess.Popen[bytes]
    url: str
    config_path: Path
    audit_log: Path
    log_path: Path
    pki: Pki
    clients: list[AgentClient] = field(default_factory=list)

    def client(self, pair: KeyPair | None = None, ca: Path | None = None) -> AgentClient:
        pair = pair or self.pki.client
        client = AgentClient(self.url, pair.cert, pair.key, ca or self.pki.ca, timeout=20)
        self.clients.append(client)
        return client

    def audit(self) -> list[dict[str, Any]]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_agent(directory: Path, pki: Pki, **settings: Any) -> RunningAgent:
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "cert_file": str(pki.server.cert),
        "key_file": str(pki.server.key),
        "ca_file": str(pki.ca),
        "audit_log": str(directory / "audit.jsonl"),
        "agent_name": "cache-01",
        "kill_grace": 1.0,
        **settings,
    }
    config_path = directory / "agent.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = directory / "agent.log"
    env = {**os.environ, "POPCORN_HOME": str(directory / "home")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "popcorn.remediation.agent", "--config", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env=env,
        )
    agent = RunningAgent(
        proc=proc,
        url=f"https://127.0.0.1:{port}",
        config_path=config_path,
        audit_log=directory / "audit.jsonl",
        log_path=log_path,
        pki=pki,
    )
    _wait_ready(agent)
    return agent


def _wait_ready(agent: RunningAgent) -> None:
    context = ssl.create_default_context(cafile=str(agent.pki.ca))
    context.load_cert_chain(str(agent.pki.client.cert), str(agent.pki.client.key))
    deadline = time.monotonic() + 30
    with httpx.Client(verify=context, timeout=2) as http:
        while time.monotonic() < deadline:
            if agent.proc.poll() is not None:
                pytest.fail(f"agent exited with {agent.proc.returncode}:\n{agent.log()}")
            try:
                if http.get(f"{agent.url}/v1/health").status_code in (200, 403):
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
    agent.stop()
    pytest.fail(f"agent did not become ready:\n{agent.log()}")


@pytest.fixture
def agent_factory(tmp_path: Path, pki: Pki) -> Iterator[Any]:
    started: list[RunningAgent] = []

    def factory(name: str = "agent", **settings: Any) -> RunningAgent:
        agent = start_agent(tmp_path / name, pki, **settings)
        started.append(agent)
        return agent

    yield factory
    for agent in started:
        agent.stop()


# --- a tiny Popcorn stand-in for heartbeats ---------------------------------------------------


@dataclass
class Recorder:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")


@pytest.fixture
def popcorn_stub() -> Iterator[Recorder]:
    """Records POSTs; answers the first `fail_first` with 503, then 200; GET gets non-JSON."""
    recorder = Recorder(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with recorder.lock:
                recorder.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
                )
                failing = len(recorder.requests) <= recorder.fail_first
            self.send_response(503 if failing else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            body = b"<html>not an agent</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join()
