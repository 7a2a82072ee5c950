"""The certificates service on a real database: issuance, storage, revocation, scan, rotation."""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from certhelpers import TLSServer, boto_client, openssl, server_context, serving, write
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ocsp as x509_ocsp
from pydantic import ValidationError
from sqlalchemy import func, select

from popcorn.audit import AuditRecord, records_for
from popcorn.certificates import ca, service
from popcorn.certificates.models import Authority, Certificate, Deployment, Endpoint, Notification
from popcorn.certificates.plugins import ISSUERS, PendingIssuerPlugin
from popcorn.certificates.schemas import (
    AuthorityCreate,
    AuthorityUpdate,
    CertificateImport,
    CertificateIssue,
    CertificateUpdate,
    DestinationCreate,
    Export,
)
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput
from popcorn.listing import parse_list_params
from popcorn.outbox import OutboxEvent
from popcorn.sealing import DecryptionError, KeyStore


def issue(authority: int, **fields: Any) -> int:
    fields.setdefault("common_name", "www.example.test")
    with session_scope() as session:
        return service.issue_certificate(
            session=session, spec=CertificateIssue(authority=authority, **fields)
        ).id


def load(certificate_id: int) -> Certificate:
    with session_scope(readonly=True) as session:
        return service.get_certificate(session=session, certificate_id=certificate_id)


def count(model: Any) -> int:
    with session_scope(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def events(kind: str) -> list[OutboxEvent]:
    with session_scope(readonly=True) as session:
        return list(session.scalars(select(OutboxEvent).where(OutboxEvent.type == kind)))


def signing(authority_id: int) -> ca.Authority:
    with session_scope(readonly=True) as session:
        return service.signing_authority(session.get(Authority, authority_id))  # type: ignore[arg-type]


def import_expiring(authority_id: int, cn: str, days_left: float, owner: str = "web") -> int:
    """A real certificate of the authority whose expiry is `days_left` days away."""
    start = utcnow() - dt.timedelta(days=30) + dt.timedelta(days=days_left)
    made = ca.issue_certificate(
        signing(authority_id),
        ca.CertificateRequest(common_name=cn, validity_days=30),
        now=start,
    )
    with session_scope() as session:
        return service.import_certificate(
            session=session,
            spec=CertificateImport(
                certificate_pem=made.certificate_pem,
                private_key_pem=made.private_key_pem,
                owner=owner,
                team="edge",
            ),
        ).id


def verify_chain(tmp_path: Path, root_pem: str, certificate: Certificate) -> tuple[int, str]:
    ca_file = write(tmp_path / "root.pem", root_pem)
    untrusted = write(tmp_path / "chain.pem", certificate.chain_pem)
    leaf = write(tmp_path / "leaf.pem", certificate.certificate_pem)
    result = openssl("verify", "-CAfile", str(ca_file), "-untrusted", str(untrusted), str(leaf))
    return result.returncode, result.stdout + result.stderr


def root_pem(authority_id: int) -> str:
    with session_scope(readonly=True) as session:
        return service.get_authority(session=session, ref=authority_id).certificate_pem


# --------------------------------------------------------------------------- authorities, issuance


@pytest.mark.parametrize("key_type", ["ecdsa-p384", "rsa-2048"])
def test_issued_chain_verifies_with_openssl(tmp_path: Path, key_type: str) -> None:
    with session_scope() as session:
        root = service.create_authority(
            session=session,
            spec=AuthorityCreate(name=f"root-{key_type}", key_type=key_type, path_length=1),
        )
        inter = service.create_authority(
            session=session,
            spec=AuthorityCreate(
                name=f"inter-{key_type}", kind="intermediate", parent=root.id, validity_days=900
            ),
        )
        root_id, inter_id = root.id, inter.id
    cert = load(issue(inter_id, dns_names=["api.example.test"], profile="both"))
    code, out = verify_chain(tmp_path, root_pem(root_id), cert)
    assert code == 0, out
    assert cert.status == "active" and cert.profile == "both"
    assert cert.domains == ["www.example.test", "api.example.test"]
    assert cert.chain_pem.count("BEGIN CERTIFICATE") == 2


def test_private_keys_are_sealed_at_rest(stored_pki: dict[str, int]) -> None:
    cert = load(issue(stored_pki["intermediate"]))
    with session_scope(readonly=True) as session:
        authority = session.get(Authority, stored_pki["intermediate"])
        assert authority is not None and authority.private_key_encrypted is not None
        sealed = [authority.private_key_encrypted, cert.private_key_encrypted or ""]
    for envelope in sealed:
        assert envelope.startswith("pck1:") and "PRIVATE KEY" not in envelope
        with pytest.raises(DecryptionError):
            KeyStore("another installation's secret", context=service.KEY_CONTEXT).decrypt(
                envelope, associated_data=(cert.sha256_fingerprint or "").encode()
            )
    key = ca.load_private_key(service.unseal(sealed[1], cert.sha256_fingerprint or ""))
    assert ca.keys_match(ca.load_certificate(cert.certificate_pem), key)


def test_issue_from_csr_keeps_no_key_and_takes_names_from_the_csr(
    stored_pki: dict[str, int],
) -> None:
    key = ca.generate_private_key("ecdsa-p256")
    csr = ca.create_csr(key, "svc.example.test", dns_names=["svc.example.test", "localhost"])
    cert = load(issue(stored_pki["intermediate"], common_name=None, csr_pem=csr))
    assert cert.private_key_encrypted is None
    assert cert.common_name == "svc.example.test"
    assert cert.domains == ["svc.example.test", "localhost"]
    assert ca.keys_match(ca.load_certificate(cert.certificate_pem), key)


def test_validity_defaults_to_90_days_and_names_are_unique(stored_pki: dict[str, int]) -> None:
    first = load(issue(stored_pki["intermediate"]))
    second = load(issue(stored_pki["intermediate"]))
    assert first.not_after is not None and first.not_before is not None
    assert (first.not_after - first.not_before).days == 90
    assert first.name != second.name and first.name.startswith("www-example-test-")
    with pytest.raises(Conflict, match="exists"):
        issue(stored_pki["intermediate"], name=first.name)


def _weak_csr() -> str:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "w.example.test")]))
        .sign(weak, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("fields", "message", "field"),
    [
        (
            {"csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END"},
            "not a readable certificate signing request",
            "csr",
        ),
        ({"csr_pem": "weak"}, "under the minimum of 2048", "csr"),
        ({"dns_names": ["www.evil.test"]}, "not under an allowed suffix", "dns_names"),
        ({"ip_addresses": ["10.0.0.1"]}, "not in an allowed network", "ip_addresses"),
        ({"validity_days": 400}, "exceeds the authority's maximum of 397", "validity_days"),
    ],
)
def test_bad_requests_issue_nothing_and_write_nothing(
    stored_pki: dict[str, int], fields: dict[str, Any], message: str, field: str
) -> None:
    if fields.get("csr_pem") == "weak":
        fields = {"csr_pem": _weak_csr(), "common_name": None}
    audit_before = count(AuditRecord)
    with pytest.raises(InvalidInput, match=message) as caught:
        issue(stored_pki["intermediate"], **fields)
    assert caught.value.details["field"] == field
    assert count(Certificate) == 0
    assert count(AuditRecord) == audit_before


