"""Bolt agents: heartbeats register them; the disk-failure pack reaches a real agent over mTLS."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from popcorn_testing import free_port, wait_until
from remediation_kit import (
    Pki,
    detail,
    drain,
    events,
    make_devices,
    make_pki,
    start,
    start_agent,
    steps,
)

from popcorn.audit import records_for
from popcorn.cli import cli  # as users call it: `popcorn bolt ...`
from popcorn.db import session_scope
from popcorn.remediation import service

pytestmark = pytest.mark.usefixtures("test_packs")

DISKS = {
    "disks": [
        {"name": "sda", "model": "ST8000", "smart": {"passed": True}},
        {"name": "sdb", "model": "ST8000", "smart": {"passed": False, "reallocated_sectors": 120}},
        {"name": "sdc", "model": "ST8000", "smart": {"passed": True, "pending_sectors": 3}},
    ]
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA; the runbooks' client certificate is installed where steps look for it."""
    made = make_pki(tmp_path_factory.mktemp("bolt-pki"))
    service.install_bolt_credentials(
        cert=made.client_cert.read_bytes(),
        key=made.client_key.read_bytes(),
        ca=made.ca.read_bytes(),
    )
    return made


def heartbeat(api: Any, role: str = "operator", **fields: Any) -> Any:
    body = {
        "name": "bolt-1",
        "device": "oca-1",
        "url": "https://10.0.0.1:8443",
        "version": "0.1.0",
        "actions": ["disk_health", "ping"],
        **fields,
    }
    return api.post("/api/v1/remediation/agents/heartbeat", role=role, json=body)


def test_heartbeats_register_agents_and_link_their_devices(api: Any) -> None:
    make_devices("oca-1")
    first = heartbeat(api)
    assert first.status_code == 200, first.json
    assert first.json["inventory_link"] == "linked" and not first.json["stale"]
    from popcorn.inventory.service import get_device

    with session_scope(readonly=True) as session:
        device = get_device(session=session, ref="oca-1")
        assert device.agent_url == "https://10.0.0.1:8443"
    again = heartbeat(api)
    assert (
        again.json["id"] == first.json["id"] and again.json["last_seen"] >= first.json["last_seen"]
    )
    moved = heartbeat(api, url="https://10.0.0.2:8443")
    assert moved.json["url"] == "https://10.0.0.2:8443"
    with session_scope(readonly=True) as session:
        changes = records_for(session, "remediation_agent", first.json["id"])
        assert [c.action for c in changes] == ["create", "update"]  # the plain beat is not a change
    orphan = heartbeat(api, name="bolt-2", device="nowhere-9")
    assert orphan.json["inventory_link"] == "no device 'nowhere-9' in inventory"
    listed = api.get("/api/v1/remediation/agents?device=oca-1", role="viewer").json
    assert [a["name"] for a in listed["items"]] == ["bolt-1"]
    assert heartbeat(api, role="viewer").status_code == 403
    bad = heartbeat(api, url="ftp://x")
    assert bad.status_code == 422 and "url" in bad.json["error"]["details"]["fields"]
    assert "remediation.agent.registered" in [t for t, _, _ in events()]


def test_disk_failure_through_a_real_agent_changes_inventory(
    pki: Pki, tmp_path: Path, live_server: str, tokens: dict[str, str]
) -> None:
    make_devices("oca-1", site="lax1")
    disks = tmp_path / "disks.json"
    disks.write_text(json.dumps(DISKS))
    agent = start_agent(
        tmp_path / "agent",
        pki,
        disk_health_file=str(disks),
        allowed_client_subjects=["popcorn-runbook"],
        popcorn_url=live_server,
        token=tokens["operator"],
        device="oca-1",
        agent_name="oca-1-bolt",
    )
    try:
        # The agent's own heartbeat reaches Popcorn and tells inventory where it listens.
        from popcorn.inventory.service import get_device

        def announced() -> bool:
            with session_scope(readonly=True) as session:
                return get_device(session=session, ref="oca-1").agent_url == agent.url

        wait_until(announced, timeout=30)
        execution_id = start(
            "storage.disk_failure", {"reason": "SMART alert"}, target={"device": "oca-1"}
        )
        drain()
    finally:
        agent.stop()
    shown = detail(execution_id)
    assert shown["status"] == "succeeded", shown["error"]
    found = steps(execution_id)
    report = found["check_disks"]["outputs"]["devices"][0]
    assert report["device"] == "oca-1" and report["failing"] == ["sdb"]
    assert report["degraded"] == ["sdc"] and report["source"] == "file"
    assert found["decide"]["outputs"]["failed"][0]["disk"] == "sdb"
    assert (
        "SMART overall health self-assessment failed"
        in found["decide"]["outputs"]["failed"][0]["reasons"]
    )
    assert found["take_out_of_service"]["outputs"]["devices"] == [
        {"device": "oca-1", "status": "maintenance"}
    ]
    assert found["verify"]["outputs"] == {
        "verified": [{"device": "oca-1", "status": "maintenance", "failed_disks": ["sdb"]}]
    }
    from popcorn.inventory.service import find_component, get_device

    with session_scope(readonly=True) as session:
        assert get_device(session=session, ref="oca-1").status == "maintenance"
        assert find_component(session=session, device="oca-1", component="sdb").status == "failed"
        assert find_component(session=session, device="oca-1", component="sda").status == "ok"
    shift = [p for t, _, p in events() if t == "remediation.traffic.shift_requested"]
    assert shift == [
        {
            "execution_id": execution_id,
            "step": "shift_traffic",
            "site": "lax1",
            "device": "oca-1",
            "reason": "SMART alert",
            "disks": ["sdb"],
        }
    ]
    audit = [
        json.loads(line) for line in (tmp_path / "agent" / "audit.jsonl").read_text().splitlines()
    ]
    assert any(entry.get("action") == "disk_health" for entry in audit)


