"""The certificates API: roles, envelopes, and the public /pki routes seen by real TLS clients."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from certhelpers import openssl, write
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ocsp as x509_ocsp

from popcorn.certificates import ca
from popcorn.certificates.client import CertificatesSection
from popcorn.client import Client, PopcornAPIError

API = "/api/v1/certificates"


def make_pki(api: Any, public_url: str = "http://pki.example.test") -> tuple[int, int]:
    root = api.post(f"{API}/authorities", json={"name": "api-root", "path_length": 1})
    assert root.status_code == 201, root.json
    inter = api.post(
        f"{API}/authorities",
        json={
            "name": "api-issuing",
            "kind": "intermediate",
            "parent": root.json["id"],
            "key_type": "ecdsa-p256",
            "validity_days": 1000,
            "allowed_dns_suffixes": ["example.test", "localhost"],
            "public_base_url": public_url,
        },
    )
    assert inter.status_code == 201, inter.json
    return root.json["id"], inter.json["id"]


def issue(api: Any, authority: int, role: str = "operator", **fields: Any) -> Any:
    fields.setdefault("common_name", "www.example.test")
    return api.post(API, json={"authority": authority, **fields}, role=role)


def test_roles(api: Any) -> None:
    denied = api.post(f"{API}/authorities", json={"name": "x"}, role="operator")
    assert denied.status_code == 403 and denied.json["error"]["code"] == "forbidden"
    _, inter = make_pki(api)
    assert issue(api, inter, role="viewer").status_code == 403
    created = issue(api, inter)
    assert created.status_code == 201
    cid = created.json["id"]
    assert api.get(API, role="viewer").json["count"] == 1
    assert api.get(f"{API}/{cid}", role="viewer").json["status"] == "active"
    assert api.post(f"{API}/{cid}/export", json={}, role="operator").status_code == 403
    assert api.get(f"{API}/{cid}/history", role="viewer").json["count"] == 1
    agent = api.post(
        f"{API}/agents", json={"authority": inter, "agent_name": "a1"}, role="operator"
    )
    assert agent.status_code == 403
    assert api.patch(f"{API}/authorities/{inter}", json={}, role="operator").status_code == 403
    assert api.get(API, role=None).status_code == 401


def test_issue_read_and_no_key_material_in_reads(api: Any) -> None:
    root, inter = make_pki(api)
    body = issue(api, inter, dns_names=["api.example.test"], owner="alice", team="edge").json
    assert body["domains"] == ["www.example.test", "api.example.test"]
    assert body["status"] == "active" and body["days_left"] == 89 and body["has_private_key"]
    assert "BEGIN CERTIFICATE" in body["certificate_pem"]
    authority = api.get(f"{API}/authorities/{inter}", role="viewer").json
    assert authority["crl_url"] == f"http://pki.example.test/pki/crl/{inter}.crl"
    assert authority["ocsp_url"] == f"http://pki.example.test/pki/ocsp/{inter}"
    for text in (str(body), str(authority), str(api.get(API, role="viewer").json)):
        assert "PRIVATE KEY" not in text and "pck1:" not in text
    bundle = api.get(f"{API}/authorities/{inter}/bundle", role="viewer")
    assert bundle.data.decode().count("BEGIN CERTIFICATE") == 2
    leaf = ca.load_certificate(body["certificate_pem"])
    points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == authority["crl_url"]
    assert root != inter


def test_export_is_admin_only_and_audited(api: Any) -> None:
    _, inter = make_pki(api)
    cid = issue(api, inter).json["id"]
    pem = api.post(f"{API}/{cid}/export", json={"format": "pem"}, role="admin")
    assert pem.status_code == 200 and "PRIVATE KEY" in pem.json["private_key_pem"]
    p12 = api.post(f"{API}/{cid}/export", json={"format": "pkcs12", "password": "pw"})
    key, cert, _ = pkcs12.load_key_and_certificates(
        base64.b64decode(p12.json["pkcs12_base64"]), b"pw"
    )
    assert key is not None and cert is not None
    missing = api.post(f"{API}/{cid}/export", json={"format": "pkcs12"})
    assert missing.status_code == 422 and "password" in str(missing.json["error"])
    audit = api.get(
        "/api/v1/audit", query_string={"object_type": "certificate", "action": "export"}
    )
    assert audit.json["count"] == 2
    assert {r["actor"] for r in audit.json["items"]} == {"token:test-admin"}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (
            {"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nno\n-----END", "common_name": None},
            "csr",
        ),
        ({"dns_names": ["www.evil.test"]}, "dns_names"),
        ({"validity_days": 1000}, "validity_days"),
        ({"key_type": "rsa-1024"}, "key_type"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(api: Any, fields: dict[str, Any], field: str) -> None:
    _, inter = make_pki(api)
    response = issue(api, inter, **fields)
    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert field in str(error["details"]) or field in error["message"]
    assert api.get(API, role="viewer").json["count"] == 0


def test_revoke_twice_is_a_conflict(api: Any) -> None:
    _, inter = make_pki(api)
    cid = issue(api, inter).json["id"]
    first = api.post(f"{API}/{cid}/revoke", json={"reason": "keyCompromise"})
    assert first.status_code == 200 and first.json["revocation_reason"] == "keyCompromise"
    again = api.post(f"{API}/{cid}/revoke", json={})
    assert again.status_code == 409 and "already revoked" in again.json["error"]["message"]
    assert api.post(f"{API}/999/revoke", json={}).status_code == 404
    listed = api.get(API, query_string={"status": "revoked"}, role="viewer").json
    assert [c["id"] for c in listed["items"]] == [cid]


def test_rotate_over_the_api(api: Any, tmp_path: Path) -> None:
    _, inter = make_pki(api)
    dest = api.post(
        f"{API}/destinations",
        json={"name": "d", "kind": "directory", "options": {"path": str(tmp_path / "d")}},
    )
    assert dest.status_code == 201
    bad = api.post(f"{API}/destinations", json={"name": "e", "kind": "s3", "options": {}})
    assert bad.status_code == 422 and "bucket" in str(bad.json["error"])
    cid = issue(api, inter, destinations=["d"]).json["id"]
    new = api.post(f"{API}/{cid}/rotate", json={})
    assert new.status_code == 201 and new.json["replaces_id"] == cid
    assert api.get(f"{API}/{cid}").json["status"] == "replaced"
    assert (tmp_path / "d" / "cert.pem").read_text() == new.json["certificate_pem"]
    deployments = api.get(f"{API}/{new.json['id']}/deployments").json["items"]
    assert [d["status"] for d in deployments] == ["succeeded"]


def test_jobs_are_queued_for_scan_and_discovery(api: Any) -> None:
    scan = api.post(f"{API}/scan", json={"intervals": [10, 3]})
    assert scan.status_code == 202 and scan.json["task"] == "certificates.scan"
    job = api.get(f"/api/v1/jobs/{scan.json['job_id']}").json
    assert job["arguments"] == {"intervals": [10, 3]}
    found = api.post(f"{API}/discover", json={"endpoints": ["127.0.0.1:1"]})
    assert found.status_code == 202
    neither = api.post(f"{API}/discover", json={})
    assert neither.status_code == 422


def test_metrics_include_certificates(api: Any) -> None:
    _, inter = make_pki(api)
    issue(api, inter)
    text = api.get("/metrics", role=None).data.decode()
    assert 'popcorn_certificates{status="active"} 1.0' in text
    assert "popcorn_certificate_expiry_days{" in text


# --------------------------------------------------------------------------- /pki without a token


def test_pki_routes_need_no_token(api: Any) -> None:
    _, inter = make_pki(api)
    cid = issue(api, inter).json["id"]
    api.post(f"{API}/{cid}/revoke", json={"reason": "superseded"})
    crl = x509.load_der_x509_crl(api.get(f"/pki/crl/{inter}.crl", role=None).data)
    serial = int(api.get(f"{API}/{cid}").json["serial_hex"], 16)
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    issuer = x509.load_der_x509_certificate(api.get(f"/pki/ca/{inter}.crt", role=None).data)
    leaf = ca.load_certificate(api.get(f"{API}/{cid}").json["certificate_pem"])
    request = (
        x509_ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, issuer, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    answer = api.post(f"/pki/ocsp/{inter}", data=request, role=None)
    assert answer.headers["Content-Type"] == "application/ocsp-response"
    status = x509_ocsp.load_der_ocsp_response(answer.data).certificate_status
    assert status is x509_ocsp.OCSPCertStatus.REVOKED
    encoded = base64.b64encode(request).decode()
    by_get = api.get(f"/pki/ocsp/{inter}/{encoded}", role=None)
    assert x509_ocsp.load_der_ocsp_response(by_get.data).certificate_status is status
    assert api.get("/pki/crl/999.crl", role=None).status_code == 404


def test_real_clients_check_revocation_against_a_live_server(
    api: Any, live_server: str, tmp_path: Path
) -> None:
    root, inter = make_pki(api, public_url=live_server)
    with Client(live_server, api.tokens["operator"]) as client:
        certs = cast(CertificatesSection, client.certificates)
        good = certs.issue(inter, common_name="good.example.test")
        assert certs.ca_bundle(inter).count("BEGIN CERTIFICATE") == 2
        assert [c["id"] for c in certs.search(q="good")] == [good["id"]]
        with pytest.raises(PopcornAPIError) as denied:
            certs.export(good["id"])
        assert denied.value.status == 403
    bad = issue(api, inter, common_name="bad.example.test").json
    assert (
        api.post(f"{API}/{bad['id']}/revoke", json={"reason": "keyCompromise"}).status_code == 200
    )
    crl = httpx.get(f"{live_server}/pki/crl/{inter}.crl", timeout=10)
    assert crl.status_code == 200 and crl.headers["content-type"] == "application/pkix-crl"
    root_crl = httpx.get(f"{live_server}/pki/crl/{root}.crl", timeout=10).content
    crls = write(
        tmp_path / "crls.pem",
        "".join(
            x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM).decode()
            for der in (crl.content, root_crl)
        ),
    )
    ca_file = write(
        tmp_path / "root.pem", api.get(f"{API}/authorities/{root}").json["certificate_pem"]
    )
    issuer = write(
        tmp_path / "issuer.pem", api.get(f"{API}/authorities/{inter}").json["certificate_pem"]
    )
    for cert, expected in ((good, "good"), (bad, "revoked")):
        leaf = write(tmp_path / f"{expected}.pem", cert["certificate_pem"])
        verify = openssl(
            "verify",
            "-crl_check_all",
            "-CAfile",
            str(ca_file),
            "-untrusted",
            str(issuer),
            "-CRLfile",
            str(crls),
            str(leaf),
        )
        assert (verify.returncode == 0) is (expected == "good"), verify.stdout + verify.stderr
        assert (expected == "revoked") is ("certificate revoked" in verify.stdout + verify.stderr)
        downloaded = openssl(
            "verify",
            "-crl_check",
            "-crl_download",
            "-CAfile",
            str(ca_file),
            "-untrusted",
            str(issuer),
            str(leaf),
        )
        assert (downloaded.returncode == 0) is (expected == "good"), downloaded.stderr
        uri = openssl("x509", "-in", str(leaf), "-noout", "-ocsp_uri").stdout.strip()
        assert uri == f"{live_server}/pki/ocsp/{inter}"
        answer = openssl(
            "ocsp",
            "-url",
            uri,
            "-issuer",
            str(issuer),
            "-cert",
            str(leaf),
            "-CAfile",
            str(ca_file),
            "-timeout",
            "10",
        )
        output = answer.stdout + answer.stderr
        assert "Response verify OK" in output, output
        assert f"{expected}.pem: {expected}" in output


def test_every_certificates_route_declares_what_it_answers(client: Any) -> None:
    spec = client.get("/openapi.json").json
    undeclared = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        if path.startswith(("/api/v1/certificates", "/pki/"))
        for method, operation in operations.items()
        if not any(
            answer.get("content")
            for code, answer in operation["responses"].items()
            if code.startswith("2")
        )
    ]
    assert undeclared == []


def test_an_intermediate_with_defaults_right_after_its_root_is_valid(api: Any) -> None:
    root = api.post(f"{API}/authorities", json={"name": "d-root", "path_length": 1})
    assert root.status_code == 201, root.json
    inter = api.post(
        f"{API}/authorities", json={"name": "d-issuing", "kind": "intermediate", "parent": "d-root"}
    )
    assert inter.status_code == 201, inter.json
    assert inter.json["not_after"] < root.json["not_after"]  # five years inside the root's ten
    short = api.post(
        f"{API}/authorities", json={"name": "s-root", "path_length": 1, "validity_days": 30}
    )
    clipped = api.post(
        f"{API}/authorities", json={"name": "s-issuing", "kind": "intermediate", "parent": "s-root"}
    )
    assert clipped.status_code == 201, clipped.json
    assert clipped.json["not_after"] == short.json["not_after"]  # ends with its parent
    too_long = api.post(
        f"{API}/authorities",
        json={"name": "x", "kind": "intermediate", "parent": "s-root", "validity_days": 31},
    )
    assert too_long.status_code == 422
    assert "would end after the parent expires" in too_long.json["error"]["message"]