def test_import_an_existing_ca_and_issue_under_it(tmp_path: Path) -> None:
    existing = ca.create_root_authority("Legacy Corp CA", key_type="rsa-2048")
    with session_scope() as session:
        row = service.create_authority(
            session=session,
            spec=AuthorityCreate(
                name="legacy",
                kind="imported",
                certificate_pem=existing.certificate_pem,
                private_key_pem=existing.private_key_pem(b"pw"),
                key_password="pw",
            ),
        )
        assert row.kind == "imported" and row.subject == "CN=Legacy Corp CA"
        legacy_id = row.id
    cert = load(issue(legacy_id, common_name="old.example.test"))
    code, out = verify_chain(tmp_path, existing.certificate_pem, cert)
    assert code == 0, out
    with pytest.raises(Conflict, match="already an authority"), session_scope() as session:
        service.create_authority(
            session=session,
            spec=AuthorityCreate(
                name="again",
                kind="imported",
                certificate_pem=existing.certificate_pem,
                private_key_pem=existing.private_key_pem(),
            ),
        )


def test_import_certificate_with_chain_finds_its_authority(stored_pki: dict[str, int]) -> None:
    made = ca.issue_certificate(
        signing(stored_pki["intermediate"]), ca.CertificateRequest(common_name="imp.example.test")
    )
    with session_scope() as session:
        row = service.import_certificate(
            session=session,
            spec=CertificateImport(
                certificate_pem=made.chain_pem + made.certificate_pem, owner="alice", team="edge"
            ),
        )
        assert row.source == "imported" and row.authority_id == stored_pki["intermediate"]
        assert row.private_key_encrypted is None and row.chain_pem.count("BEGIN") == 2
    with pytest.raises(Conflict, match="already in the inventory"), session_scope() as session:
        service.import_certificate(
            session=session, spec=CertificateImport(certificate_pem=made.certificate_pem)
        )
    other_key = ca.private_key_to_pem(ca.generate_private_key("ecdsa-p256"))
    with pytest.raises(InvalidInput, match="does not match"), session_scope() as session:
        service.import_certificate(
            session=session,
            spec=CertificateImport(certificate_pem=made.certificate_pem, private_key_pem=other_key),
        )


