"""Authorities shared by the certificate tests, and a moto server over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from certhelpers import CRL_URL, OCSP_URL

from popcorn.certificates.ca import (
    Authority,
    AuthorityPolicy,
    CertificateRequest,
    IssuedCertificate,
    KeyType,
    create_intermediate_authority,
    create_root_authority,
    issue_certificate,
)


@pytest.fixture(scope="session")
def root() -> Authority:
    return create_root_authority(
        "Popcorn Test Root",
        key_type=KeyType.EC_P384,
        path_length=1,
        policy=AuthorityPolicy(max_validity_days=3650),
    )


@pytest.fixture(scope="session")
def intermediate(root: Authority) -> Authority:
    return create_intermediate_authority(
        root,
        "Popcorn Test Intermediate",
        key_type=KeyType.EC_P256,
        policy=AuthorityPolicy(
            max_validity_days=397,
            allowed_dns_suffixes=("example.test", "localhost"),
            allowed_ip_networks=("127.0.0.0/8", "::1/128"),
            crl_url=CRL_URL,
            ocsp_url=OCSP_URL,
        ),
    )


@pytest.fixture(scope="session")
def server_cert(intermediate: Authority) -> IssuedCertificate:
    return issue_certificate(
        intermediate,
        CertificateRequest(
            common_name="www.example.test", dns_names=["localhost"], ip_addresses=["127.0.0.1"]
        ),
    )


# --------------------------------------------------------------------------- deploy roots


@pytest.fixture(autouse=True)
def deploy_root(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Directory destinations may write under the test's temporary directories only."""
    from popcorn.config import reset_settings

    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("POPCORN_DEPLOY_ROOTS", str(root))
    reset_settings()
    yield root
    reset_settings()


# --------------------------------------------------------------------------- stored authorities


@pytest.fixture
def stored_pki() -> dict[str, int]:
    """A root and an intermediate stored in the database (tables are emptied after each test).

    The intermediate allows names under example.test and localhost and
    addresses in 127.0.0.0/8, like the engine fixtures above.
    """
    from popcorn.certificates import service
    from popcorn.certificates.schemas import AuthorityCreate
    from popcorn.db import session_scope

    with session_scope() as session:
        root_row = service.create_authority(
            session=session,
            spec=AuthorityCreate(name="Test Root", kind="root", path_length=1),
        )
        inter_row = service.create_authority(
            session=session,
            spec=AuthorityCreate(
                name="Test Issuing",
                kind="intermediate",
                parent=root_row.id,
                key_type="ecdsa-p256",
                validity_days=1000,
                max_validity_days=397,
                allowed_dns_suffixes=["example.test", "localhost"],
                allowed_ip_networks=["127.0.0.0/8"],
                public_base_url="http://pki.example.test",
            ),
        )
        return {"root": root_row.id, "intermediate": inter_row.id}
