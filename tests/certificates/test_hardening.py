"""Attacks on certificates from the security review (issue #12), each reproduced and refused.

An operator must never get a private key out: not by making a destination
that writes where they choose, not by a client certificate that Bolt agents
trust, and malformed input must be a 4xx, never a 500.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from popcorn.certificates import ca

API = "/api/v1/certificates"


def general_authority(api: Any) -> int:
    created = api.post(
        f"{API}/authorities",
        json={
            "name": "general",
            "key_type": "ecdsa-p256",
            "allowed_dns_suffixes": ["example.test"],
        },
    )
    assert created.status_code == 201, created.json
    return int(created.json["id"])


def agents_authority(api: Any) -> int:
    created = api.post(
        f"{API}/authorities",
        json={"name": "agents", "key_type": "ecdsa-p256", "purpose": "agents"},
    )
    assert created.status_code == 201 and created.json["purpose"] == "agents", created.json
    return int(created.json["id"])


def directory(api: Any, name: str, path: str | Path, role: str = "admin") -> Any:
    return api.post(
        f"{API}/destinations",
        json={"name": name, "kind": "directory", "options": {"path": str(path)}},
        role=role,
    )


@pytest.fixture
def outside() -> Any:
    """A directory outside every deploy root; the attacks below must leave it empty."""
    path = Path(tempfile.mkdtemp(prefix="popcorn-outside-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- #1 key theft by deploy


def test_only_admins_make_or_remove_destinations(api: Any, tmp_path: Path) -> None:
    assert directory(api, "www", tmp_path / "www", role="operator").status_code == 403
    assert directory(api, "www", tmp_path / "www").status_code == 201
    assert api.delete(f"{API}/destinations/www", role="operator").status_code == 403
    assert api.delete(f"{API}/destinations/www").status_code == 200


def test_directory_destinations_stay_under_the_deploy_roots(
    api: Any, tmp_path: Path, outside: Path
) -> None:
    escape = f"{tmp_path}/{'../' * 6}{str(outside).lstrip('/')}"
    refused = directory(api, "dotdot", escape)
    assert refused.status_code == 403 and refused.json["error"]["code"] == "deploy_path_refused"
    assert refused.json["error"]["details"]["resolved"] == os.path.realpath(outside)
    link = tmp_path / "link"
    link.symlink_to(outside)
    assert directory(api, "symlink", link / "tls").status_code == 403
    assert directory(api, "elsewhere", outside).status_code == 403
    assert directory(api, "relative", "keys/www").status_code == 422
    p12 = api.post(
        f"{API}/destinations",
        json={"name": "p12", "kind": "pkcs12", "options": {"path": str(outside)}, "password": "x"},
    )
    assert p12.status_code == 403
    assert api.get(f"{API}/destinations", role="viewer").json["count"] == 0


@pytest.mark.parametrize(
    ("kind", "endpoint"),
    [
        ("s3", "http://169.254.169.254/latest"),
        ("s3", "http://10.9.8.7:9000"),
        ("aws-acm", "http://192.0.2.1"),
        ("aws-iam", "http://[fd00:ec2::254]"),
    ],
)
def test_network_destinations_reach_only_allowed_endpoints(
    api: Any, kind: str, endpoint: str
) -> None:
    options: dict[str, Any] = {"endpoint_url": endpoint}
    if kind == "s3":
        options["bucket"] = "attacker-bucket"
    refused = api.post(
        f"{API}/destinations", json={"name": "exfil", "kind": kind, "options": options}
    )
    assert refused.status_code == 403 and refused.json["error"]["code"] == "outbound_refused"


def test_a_deploy_rechecks_its_target_and_is_audited_with_it(
    api: Any, tmp_path: Path, outside: Path
) -> None:
    authority = general_authority(api)
    target = tmp_path / "www"
    assert directory(api, "www", target).status_code == 201
    # an operator may use an admin's destination: the key lands only where the admin allowed
    issued = api.post(
        API,
        json={"authority": authority, "common_name": "www.example.test", "destinations": ["www"]},
        role="operator",
    )
    assert issued.status_code == 201, issued.json
    cid = issued.json["id"]
    assert (target / "key.pem").exists()
    history = api.get(f"{API}/{cid}/history", role="viewer").json["items"]
    deploys = [r["after"] for r in history if r["action"] == "deploy"]
    assert deploys == [
        {
            "destination_id": deploys[0]["destination_id"],
            "target": os.path.realpath(target),
            "status": "succeeded",
            "location": str(target),
            "error": "",
        }
    ]
    # the directory is swapped for a symlink out of the roots after the admin approved it
    shutil.rmtree(target)
    target.symlink_to(outside)
    again = api.post(f"{API}/{cid}/deploy", role="operator")
    assert again.status_code == 200
    [record] = again.json["items"]
    assert record["status"] == "failed" and "not under a deploy root" in record["error"]
    assert list(outside.iterdir()) == []


# --------------------------------------------------------------------------- #3 agent impersonation


def test_an_agents_authority_never_issues_through_the_general_path(api: Any) -> None:
    authority = agents_authority(api)
    for role in ("operator", "admin"):
        refused = api.post(
            API, json={"authority": authority, "common_name": "agent-lookalike"}, role=role
        )
        assert refused.status_code == 403 and refused.json["error"]["code"] == "agent_authority"
    issued = api.post(
        f"{API}/agents",
        json={"authority": authority, "agent_name": "popcorn-runbook", "profile": "client"},
    )
    assert issued.status_code == 201, issued.json
    rotated = api.post(f"{API}/{issued.json['certificate_id']}/rotate", json={}, role="operator")
    assert rotated.status_code == 403
    assert api.get(API, role="viewer").json["count"] == 1


def test_agent_certificates_come_only_from_an_agents_authority(api: Any) -> None:
    authority = general_authority(api)
    refused = api.post(
        f"{API}/agents",
        json={"authority": authority, "agent_name": "popcorn-runbook", "profile": "client"},
    )
    assert (
        refused.status_code == 422 and "not an agents authority" in refused.json["error"]["message"]
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"common_name": "popcorn-runbook", "profile": "client"},
        {"common_name": "POPCORN-Scheduler"},
        {"common_name": "www.example.test", "dns_names": ["popcorn-runbook.example.test"]},
    ],
)
def test_reserved_names_are_refused_on_the_general_path(api: Any, fields: dict[str, Any]) -> None:
    authority = general_authority(api)
    refused = api.post(API, json={"authority": authority, **fields}, role="operator")
    assert refused.status_code == 422 and "reserved" in refused.json["error"]["message"]


def test_a_csr_cannot_smuggle_a_reserved_name(api: Any) -> None:
    authority = general_authority(api)
    key = ca.generate_private_key("ecdsa-p256")
    csr = ca.create_csr(key, "popcorn-runbook")
    refused = api.post(API, json={"authority": authority, "csr_pem": csr}, role="operator")
    assert refused.status_code == 422 and "reserved" in refused.json["error"]["message"]


# --------------------------------------------------------------------------- #10 5xx on bad input


@pytest.mark.parametrize("field", ["max_validity_days", "description"])
def test_null_in_an_authority_patch_is_a_422(api: Any, field: str) -> None:
    authority = general_authority(api)
    answer = api.patch(f"{API}/authorities/{authority}", json={field: None})
    assert answer.status_code == 422 and field in str(answer.json)
    cleared = api.patch(f"{API}/authorities/{authority}", json={"allowed_dns_suffixes": None})
    assert cleared.status_code == 200 and cleared.json["allowed_dns_suffixes"] is None


def test_null_in_a_certificate_patch_is_a_422(api: Any) -> None:
    authority = general_authority(api)
    cid = api.post(API, json={"authority": authority, "common_name": "a.example.test"}).json["id"]
    for field in ("owner", "team", "description", "destinations"):
        answer = api.patch(f"{API}/{cid}", json={field: None})
        assert answer.status_code == 422 and field in str(answer.json)
    cleared = api.patch(f"{API}/{cid}", json={"rotate_before_days": None})
    assert cleared.status_code == 200 and cleared.json["rotate_before_days"] is None


@pytest.mark.parametrize(
    "path",
    [
        f"/pki/crl/{2**63}.crl",
        f"/pki/ca/{2**64}.crt",
        f"/pki/ocsp/{2**63}/MAA=",
        f"{API}/authorities/{2**63}",
        f"{API}/authorities/\u0663",
        f"{API}/{2**63}",
        f"{API}/{2**63}/deployments",
    ],
)
def test_ids_that_cannot_exist_are_not_found(api: Any, path: str) -> None:
    assert api.get(path, role="viewer").status_code == 404