# --------------------------------------------------------------------------- inventory search


def test_list_filters_status_domain_text_and_expiry(stored_pki: dict[str, int]) -> None:
    inter = stored_pki["intermediate"]
    soon = import_expiring(inter, "soon.example.test", 10, owner="bob")
    later = issue(inter, common_name="later.example.test", dns_names=["api.example.test"])
    gone = import_expiring(inter, "gone.example.test", -2)

    def ids(**args: str) -> list[int]:
        with session_scope(readonly=True) as session:
            page = service.list_certificates(session=session, params=parse_list_params(args))
            return [r.id for r in page.items]

    assert ids(status="expiring") == [soon]
    assert ids(status="expired") == [gone]
    assert ids(status="active") == [later]
    assert ids(domain="api.example.test") == [later]
    assert ids(domain="example.test") == []
    assert ids(q="bob") == [soon]
    assert ids(expires_within="15") == [soon, gone]
    assert ids(owner="bob", status__n="expired") == [soon]
    with pytest.raises(InvalidInput, match="unknown filter"):
        ids(colour="red")


# --------------------------------------------------------------------------- revocation, CRL, OCSP


def test_revocation_publishes_a_new_crl_and_twice_is_refused(
    tmp_path: Path, stored_pki: dict[str, int]
) -> None:
    good = load(issue(stored_pki["intermediate"], common_name="good.example.test"))
    bad = load(issue(stored_pki["intermediate"], common_name="bad.example.test"))
    with session_scope() as session:
        service.revoke_certificate(session=session, certificate_id=bad.id, reason="keyCompromise")
    with session_scope(readonly=True) as session:
        authority = session.get(Authority, stored_pki["intermediate"])
        assert authority is not None and authority.crl_der is not None
        der, number = authority.crl_der, authority.crl_number
    crl = x509.load_der_x509_crl(der)
    entry = crl.get_revoked_certificate_by_serial_number(int(bad.serial_hex, 16))
    assert entry is not None and len(crl) == 1 and number == 1
    with pytest.raises(Conflict, match="already revoked"), session_scope() as session:
        service.revoke_certificate(session=session, certificate_id=bad.id)
    with session_scope(readonly=True) as session:
        assert session.get(Authority, stored_pki["intermediate"]).crl_number == 1  # type: ignore[union-attr]
    crl_file = write(tmp_path / "crl.pem", crl.public_bytes(serialization.Encoding.PEM).decode())
    for cert, expect_ok in ((good, True), (bad, False)):
        leaf = write(tmp_path / "leaf.pem", cert.certificate_pem)
        result = openssl(
            "verify",
            "-crl_check",
            "-CAfile",
            str(write(tmp_path / "ca.pem", cert.chain_pem)),
            "-CRLfile",
            str(crl_file),
            str(leaf),
        )
        assert (result.returncode == 0) is expect_ok, result.stdout + result.stderr
    assert [r.action for r in records_for_cert(bad.id)] == ["issue", "revoke"]


def records_for_cert(certificate_id: int) -> list[AuditRecord]:
    with session_scope(readonly=True) as session:
        return records_for(session, "certificate", certificate_id)


def test_bad_revocation_reason_is_refused(stored_pki: dict[str, int]) -> None:
    cid = issue(stored_pki["intermediate"])
    with pytest.raises(InvalidInput, match="reason"), session_scope() as session:
        service.revoke_certificate(session=session, certificate_id=cid, reason="bored")
    assert load(cid).status == "active"


