"""Deployments to a directory, and to S3, IAM and ACM through moto running as an HTTP server."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from certhelpers import boto_client
from cryptography import x509

from popcorn.certificates.ca import (
    Authority,
    CertificateRequest,
    IssuedCertificate,
    KeyType,
    certificate_info,
    generate_private_key,
    issue_certificate,
    load_private_key,
    parse_pem_bundle,
    private_key_to_pem,
)
from popcorn.certificates.destinations import (
    ACMDestination,
    BundleError,
    CertificateBundle,
    DeploymentError,
    DirectoryDestination,
    IAMServerCertificateDestination,
    S3Destination,
)


@pytest.fixture(scope="module")
def bundle(server_cert: IssuedCertificate) -> CertificateBundle:
    return CertificateBundle.from_issued("www-example-test", server_cert)


def test_bundle_from_issued_leaves_out_the_root(
    intermediate: Authority, server_cert: IssuedCertificate, bundle: CertificateBundle
) -> None:
    assert parse_pem_bundle(bundle.chain_pem) == [intermediate.certificate]
    assert parse_pem_bundle(bundle.fullchain_pem) == [
        server_cert.certificate,
        intermediate.certificate,
    ]
    with_root = CertificateBundle.from_issued("x", server_cert, include_root=True)
    assert len(parse_pem_bundle(with_root.chain_pem)) == 2


# --------------------------------------------------------------------------- directory


def test_directory_deploy_writes_pems_with_a_private_key_file(
    tmp_path: Path, server_cert: IssuedCertificate, bundle: CertificateBundle
) -> None:
    target = tmp_path / "etc" / "tls" / "www"
    deployment = DirectoryDestination(target).deploy(bundle)
    assert deployment.location == str(target)
    assert sorted(p.name for p in target.iterdir()) == [
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "key.pem",
    ]
    assert stat.S_IMODE((target / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((target / "cert.pem").stat().st_mode) == 0o644
    assert parse_pem_bundle((target / "cert.pem").read_text()) == [server_cert.certificate]
    assert (target / "fullchain.pem").read_text() == bundle.fullchain_pem
    assert load_private_key((target / "key.pem").read_bytes()).public_key() == (
        server_cert.certificate.public_key()
    )


def test_directory_redeploy_replaces_files_atomically(
    tmp_path: Path, intermediate: Authority, bundle: CertificateBundle
) -> None:
    destination = DirectoryDestination(tmp_path)
    destination.deploy(bundle)
    inode_before = (tmp_path / "cert.pem").stat().st_ino
    renewed = issue_certificate(intermediate, CertificateRequest(common_name="www.example.test"))
    destination.deploy(CertificateBundle.from_issued("www", renewed))
    assert (tmp_path / "cert.pem").stat().st_ino != inode_before
    assert certificate_info((tmp_path / "cert.pem").read_text()).serial == renewed.serial
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_directory_deploy_without_key_keeps_a_matching_key_only(
    tmp_path: Path, intermediate: Authority, bundle: CertificateBundle
) -> None:
    destination = DirectoryDestination(tmp_path)
    destination.deploy(bundle)
    stranger = issue_certificate(intermediate, CertificateRequest(common_name="www.example.test"))
    cert_only = CertificateBundle("www", stranger.certificate_pem)
    with pytest.raises(BundleError, match="belongs to another certificate"):
        destination.deploy(cert_only)
    assert (tmp_path / "cert.pem").read_text().strip() == bundle.certificate_pem.strip()


def test_directory_failures_are_deployment_errors(
    tmp_path: Path, bundle: CertificateBundle
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DeploymentError, match="directory"):
        DirectoryDestination(blocker / "sub").deploy(bundle)


def test_mismatched_or_broken_bundles_are_refused_before_writing(
    tmp_path: Path, root: Authority, server_cert: IssuedCertificate
) -> None:
    wrong_key = private_key_to_pem(generate_private_key(KeyType.EC_P256))
    destination = DirectoryDestination(tmp_path / "out")
    with pytest.raises(BundleError, match="does not match"):
        destination.deploy(CertificateBundle("x", server_cert.certificate_pem, "", wrong_key))
    with pytest.raises(BundleError, match="did not issue"):
        destination.deploy(
            CertificateBundle(
                "x", server_cert.certificate_pem, root.certificate_pem, server_cert.private_key_pem
            )
        )
    with pytest.raises(BundleError, match="certificate"):
        destination.deploy(CertificateBundle("x", "garbage"))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- AWS via moto


def test_s3_deploy_puts_encrypted_objects(moto_endpoint: str, bundle: CertificateBundle) -> None:
    s3: Any = boto_client("s3", moto_endpoint)
    s3.create_bucket(Bucket="popcorn-certs")
    deployment = S3Destination("popcorn-certs", prefix="edge/", client=s3).deploy(bundle)
    assert deployment.location == "s3://popcorn-certs/edge/www-example-test/"
    listed = s3.list_objects_v2(Bucket="popcorn-certs", Prefix="edge/www-example-test/")
    keys = sorted(o["Key"] for o in listed["Contents"])
    assert keys == [
        f"edge/www-example-test/{name}"
        for name in ("cert.pem", "chain.pem", "fullchain.pem", "key.pem")
    ]
    key_object = s3.get_object(Bucket="popcorn-certs", Key="edge/www-example-test/key.pem")
    assert key_object["ServerSideEncryption"] == "AES256"
    assert key_object["Body"].read().decode() == bundle.private_key_pem


def test_s3_errors_are_reported(moto_endpoint: str, bundle: CertificateBundle) -> None:
    s3: Any = boto_client("s3", moto_endpoint)
    with pytest.raises(DeploymentError, match="NoSuchBucket"):
        S3Destination("missing-bucket", client=s3).deploy(bundle)
    with pytest.raises(BundleError, match="sse"):
        S3Destination("b", sse="rot13", client=s3)


def test_iam_upload_creates_a_server_certificate(
    moto_endpoint: str, server_cert: IssuedCertificate, bundle: CertificateBundle
) -> None:
    iam: Any = boto_client("iam", moto_endpoint)
    deployment = IAMServerCertificateDestination(path="/popcorn/", client=iam).deploy(bundle)
    assert deployment.location.endswith(":server-certificate/popcorn/www-example-test")
    stored = iam.get_server_certificate(ServerCertificateName="www-example-test")
    body = stored["ServerCertificate"]["CertificateBody"]
    assert x509.load_pem_x509_certificate(body.encode()) == server_cert.certificate


def test_iam_refuses_bad_names_and_missing_keys(
    moto_endpoint: str, server_cert: IssuedCertificate
) -> None:
    iam: Any = boto_client("iam", moto_endpoint)
    destination = IAMServerCertificateDestination(client=iam)
    with pytest.raises(BundleError, match="IAM name"):
        destination.deploy(CertificateBundle.from_issued("bad name!", server_cert))
    with pytest.raises(BundleError, match="required"):
        destination.deploy(CertificateBundle("nokey", server_cert.certificate_pem))
    with pytest.raises(BundleError, match="path"):
        IAMServerCertificateDestination(path="popcorn", client=iam)


def test_acm_import_and_reimport(
    moto_endpoint: str, intermediate: Authority, bundle: CertificateBundle
) -> None:
    acm: Any = boto_client("acm", moto_endpoint)
    first = ACMDestination(client=acm, tags={"team": "edge"}).deploy(bundle)
    assert first.location.startswith("arn:aws:acm:us-east-1:")
    described = acm.describe_certificate(CertificateArn=first.location)["Certificate"]
    assert described["DomainName"] == "www.example.test"
    tags = acm.list_tags_for_certificate(CertificateArn=first.location)["Tags"]
    assert {"Key": "team", "Value": "edge"} in tags
    renewed = issue_certificate(intermediate, CertificateRequest(common_name="www.example.test"))
    again = ACMDestination(certificate_arn=first.location, client=acm).deploy(
        CertificateBundle.from_issued("www-example-test", renewed)
    )
    assert again.location == first.location
    stored = acm.get_certificate(CertificateArn=first.location)
    assert x509.load_pem_x509_certificate(stored["Certificate"].encode()) == renewed.certificate
    assert parse_pem_bundle(stored["CertificateChain"])[0] == intermediate.certificate


def test_destination_clients_can_be_built_from_an_endpoint(
    moto_endpoint: str, bundle: CertificateBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3: Any = boto_client("s3", moto_endpoint)
    s3.create_bucket(Bucket="endpoint-bucket")
    destination = S3Destination("endpoint-bucket", endpoint_url=moto_endpoint)
    assert destination.deploy(bundle).location == "s3://endpoint-bucket/www-example-test/"
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