def test_healthy_disks_stop_after_the_decision(pki: Pki, tmp_path: Path) -> None:
    make_devices("oca-2")
    disks = tmp_path / "disks.json"
    disks.write_text(json.dumps({"disks": [{"name": "sda", "smart": {"passed": True}}]}))
    agent = start_agent(tmp_path / "agent", pki, disk_health_file=str(disks))
    try:
        with session_scope() as session:
            service.record_heartbeat(session=session, name="b2", device="oca-2", url=agent.url)
        execution_id = start("storage.disk_failure", target={"device": "oca-2"})
        drain()
    finally:
        agent.stop()
    found = steps(execution_id)
    assert detail(execution_id)["status"] == "succeeded"
    assert found["take_out_of_service"]["status"] == "skipped"
    assert found["take_out_of_service"]["error"] == "not needed: no failed disk found"
    from popcorn.inventory.service import get_device

    with session_scope(readonly=True) as session:
        assert get_device(session=session, ref="oca-2").status == "active"


class _Garbage(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = b"<html>maintenance page</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def garbage_agent(pki: Pki) -> Iterator[str]:
    """Speaks TLS with a valid certificate but answers HTML instead of a run result."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_agents_down_or_answering_garbage_fail_the_step_after_retries(
    pki: Pki, garbage_agent: str
) -> None:
    make_devices("oca-1", "oca-2", "oca-3")
    with session_scope() as session:
        service.record_heartbeat(
            session=session, name="dead", device="oca-1", url=f"https://127.0.0.1:{free_port()}"
        )
        service.record_heartbeat(session=session, name="junk", device="oca-2", url=garbage_agent)
    down = start("testing.agent_probe", target={"device": "oca-1"})
    junk = start("testing.agent_probe", target={"device": "oca-2"})
    nowhere = start("testing.agent_probe", target={"device": "oca-3"})
    drain()
    probe = steps(down)["probe"]
    assert detail(down)["status"] == "failed"
    assert probe["attempts"] == 3 and "cannot talk to the agent" in probe["error"]
    assert sum("retrying" in entry["message"] for entry in probe["logs"]) == 2
    probe = steps(junk)["probe"]
    assert (
        probe["attempts"] == 3
        and "not JSON" in probe["error"]
        and "(bad_response)" in probe["error"]
    )
    probe = steps(nowhere)["probe"]
    assert probe["attempts"] == 1  # no agent at all: retrying cannot help
    assert "has no Bolt agent" in probe["error"]


def test_bolt_serve_reports_a_bad_config_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["bolt", "serve", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1
    assert missing.output.strip().startswith("Error: ") and "cannot read config" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    typo = tmp_path / "typo.yaml"
    typo.write_text("cert_file: a\nkey_file: b\nca_file: c\nprot: 1\n")
    wrong = runner.invoke(cli, ["bolt", "serve", "--config", str(typo)])
    assert wrong.exit_code == 1 and "prot" in wrong.output and "Traceback" not in wrong.output


def test_bolt_credentials_install_and_issue(pki: Pki, tmp_path: Path) -> None:
    runner = CliRunner()
    installed = runner.invoke(
        cli,
        [
            "bolt",
            "credentials",
            "--cert",
            str(pki.client_cert),
            "--key",
            str(pki.client_key),
            "--ca",
            str(pki.ca),
        ],
    )
    assert installed.exit_code == 0, installed.output
    bad = runner.invoke(
        cli,
        [
            "bolt",
            "credentials",
            "--cert",
            str(pki.client_key),
            "--key",
            str(pki.client_key),
            "--ca",
            str(pki.ca),
        ],
    )
    assert bad.exit_code == 1 and "cert: not a PEM certificate" in bad.output


def test_bolt_credentials_are_issued_by_the_agents_authority() -> None:
    from cryptography import x509

    from popcorn.certificates import service as certificates
    from popcorn.certificates.schemas import AuthorityCreate
    from popcorn.remediation.engine import bolt_dir

    before = {p: p.read_bytes() for p in bolt_dir().iterdir()}
    try:
        with session_scope() as session:
            certificates.create_authority(
                session=session,
                spec=AuthorityCreate(name="Bolt Root", key_type="ecdsa-p256", purpose="agents"),
            )
        issued = CliRunner().invoke(cli, ["bolt", "credentials", "--issue", "Bolt Root"])
        assert issued.exit_code == 0, issued.output
        cert = x509.load_pem_x509_certificates((bolt_dir() / "client.pem").read_bytes())[0]
        assert cert.subject.rfc4514_string().startswith("CN=popcorn-runbook")
        ca = x509.load_pem_x509_certificates((bolt_dir() / "ca.pem").read_bytes())[0]
        assert cert.issuer == ca.subject
    finally:
        for path, data in before.items():
            path.write_bytes(data)
