"""Helpers for the remediation tests: running executions in-process, a tiny PKI, Bolt agents."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from popcorn_testing import free_port
from sqlalchemy import select

from popcorn import jobs
from popcorn.db import session_scope
from popcorn.remediation import service


def start(runbook: str, inputs: dict[str, Any] | None = None, **kwargs: Any) -> int:
    with session_scope() as session:
        execution = service.start_runbook(
            session=session, runbook=runbook, inputs=inputs or {}, **kwargs
        )
        return execution.id


def drain(rounds: int = 50) -> int:
    """Run every pending remediation job in this process, as a worker would; returns how many."""
    ran = 0
    for _ in range(rounds):
        with session_scope(readonly=True) as session:
            ids = list(
                session.scalars(
                    select(jobs.JobRecord.id)
                    .where(
                        jobs.JobRecord.status == "pending",
                        jobs.JobRecord.task.like("remediation.%"),
                    )
                    .order_by(jobs.JobRecord.id)
                )
            )
        if not ids:
            return ran
        for job_id in ids:
            jobs.execute(job_id)
            ran += 1
    return ran


def detail(execution_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return service.execution_detail(session=session, execution_id=execution_id)


def steps(execution_id: int) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in detail(execution_id)["steps"]}


def events(prefix: str = "remediation.") -> list[Any]:
    from popcorn.outbox import OutboxEvent

    with session_scope(readonly=True) as session:
        rows = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type.like(prefix + "%")).order_by(OutboxEvent.id)
        )
        return [(r.type, r.object_id, dict(r.payload)) for r in rows]


# --- a small PKI ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("remediation-test-ca"))
        .issuer_name(_name("remediation-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {}
    for cn, server in (("bolt-agent", True), ("popcorn-runbook", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=12))
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
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        (directory / f"{cn}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{cn}.key").write_bytes(_key_pem(key))
        paths[cn] = (directory / f"{cn}.crt", directory / f"{cn}.key")
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(ca_path, *paths["bolt-agent"], *paths["popcorn-runbook"])


# --- Bolt agents as real processes -------------------------------------------------------------


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_agent(directory: Path, pki: Pki, **settings: Any) -> Agent:
    """`python -m popcorn.remediation.agent` with a config file, as on a host; waits until up."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "host": "127.0.0.1",
        "port": port,
        "cert_file": str(pki.server_cert),
        "key_file": str(pki.server_key),
        "ca_file": str(pki.ca),
        "audit_log": str(directory / "audit.jsonl"),
        "agent_name": "bolt-test",
        **settings,
    }
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    log = directory / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "popcorn.remediation.agent", "--config", str(path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "POPCORN_HOME": str(directory)},
        )
    agent = Agent(proc, f"https://127.0.0.1:{port}", log)
    import ssl

    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    deadline = time.monotonic() + 30
    with httpx.Client(verify=context, timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited: {log.read_text()}")
            try:
                http.get(agent.url + "/v1/health")
                return agent
            except httpx.HTTPError:
                time.sleep(0.1)
    agent.stop()
    raise RuntimeError(f"agent did not come up: {log.read_text()}")


# --- inventory ---------------------------------------------------------------------------------


def make_devices(
    *names: str, site: str = "lax1", disks: tuple[str, ...] = ("sda", "sdb", "sdc")
) -> None:
    """Storage appliances in inventory (through its service), each with its disks."""
    from popcorn.errors import Conflict
    from popcorn.inventory import service as inventory

    with session_scope() as session:
        for otype, data in (
            ("site", {"code": site, "name": site.upper()}),
            ("manufacturer", {"name": "Acme"}),
            ("device_model", {"manufacturer": "Acme", "model": "Store 9", "slug": "store-9"}),
        ):
            try:
                with session.begin_nested():
                    inventory.create_object(session=session, otype=otype, data=data)
            except Conflict:
                pass
        for name in names:
            inventory.create_object(
                session=session,
                otype="device",
                data={"name": name, "role": "storage-appliance", "model": "store-9", "site": site},
            )
            for disk in disks:
                inventory.create_object(
                    session=session,
                    otype="component",
                    data={"device": name, "name": disk, "kind": "disk"},
                )
