"""Bolt agents' mutual-TLS certificates from Popcorn's CA, used by a real agent and its client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from certhelpers import openssl, write

from popcorn.certificates import ca, service
from popcorn.certificates.schemas import AuthorityCreate
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.listing import parse_list_params
from popcorn.remediation.agent.client import AgentClient
from popcorn.remediation.agent.config import AgentConfig
from popcorn.remediation.agent.errors import AgentError
from popcorn.remediation.agent.server import BoltAgent


def credentials(directory: Path, name: str, issued: service.AgentCertificate) -> tuple[Path, Path]:
    cert = write(directory / f"{name}.crt", issued.cert_pem + issued.chain_pem)
    key = write(directory / f"{name}.key", issued.key_pem)
    return cert, key


@pytest.fixture
def agents_authority(stored_pki: dict[str, int]) -> int:
    """An issuing authority for Bolt agents only, under the test root."""
    with session_scope() as session:
        return service.create_authority(
            session=session,
            spec=AuthorityCreate(
                name="Agent Issuing",
                kind="intermediate",
                purpose="agents",
                parent=stored_pki["root"],
                key_type="ecdsa-p256",
                validity_days=1000,
                allowed_dns_suffixes=["localhost"],
                allowed_ip_networks=["127.0.0.0/8"],
            ),
        ).id


@pytest.fixture
def agent_pki(agents_authority: int, tmp_path: Path) -> dict[str, Path]:
    with session_scope() as session:
        server = service.issue_agent_certificate(
            session=session,
            authority=agents_authority,
            agent_name="oca-lax-017",
            dns_names=["localhost"],
            ip_addresses=["127.0.0.1"],
        )
        runbook = service.issue_agent_certificate(
            session=session,
            authority="Agent Issuing",
            agent_name="popcorn-runbook",
            profile="client",
        )
        bundle = service.ca_bundle(session=session, authority=agents_authority)
        other = service.create_authority(
            session=session,
            spec=AuthorityCreate(name="Rogue Root", key_type="ecdsa-p256", purpose="agents"),
        )
        rogue = service.issue_agent_certificate(
            session=session, authority=other.id, agent_name="popcorn-runbook", profile="client"
        )
    agent_cert, agent_key = credentials(tmp_path, "agent", server)
    client_cert, client_key = credentials(tmp_path, "runbook", runbook)
    rogue_cert, rogue_key = credentials(tmp_path, "rogue", rogue)
    return {
        "ca": write(tmp_path / "ca.pem", bundle),
        "agent_cert": agent_cert,
        "agent_key": agent_key,
        "client_cert": client_cert,
        "client_key": client_key,
        "rogue_cert": rogue_cert,
        "rogue_key": rogue_key,
    }


@pytest.fixture
def agent(agent_pki: dict[str, Path], tmp_path: Path) -> Iterator[BoltAgent]:
    config = AgentConfig(
        host="127.0.0.1",
        port=0,
        cert_file=agent_pki["agent_cert"],
        key_file=agent_pki["agent_key"],
        ca_file=agent_pki["ca"],
        allowed_client_subjects=["popcorn-runbook"],
        audit_log=tmp_path / "audit.jsonl",
    )
    bolt = BoltAgent(config)
    bolt.start()
    try:
        yield bolt
    finally:
        bolt.stop()


def test_agent_and_runbook_talk_over_mutual_tls(
    agent: BoltAgent, agent_pki: dict[str, Path]
) -> None:
    for host in ("localhost", "127.0.0.1"):
        with AgentClient(
            f"https://{host}:{agent.port}",
            agent_pki["client_cert"],
            agent_pki["client_key"],
            agent_pki["ca"],
        ) as client:
            health = client.health()
        assert health["status"] == "ok"


def test_a_client_certificate_from_another_authority_is_refused(
    agent: BoltAgent, agent_pki: dict[str, Path]
) -> None:
    with (
        AgentClient(
            f"https://localhost:{agent.port}",
            agent_pki["rogue_cert"],
            agent_pki["rogue_key"],
            agent_pki["ca"],
        ) as client,
        pytest.raises(AgentError),
    ):
        client.health()


def test_agent_certificates_have_the_right_usages_and_are_in_the_inventory(
    agent_pki: dict[str, Path],
) -> None:
    agent = ca.certificate_info(ca.parse_pem_bundle(agent_pki["agent_cert"].read_text())[0])
    assert agent.common_name == "oca-lax-017"
    assert agent.dns_names == ("localhost",) and agent.ip_addresses == ("127.0.0.1",)
    purposes = openssl("x509", "-in", str(agent_pki["agent_cert"]), "-noout", "-purpose").stdout
    assert "SSL server : Yes" in purposes and "SSL client : Yes" in purposes
    client = openssl("x509", "-in", str(agent_pki["client_cert"]), "-noout", "-purpose").stdout
    assert "SSL server : No" in client and "SSL client : Yes" in client
    with session_scope(readonly=True) as session:
        page = service.list_certificates(
            session=session, params=parse_list_params({"owner__isw": "bolt-agent:"})
        )
        names = sorted(r.common_name for r in page.items)
    assert names == ["oca-lax-017", "popcorn-runbook", "popcorn-runbook"]


def test_an_agent_server_certificate_needs_a_name(agents_authority: int) -> None:
    with (
        pytest.raises(InvalidInput, match="needs at least one DNS name"),
        session_scope() as session,
    ):
        service.issue_agent_certificate(
            session=session, authority=agents_authority, agent_name="nameless"
        )
