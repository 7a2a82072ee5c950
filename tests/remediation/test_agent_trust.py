"""A Bolt agent trusts only client certificates its own authority issued.

Regression test for issue #12 item 3 (agent side): an operator could have a certificate
named like the runbook engine issued by another authority of the same platform and call
`restart_service` on every agent directly, skipping approvals, the circuit and the audit.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from remediation_kit import Pki, start_agent

NOW = dt.datetime.now(dt.UTC)
Issuer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _cert(cn: str, issuer: Issuer | None, *, ca: bool = False, server: bool = False) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(hours=12))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256()), key


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _write(path: Path, cert: Issuer, *chain: x509.Certificate) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(_pem(cert[0], *chain))
    path.with_suffix(".key").write_bytes(
        cert[1].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path.with_suffix(".crt"), path.with_suffix(".key")


def _call(url: str, ca: Path, cert: tuple[Path, Path]) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    with httpx.Client(verify=context, timeout=10) as http:
        return http.get(url + "/v1/health")


@pytest.mark.slow
def test_the_engine_name_from_another_authority_is_refused(tmp_path: Path) -> None:
    root = _cert("Popcorn Root", None, ca=True)
    agents = _cert("Popcorn Agents", root, ca=True)  # purpose "agents": the platform only
    people = _cert("Popcorn People", root, ca=True)  # issues to operators on request
    stranger = _cert("Somebody Else", None, ca=True)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(_pem(agents[0], root[0]))  # as certificates' ca_bundle writes it
    server = _write(tmp_path / "agent", _cert("bolt-agent", agents, server=True))
    engine = _write(tmp_path / "engine", _cert("popcorn-runbook", agents))
    impostor = _write(tmp_path / "impostor", _cert("popcorn-runbook", people), people[0])
    outsider = _write(tmp_path / "outsider", _cert("popcorn-runbook", stranger))

    pki = Pki(ca_file, server[0], server[1], engine[0], engine[1])
    agent = start_agent(tmp_path / "bolt", pki, allowed_client_subjects=["popcorn-runbook"])
    try:
        assert _call(agent.url, ca_file, engine).status_code == 200
        refused = _call(agent.url, ca_file, impostor)
        assert refused.status_code == 403
        assert "not issued by this agent's authority" in refused.json()["error"]["message"]
        with pytest.raises(httpx.HTTPError):  # not even a TLS session for a foreign CA
            _call(agent.url, ca_file, outsider)
    finally:
        agent.stop()
    audit = (tmp_path / "bolt" / "audit.jsonl").read_text()
    assert "not issued by this agent" in audit