def test_ocsp_answers_good_revoked_and_unknown(stored_pki: dict[str, int]) -> None:
    inter = stored_pki["intermediate"]
    good = load(issue(inter, common_name="good.example.test"))
    bad = load(issue(inter, common_name="bad.example.test"))
    with session_scope() as session:
        service.revoke_certificate(session=session, certificate_id=bad.id, reason="superseded")
    issuer = ca.load_certificate(signing(inter).certificate_pem)
    stranger = ca.issue_certificate(
        signing(inter), ca.CertificateRequest(common_name="x.example.test")
    )

    def status(cert_pem: str) -> x509_ocsp.OCSPCertStatus:
        request = (
            x509_ocsp.OCSPRequestBuilder()
            .add_certificate(ca.load_certificate(cert_pem), issuer, hashes.SHA256())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        with session_scope(readonly=True) as session:
            der = service.ocsp_response(session=session, authority_id=inter, request_der=request)
        return x509_ocsp.load_der_ocsp_response(der).certificate_status

    assert status(good.certificate_pem) is x509_ocsp.OCSPCertStatus.GOOD
    assert status(bad.certificate_pem) is x509_ocsp.OCSPCertStatus.REVOKED
    assert status(stranger.certificate_pem) is x509_ocsp.OCSPCertStatus.UNKNOWN


# --------------------------------------------------------------------------- export


def test_export_pem_and_pkcs12_are_audited(stored_pki: dict[str, int]) -> None:
    cid = issue(stored_pki["intermediate"])
    with session_scope() as session:
        pem = service.export_certificate(session=session, certificate_id=cid, spec=Export())
        p12 = service.export_certificate(
            session=session, certificate_id=cid, spec=Export(format="pkcs12", password="s3cret")
        )
    assert pem.private_key_pem and "PRIVATE KEY" in pem.private_key_pem
    key, cert, extra = pkcs12.load_key_and_certificates(
        base64.b64decode(p12.pkcs12_base64 or ""), b"s3cret"
    )
    assert cert is not None and format(cert.serial_number, "X") == load(cid).serial_hex
    assert key is not None and len(extra) == 2
    exports = [r for r in records_for_cert(cid) if r.action == "export"]
    assert [r.after["format"] for r in exports if r.after] == ["pem", "pkcs12"]
    assert all("PRIVATE" not in str(r.after) for r in exports)


def test_pkcs12_needs_a_stored_key(stored_pki: dict[str, int]) -> None:
    csr = ca.create_csr(ca.generate_private_key("ecdsa-p256"), "c.example.test")
    cid = issue(stored_pki["intermediate"], common_name=None, csr_pem=csr)
    with pytest.raises(Conflict, match="no private key"), session_scope() as session:
        service.export_certificate(
            session=session, certificate_id=cid, spec=Export(format="pkcs12", password="x")
        )
    assert not [r for r in records_for_cert(cid) if r.action == "export"]


# --------------------------------------------------------------------------- expiry scan


def test_scan_warns_once_per_interval_and_for_expired(stored_pki: dict[str, int]) -> None:
    inter = stored_pki["intermediate"]
    ids = {
        days: import_expiring(inter, f"c{i}.example.test", days)
        for i, days in enumerate([40, 20, 10, 5, 0.5, -3])
    }
    with session_scope() as session:
        first = service.send_expiry_notifications(session=session)
    assert first == {"expiring": 4, "expired": 1}
    with session_scope(readonly=True) as session:
        sent = {
            (n.certificate_id, n.kind, n.interval_days)
            for n in session.scalars(select(Notification))
        }
    assert sent == {
        (ids[20], "expiring", 30),
        (ids[10], "expiring", 15),
        (ids[5], "expiring", 7),
        (ids[0.5], "expiring", 1),
        (ids[-3], "expired", 0),
    }
    warning = next(
        e for e in events("certificates.certificate.expiring") if e.object_id == str(ids[5])
    )
    assert warning.payload["days_left"] == 4 and warning.payload["interval_days"] == 7
    assert warning.payload["owner"] == "web" and warning.payload["domains"] == ["c3.example.test"]
    assert warning.payload["team"] == "edge"
    expired = events("certificates.certificate.expired")
    assert len(expired) == 1 and expired[0].payload["days_left"] == -4

    with session_scope() as session:
        assert service.send_expiry_notifications(session=session) == {"expiring": 0, "expired": 0}
    later = utcnow() + dt.timedelta(days=6)
    with session_scope() as session:
        again = service.send_expiry_notifications(session=session, now=later)
    # 20 -> 14 days (15), 10 -> 4 (7), 5 and 0.5 have expired; 40 -> 34: still nothing
    assert again == {"expiring": 2, "expired": 2}
    assert len(events("certificates.certificate.expiring")) == 6


def test_revoked_and_replaced_certificates_are_not_warned_about(
    stored_pki: dict[str, int],
) -> None:
    inter = stored_pki["intermediate"]
    cid = import_expiring(inter, "r.example.test", 3)
    with session_scope() as session:
        service.revoke_certificate(session=session, certificate_id=cid)
    with session_scope() as session:
        assert service.send_expiry_notifications(session=session) == {"expiring": 0, "expired": 0}


def test_custom_intervals(stored_pki: dict[str, int]) -> None:
    cid = import_expiring(stored_pki["intermediate"], "x.example.test", 50)
    with session_scope() as session:
        assert service.send_expiry_notifications(session=session, intervals=[60]) == {
            "expiring": 1,
            "expired": 0,
        }
    with session_scope(readonly=True) as session:
        assert session.scalar(select(Notification.interval_days)) == 60
    assert load(cid).status == "active"


# --------------------------------------------------------------------------- destinations, rotation


def directory_destination(path: Path, name: str = "www-dir") -> int:
    with session_scope() as session:
        return service.create_destination(
            session=session,
            spec=DestinationCreate(name=name, kind="directory", options={"path": str(path)}),
        ).id


def test_rotation_deploys_links_and_retires(tmp_path: Path, stored_pki: dict[str, int]) -> None:
    target = tmp_path / "tls"
    dest = directory_destination(target)
    old_id = issue(stored_pki["intermediate"], dns_names=["localhost"], destinations=[dest])
    old = load(old_id)
    assert (target / "cert.pem").read_text() == old.certificate_pem
    with session_scope() as session:
        new = service.rotate_certificate(session=session, certificate_id=old_id)
        new_id = new.id
    new_row, old_row = load(new_id), load(old_id)
    assert old_row.status == "replaced" and old_row.replaced_by_id == new_id
    assert new_row.domains == old.domains and new_row.profile == old.profile
    assert new_row.authority_id == old.authority_id and new_row.serial_hex != old.serial_hex
    assert (target / "cert.pem").read_text() == new_row.certificate_pem
    key = ca.load_private_key((target / "key.pem").read_bytes())
    assert ca.keys_match(ca.load_certificate(new_row.certificate_pem), key)
    assert len(events("certificates.certificate.rotated")) == 1
    with pytest.raises(Conflict, match="only active"), session_scope() as session:
        service.rotate_certificate(session=session, certificate_id=old_id)


def test_failed_deployment_keeps_the_old_certificate_until_the_scan_retries(
    tmp_path: Path, stored_pki: dict[str, int]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    dest = directory_destination(blocker)
    old_id = issue(stored_pki["intermediate"], destinations=[dest])
    with session_scope() as session:
        new_id = service.rotate_certificate(session=session, certificate_id=old_id).id
    old = load(old_id)
    assert old.status == "active" and old.replaced_by_id == new_id
    with session_scope(readonly=True) as session:
        failed = list(session.scalars(select(Deployment).where(Deployment.status == "failed")))
    assert failed and "not-a-dir" in failed[-1].error
    blocker.unlink()
    result = service.run_scan()
    assert {"id": old_id, "replaced_by_id": new_id} in result["rotated"]
    assert load(old_id).status == "replaced"
    assert (blocker / "cert.pem").read_text() == load(new_id).certificate_pem


def test_scan_rotates_inside_the_policy_window(tmp_path: Path, stored_pki: dict[str, int]) -> None:
    inter = stored_pki["intermediate"]
    due = import_expiring(inter, "due.example.test", 5)
    not_yet = import_expiring(inter, "notyet.example.test", 25)
    foreign = ca.create_root_authority("Elsewhere", key_type="ecdsa-p256")
    made = ca.issue_certificate(foreign, ca.CertificateRequest(common_name="f.example.test"))
    with session_scope() as session:
        service.update_authority(
            session=session,
            ref=inter,
            spec=AuthorityUpdate(rotate_before_days=10),
        )
        foreign_id = service.import_certificate(
            session=session,
            spec=CertificateImport(certificate_pem=made.certificate_pem, rotate_before_days=400),
        ).id
    result = service.run_scan()
    rotated = {r["id"] for r in result["rotated"]}
    assert rotated == {due}
    assert load(due).status == "replaced" and load(not_yet).status == "active"
    assert load(foreign_id).authority_id is None and load(foreign_id).status == "active"
    new = load(load(due).replaced_by_id or 0)
    assert new.common_name == "due.example.test" and new.status == "active"
    assert service.run_scan()["rotated"] == []


def test_certificate_rotation_policy_overrides_the_authority(stored_pki: dict[str, int]) -> None:
    cid = import_expiring(stored_pki["intermediate"], "p.example.test", 20)
    with session_scope() as session:
        service.update_certificate(
            session=session, certificate_id=cid, spec=CertificateUpdate(rotate_before_days=21)
        )
    assert [r["id"] for r in service.run_scan()["rotated"]] == [cid]


def _reloading(server: TLSServer, directory: Path, stop: threading.Event) -> None:
    """Reload the server's context whenever fullchain.pem changes; keep the old one on error."""
    seen = (directory / "fullchain.pem").stat().st_mtime_ns
    while not stop.wait(0.02):
        mtime = (directory / "fullchain.pem").stat().st_mtime_ns
        if mtime == seen:
            continue
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(directory / "fullchain.pem", directory / "key.pem")
        except (ssl.SSLError, OSError):
            continue
        server.context = context
        seen = mtime


def _served_serial(port: int, root: str) -> int:
    """One verified HTTPS exchange; the serial of the certificate the server presented."""
    context = ssl.create_default_context(cadata=root)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        assert tls.recv(1024).startswith(b"HTTP/1.0 200")
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_rotation_replaces_a_served_certificate_without_downtime(
    tmp_path: Path, stored_pki: dict[str, int]
) -> None:
    target = tmp_path / "www"
    dest = directory_destination(target)
    old_id = issue(stored_pki["intermediate"], dns_names=["localhost"], destinations=[dest])
    root = root_pem(stored_pki["root"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(target / "fullchain.pem", target / "key.pem")
    failures: list[str] = []
    served: list[int] = []
    stop = threading.Event()
    with TLSServer(context) as server:
        watcher = threading.Thread(target=_reloading, args=(server, target, stop), daemon=True)
        watcher.start()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    served.append(_served_serial(server.port, root))
                except (AssertionError, OSError) as exc:
                    failures.append(repr(exc))

        client = threading.Thread(target=hammer, daemon=True)
        client.start()
        assert _served_serial(server.port, root) == int(load(old_id).serial_hex, 16)
        trusted = ssl.create_default_context(cadata=root)
        assert httpx.get(f"https://localhost:{server.port}/", verify=trusted).status_code == 200
        with session_scope() as session:
            new_id = service.rotate_certificate(session=session, certificate_id=old_id).id
        new_serial = int(load(new_id).serial_hex, 16)
        deadline = dt.datetime.now() + dt.timedelta(seconds=10)
        while _served_serial(server.port, root) != new_serial:
            assert dt.datetime.now() < deadline, "the server never picked up the new certificate"
        assert httpx.get(f"https://localhost:{server.port}/", verify=trusted).status_code == 200
        ca_file = write(tmp_path / "root.pem", root)
        s_client = openssl(
            "s_client",
            "-connect",
            f"127.0.0.1:{server.port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(ca_file),
            "-verify_return_error",
            "-brief",
        )
        stop.set()
        client.join(timeout=10)
        watcher.join(timeout=10)
    assert s_client.returncode == 0 and "Verification: OK" in s_client.stdout + s_client.stderr
    assert failures == []
    assert int(load(old_id).serial_hex, 16) in served and new_serial in served


# --------------------------------------------------------------------------- pending issuers


class _SlowCA(PendingIssuerPlugin):
    """An external CA that answers on the second ask, signing with a local authority."""

    slug = "slow-ca"
    title = "Slow test CA"
    asked: dict[str, int] = {}
    requests: dict[str, ca.CertificateRequest] = {}
    signer: ca.Authority | None = None

    def create_certificate(self, request: ca.CertificateRequest) -> ca.PendingCertificate:
        ticket = f"ticket-{len(self.requests) + 1}"
        self.requests[ticket] = request
        return ca.PendingCertificate(ticket, "queued for approval")

    def fetch_certificate(self, external_id: str) -> ca.IssuedCertificate | None:
        self.asked[external_id] = self.asked.get(external_id, 0) + 1
        if self.asked[external_id] < 2:
            return None
        if self.requests[external_id].common_name == "refused.example.test":
            raise ca.IssuanceError("common_name: refused by the approver")
        assert self.signer is not None
        return ca.issue_certificate(self.signer, self.requests[external_id])

    def revoke_certificate(self, certificate: x509.Certificate, **_: Any) -> ca.RevokedEntry:
        raise NotImplementedError


def test_pending_certificates_complete_later(stored_pki: dict[str, int]) -> None:
    _SlowCA.signer = signing(stored_pki["intermediate"])
    ISSUERS["slow-ca"] = lambda context: _SlowCA()
    try:
        with session_scope() as session:
            ext = service.create_authority(
                session=session,
                spec=AuthorityCreate(name="vendor", kind="external", plugin="slow-ca"),
            ).id
        ok = issue(ext, common_name="later.example.test")
        refused = issue(ext, common_name="refused.example.test")
        assert load(ok).status == "pending" and load(ok).external_id
        with session_scope(readonly=True) as session:
            from popcorn.jobs import JobRecord

            assert (
                session.scalar(
                    select(JobRecord.status).where(
                        JobRecord.task == "certificates.complete_pending"
                    )
                )
                == "scheduled"
            )
        with session_scope() as session:
            assert service.complete_pending(session=session) == {
                "issued": 0,
                "failed": 0,
                "pending": 2,
            }
        with session_scope() as session:
            assert service.complete_pending(session=session) == {
                "issued": 1,
                "failed": 1,
                "pending": 0,
            }
        done = load(ok)
        assert done.status == "active" and done.common_name == "later.example.test"
        assert done.private_key_encrypted is not None
        assert load(refused).status == "failed" and "refused" in load(refused).last_error
    finally:
        del ISSUERS["slow-ca"]


def test_external_authority_needs_an_installed_plugin() -> None:
    with (
        pytest.raises(InvalidInput, match="not an installed external issuer"),
        session_scope() as session,
    ):
        service.create_authority(
            session=session, spec=AuthorityCreate(name="x", kind="external", plugin="nope")
        )
    assert count(Authority) == 0


# --------------------------------------------------------------------------- discovery


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_discovery_records_endpoints_and_unknown_certificates(
    stored_pki: dict[str, int], server_cert: ca.IssuedCertificate
) -> None:
    with serving(server_cert) as server:
        summary = service.run_discovery(
            endpoints=[f"127.0.0.1:{server.port}", f"127.0.0.1:{closed_port()}"], timeout=2
        )
    assert summary["ok"] == 1 and summary["failed"] == 1 and summary["new_certificates"] == 1
    with session_scope(readonly=True) as session:
        endpoints = {e.port: e for e in session.scalars(select(Endpoint))}
        found = session.scalar(select(Certificate).where(Certificate.source == "discovered"))
    assert found is not None and found.common_name == "www.example.test"
    assert found.authority_id is None  # another PKI than the stored one
    assert endpoints[server.port].certificate_id == found.id
    assert endpoints[server.port].tls_version and not endpoints[server.port].last_error
    failed = next(e for p, e in endpoints.items() if p != server.port)
    assert failed.certificate_id is None and failed.last_error == "connection refused"
    with session_scope(readonly=True) as session:
        detail = service.certificate_detail(session=session, row=found)
    assert [(e.host, e.port) for e in detail.endpoints] == [("127.0.0.1", server.port)]
    assert len(events("certificates.certificate.discovered")) == 1


def test_rediscovery_notices_a_changed_certificate(
    intermediate: ca.Authority, stored_pki: dict[str, int]
) -> None:
    first = ca.issue_certificate(intermediate, ca.CertificateRequest(common_name="localhost"))
    second = ca.issue_certificate(intermediate, ca.CertificateRequest(common_name="localhost"))
    with serving(first) as server:
        target = [f"localhost:{server.port}/localhost"]
        before = service.run_discovery(endpoints=target, timeout=2)
        server.context = server_context(second)
        after = service.run_discovery(endpoints=target, timeout=2)
        again = service.run_discovery(endpoints=target, timeout=2)
    assert [r["new_certificates"] for r in (before, after, again)] == [1, 1, 0]
    assert [r["changed"] for r in (before, after, again)] == [0, 1, 0]
    assert count(Endpoint) == 1 and count(Certificate) == 2
    changed = events("certificates.endpoint.changed")
    assert len(changed) == 1 and changed[0].payload["endpoint"] == f"localhost:{server.port}"


def test_sources_store_endpoints_and_a_schedule(stored_pki: dict[str, int]) -> None:
    from popcorn.certificates.schemas import SourceCreate
    from popcorn.jobs import list_schedules

    with session_scope() as session:
        source = service.create_source(
            session=session,
            spec=SourceCreate(name="edge", endpoints=["a.example.test:443"], cron="0 * * * *"),
        )
        assert source.options["schedule"] == "certificates.discover:edge"
    with session_scope(readonly=True) as session:
        schedule = next(s for s in list_schedules(session=session) if s.name.endswith(":edge"))
        assert schedule.task == "certificates.discover" and schedule.arguments == {"source": 1}
    with (
        pytest.raises(InvalidInput, match="port that is not a number"),
        session_scope() as session,
    ):
        service.create_source(
            session=session, spec=SourceCreate(name="bad", endpoints=["host:https"])
        )


# --------------------------------------------------------------------------- metrics


def test_metrics_count_by_status_and_list_the_soonest(stored_pki: dict[str, int]) -> None:
    inter = stored_pki["intermediate"]
    import_expiring(inter, "m1.example.test", 3)
    import_expiring(inter, "m2.example.test", -1)
    issue(inter)
    families = {f.name: f for f in service.collect_metrics()}
    by_status = {s.labels["status"]: s.value for s in families["popcorn_certificates"].samples}
    assert by_status["expiring"] == 1 and by_status["expired"] == 1 and by_status["active"] == 1
    soonest = families["popcorn_certificate_expiry_days"].samples
    assert soonest[0].labels["common_name"] == "m2.example.test" and soonest[0].value < 0
    within = {
        s.labels["days"]: s.value
        for s in families["popcorn_certificates_expiring_within_days"].samples
    }
    assert within["0"] == 1 and within["7"] == 2 and within["90"] == 3


def test_deploy_to_s3_and_a_pkcs12_file(
    stored_pki: dict[str, int],
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3: Any = boto_client("s3", moto_endpoint)
    s3.create_bucket(Bucket="edge-certs")
    with session_scope() as session:
        bucket = service.create_destination(
            session=session,
            spec=DestinationCreate(
                name="bucket",
                kind="s3",
                options={"bucket": "edge-certs", "prefix": "tls", "endpoint_url": moto_endpoint},
            ),
        ).id
        java = service.create_destination(
            session=session,
            spec=DestinationCreate(
                name="java", kind="pkcs12", options={"path": str(tmp_path)}, password="changeit"
            ),
        )
        assert java.secret_encrypted and "changeit" not in java.secret_encrypted
    cid = issue(stored_pki["intermediate"], destinations=["bucket", "java"])
    with session_scope(readonly=True) as session:
        deployments = service.list_deployments(session=session, certificate_id=cid)
    assert [(d.destination_id, d.status) for d in deployments] == [
        (bucket, "succeeded"),
        (java.id, "succeeded"),
    ]
    body = s3.get_object(Bucket="edge-certs", Key="tls/www-example-test/cert.pem")["Body"].read()
    assert body.decode() == load(cid).certificate_pem
    p12 = (tmp_path / "www-example-test.p12").read_bytes()
    key, cert, _ = pkcs12.load_key_and_certificates(p12, b"changeit")
    assert key is not None and cert is not None
    with pytest.raises(ValidationError, match="password: required"):
        DestinationCreate(name="x", kind="pkcs12", options={"path": "/tmp"})


def test_inventory_sources_sweep_the_devices_primary_addresses(
    stored_pki: dict[str, int], server_cert: ca.IssuedCertificate
) -> None:
    from popcorn.certificates.schemas import InventoryScope, SourceCreate
    from popcorn.errors import NotFound
    from popcorn.inventory.service import create_object

    with session_scope() as session:
        create_object(session=session, otype="site", data={"code": "lax1", "name": "LAX 1"})
        create_object(session=session, otype="manufacturer", data={"name": "Acme"})
        create_object(
            session=session,
            otype="device_model",
            data={"manufacturer": "Acme", "model": "OCA", "slug": "oca"},
        )
        for name, ip in (("oca-1", "127.0.0.1/32"), ("oca-2", None)):
            create_object(
                session=session,
                otype="device",
                data={
                    "name": name,
                    "role": "storage-appliance",
                    "model": "oca",
                    "site": "lax1",
                    "primary_ip4": ip,
                },
            )
    with serving(server_cert) as server:
        with session_scope() as session:
            service.create_source(
                session=session,
                spec=SourceCreate(
                    name="lax",
                    kind="inventory",
                    scope=InventoryScope(site="lax1"),
                    ports=[server.port],
                    team="edge",
                ),
            )
        summary = service.run_discovery(source="lax", timeout=2)
    assert summary["endpoints"] == 1 and summary["ok"] == 1 and summary["new_certificates"] == 1
    with session_scope(readonly=True) as session:
        endpoint = session.scalar(select(Endpoint))
        found = session.scalar(select(Certificate))
    assert endpoint is not None and (endpoint.host, endpoint.port) == ("127.0.0.1", server.port)
    assert found is not None and found.team == "edge" and found.source == "discovered"
    with (
        pytest.raises(NotFound, match="no site 'nowhere'"),
        session_scope() as session,
    ):
        service.create_source(
            session=session,
            spec=SourceCreate(name="x", kind="inventory", scope=InventoryScope(site="nowhere")),
        )
