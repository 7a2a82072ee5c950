"""`popcorn certs`: what an operator types, and the one-line errors they get back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from certhelpers import openssl, serving, write
from click.testing import CliRunner, Result

from popcorn.certificates import ca
from popcorn.certificates.cli import group
from popcorn.cli import cli

cli.add_command(group)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["certs", *args], catch_exceptions=False)


def as_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # a list prints as {"items": [...]}, like every list of the CLI
    return data["items"] if isinstance(data, dict) and list(data) == ["items"] else data


@pytest.fixture
def authorities() -> tuple[int, int]:
    root = as_json("authority", "create", "cli-root", "--path-length", "1")
    inter = as_json(
        "authority",
        "create",
        "cli-issuing",
        "--kind",
        "intermediate",
        "--parent",
        "cli-root",
        "--key-type",
        "ecdsa-p256",
        "--validity-days",
        "900",
        "--allow-dns",
        "example.test",
        "--allow-dns",
        "localhost",
        "--public-url",
        "http://pki.example.test",
    )
    return root["id"], inter["id"]


def test_authority_list_and_bundle(authorities: tuple[int, int]) -> None:
    listed = as_json("authority", "list")
    assert [a["name"] for a in listed] == ["cli-root", "cli-issuing"]
    table = run("authority", "list")
    assert table.exit_code == 0 and "cli-root" in table.output
    bundle = run("authority", "bundle", "cli-issuing")
    assert bundle.output.count("BEGIN CERTIFICATE") == 2


def test_issue_list_show_export_and_verify(authorities: tuple[int, int], tmp_path: Path) -> None:
    issued = as_json(
        "issue",
        "--authority",
        "cli-issuing",
        "--cn",
        "www.example.test",
        "--dns",
        "localhost",
        "--owner",
        "alice",
        "--days",
        "30",
    )
    assert issued["status"] == "expiring" and issued["owner"] == "alice"
    assert [c["id"] for c in as_json("list", "--owner", "alice")] == [issued["id"]]
    assert as_json("list", "--status", "active") == []
    shown = as_json("show", str(issued["id"]))
    assert shown["domains"] == ["www.example.test", "localhost"]
    pem = run("show", str(issued["id"]), "--pem").output
    out = tmp_path / "www.p12"
    export = run(
        "export", str(issued["id"]), "--format", "pkcs12", "--password", "pw", "--out", str(out)
    )
    assert export.exit_code == 0, export.output
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    parsed = openssl("pkcs12", "-in", str(out), "-passin", "pass:pw", "-nokeys", "-clcerts")
    assert parsed.returncode == 0 and "subject=CN = www.example.test" in parsed.stdout
    root_pem = run("authority", "show", "cli-root", "--json")
    ca_file = write(tmp_path / "root.pem", json.loads(root_pem.output)["certificate_pem"])
    chain = write(tmp_path / "full.pem", pem)
    verify = openssl("verify", "-CAfile", str(ca_file), "-untrusted", str(chain), str(chain))
    assert verify.returncode == 0, verify.stderr


def test_errors_are_one_line(authorities: tuple[int, int], tmp_path: Path) -> None:
    too_long = run("issue", "--authority", "cli-issuing", "--cn", "a.example.test", "--days", "999")
    assert too_long.exit_code == 1
    assert too_long.output.strip().splitlines() == [
        "Error: validity_days: 999 exceeds the authority's maximum of 397 (field: validity_days)"
    ]
    bad_csr = write(tmp_path / "bad.csr", "-----BEGIN CERTIFICATE REQUEST-----\nxx\n-----END")
    refused = run("issue", "--authority", "cli-issuing", "--csr", str(bad_csr))
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "csr: not a readable certificate signing request" in refused.output
    assert as_json("list") == []
    cid = as_json("issue", "--authority", "cli-issuing", "--cn", "r.example.test")["id"]
    assert run("revoke", str(cid), "--reason", "keyCompromise").exit_code == 0
    twice = run("revoke", str(cid))
    assert twice.exit_code == 1 and "already revoked" in twice.output
    missing = run("show", "4242")
    assert missing.exit_code == 1 and "no certificate 4242" in missing.output


def test_rotate_import_destinations_and_scan(authorities: tuple[int, int], tmp_path: Path) -> None:
    added = run("destinations", "add", "www", "directory", f"path={tmp_path / 'www'}")
    assert added.exit_code == 0, added.output
    cid = as_json(
        "issue", "--authority", "cli-issuing", "--cn", "www.example.test", "--destination", "www"
    )["id"]
    rotated = as_json("rotate", str(cid))
    assert rotated["old_status"] == "replaced" and rotated["new"] != cid
    assert (tmp_path / "www" / "cert.pem").exists()

    other = ca.create_root_authority("Partner CA", key_type="ecdsa-p256")
    made = ca.issue_certificate(other, ca.CertificateRequest(common_name="partner.example.test"))
    cert = write(tmp_path / "partner.pem", made.certificate_pem)
    key = write(tmp_path / "partner.key", made.private_key_pem or "")
    imported = as_json("import", str(cert), "--key", str(key), "--team", "partners")
    assert imported["source"] == "imported" and imported["has_private_key"]

    scanned = as_json("scan", "--intervals", "100")
    assert scanned["expiring"] == 2 and scanned["expired"] == 0
    assert as_json("scan")["expiring"] == 0
    assert run("scan", "--intervals", "soon").exit_code != 0


def test_discover_prints_a_summary(
    authorities: tuple[int, int], server_cert: ca.IssuedCertificate
) -> None:
    with serving(server_cert) as server:
        summary = as_json("discover", f"127.0.0.1:{server.port}", "--timeout", "2")
    assert summary["ok"] == 1 and summary["new_certificates"] == 1
    endpoints = as_json("endpoints")
    assert endpoints[0]["port"] == server.port and endpoints[0]["certificate_id"]
    assert run("discover").exit_code == 2


def test_sources_from_hosts_and_from_the_inventory(authorities: tuple[int, int]) -> None:
    from popcorn.db import session_scope
    from popcorn.inventory.service import create_object

    with session_scope() as session:
        create_object(session=session, otype="site", data={"code": "ams1", "name": "AMS 1"})
    assert run("sources", "add", "pops", "a.example.test:443", "--cron", "0 * * * *").exit_code == 0
    added = run("sources", "add", "ams", "--site", "ams1", "--port", "8443")
    assert added.exit_code == 0 and "(inventory)" in added.output
    listed = {s["name"]: s for s in as_json("sources", "list")}
    assert listed["ams"]["options"]["scope"] == {"site": ["ams1"], "status": "active"}
    assert listed["ams"]["options"]["ports"] == [8443]
    unknown = run("sources", "add", "x", "--site", "nowhere")
    assert unknown.exit_code == 1 and "no site 'nowhere'" in unknown.output
    empty = as_json("discover", "--source", "ams")
    assert empty["endpoints"] == 0
