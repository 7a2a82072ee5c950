"""Certificates API (`/api/v1/certificates`) and the public PKI endpoints (`/pki`).

`bp` needs a token like every API route: reads viewer, changes operator;
authorities, agent certificates, key export and destinations (they receive
keys) admin. `pki_bp` serves CRLs, OCSP answers and CA certificates without a
token, because TLS clients checking revocation have none. Views only
validate, call the service and return.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint, FileSchema
from flask import Response, request

from popcorn import metrics
from popcorn.app import role
from popcorn.audit import AuditRead
from popcorn.certificates import service
from popcorn.certificates.ocsp import decode_get_request
from popcorn.certificates.schemas import (
    AgentCertificateIssue,
    AgentCertificateRead,
    AuthorityCreate,
    AuthorityPage,
    AuthorityRead,
    AuthorityUpdate,
    CertificateDetail,
    CertificateImport,
    CertificateIssue,
    CertificatePage,
    CertificateRead,
    CertificateUpdate,
    CRLRead,
    DeploymentPage,
    DeploymentRead,
    DestinationCreate,
    DestinationPage,
    DestinationRead,
    Discover,
    EndpointPage,
    EndpointRead,
    Export,
    ExportRead,
    IssuerPage,
    JobQueued,
    NotificationPage,
    NotificationRead,
    Revoke,
    Rotate,
    Scan,
    SourceCreate,
    SourcePage,
    SourceRead,
)
from popcorn.db import session_scope
from popcorn.jobs import JobRecord
from popcorn.listing import PageResult, parse_list_params
from popcorn.schemas import Page

bp = APIBlueprint("certificates", __name__, tag="certificates")
pki_bp = APIBlueprint("certificates_pki", __name__, tag="pki")

metrics.SCRAPE_COLLECTORS.append(service.collect_metrics)

PEM = FileSchema(type="string", format="text")
DER = FileSchema(type="string", format="binary")


class AuditPage(Page[AuditRead]):
    pass


def _all(rows: list[Any], schema: Any) -> dict[str, Any]:
    """An unpaged list (authorities, destinations...) in the one list answer shape."""
    return PageResult(rows, len(rows), None).serialize(schema)


def _queued(record: JobRecord) -> tuple[JobQueued, int]:
    return JobQueued(job_id=record.id, task=record.task, status=record.status), 202


# --------------------------------------------------------------------------- authorities


@bp.get("/authorities")
@bp.output(AuthorityPage)
@bp.doc(summary="Certificate authorities")
def list_authorities() -> Any:
    with session_scope(readonly=True) as session:
        return _all(service.authority_reads(session=session), AuthorityRead)


@bp.post("/authorities")
@role("admin")
@bp.input(AuthorityCreate, arg_name="body")
@bp.output(AuthorityRead, status_code=201)
@bp.doc(
    summary="Create a root or intermediate CA, import one, or add an external issuer",
    description="`purpose: agents` makes an authority for Bolt agents' mutual TLS: it issues "
    "only through `POST /certificates/agents` (admin), never through the general issue route.",
)
def create_authority(body: AuthorityCreate) -> Any:
    with session_scope() as session:
        return service.authority_read(service.create_authority(session=session, spec=body))


@bp.get("/authorities/<ref>")
@bp.output(AuthorityRead)
@bp.doc(summary="One authority by id or name (no key material)")
def show_authority(ref: str) -> Any:
    with session_scope(readonly=True) as session:
        return service.authority_read(service.get_authority(session=session, ref=ref))


@bp.patch("/authorities/<ref>")
@role("admin")
@bp.input(AuthorityUpdate, arg_name="body")
@bp.output(AuthorityRead)
@bp.doc(summary="Change an authority's policy (validity, SANs, URLs, rotation)")
def update_authority(ref: str, body: AuthorityUpdate) -> Any:
    with session_scope() as session:
        return service.authority_read(service.update_authority(session=session, ref=ref, spec=body))


@bp.get("/authorities/<ref>/bundle")
@bp.output(PEM, content_type="application/x-pem-file")
@bp.doc(summary="The CA bundle (this authority up to its root) as PEM, for clients to trust")
def authority_bundle(ref: str) -> Response:
    with session_scope(readonly=True) as session:
        pem = service.ca_bundle(session=session, authority=ref)
    return Response(pem, content_type="application/x-pem-file")


@bp.post("/authorities/<ref>/crl")
@bp.output(CRLRead)
@bp.doc(summary="Publish a fresh CRL now")
def publish_crl(ref: str) -> Any:
    with session_scope() as session:
        return service.republish_crl(session=session, authority=ref)


@bp.get("/issuers")
@bp.output(IssuerPage)
@bp.doc(summary="Installed issuer plugins")
def list_issuers() -> Any:
    slugs = service.list_issuers()
    return PageResult.whole([{"slug": s} for s in slugs]).serialize()


# --------------------------------------------------------------------------- certificates


@bp.get("")
@bp.output(CertificatePage)
@bp.doc(
    summary="Certificate inventory",
    description="Filters: status (active, expiring, expired, revoked, replaced, pending), "
    "owner, team, authority_id, common_name, domain, serial, fingerprint, source, profile, "
    "not_after__lte…, expires_within=<days>, q=<text>.",
)
def list_certificates() -> Any:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        page = service.list_certificate_reads(session=session, params=params)
        return page.serialize(CertificateRead)


@bp.post("")
@bp.input(CertificateIssue, arg_name="body")
@bp.output(CertificateDetail, status_code=201)
@bp.doc(
    summary="Issue a certificate (from a CSR or with a generated key)",
    description="Names starting with `popcorn-` are reserved for the platform, and "
    "authorities with the `agents` purpose do not issue here.",
)
def issue_certificate(body: CertificateIssue) -> Any:
    with session_scope() as session:
        row = service.issue_certificate(session=session, spec=body)
        return service.certificate_detail(session=session, row=row)


@bp.post("/import")
@bp.input(CertificateImport, arg_name="body")
@bp.output(CertificateDetail, status_code=201)
@bp.doc(summary="Import an existing certificate, its chain and optionally its key")
def import_certificate(body: CertificateImport) -> Any:
    with session_scope() as session:
        row = service.import_certificate(session=session, spec=body)
        return service.certificate_detail(session=session, row=row)


@bp.get("/<int:certificate_id>")
@bp.output(CertificateDetail)
@bp.doc(summary="One certificate with its chain, endpoints and destinations")
def show_certificate(certificate_id: int) -> Any:
    with session_scope(readonly=True) as session:
        row = service.get_certificate(session=session, certificate_id=certificate_id)
        return service.certificate_detail(session=session, row=row)


@bp.patch("/<int:certificate_id>")
@bp.input(CertificateUpdate, arg_name="body")
@bp.output(CertificateDetail)
@bp.doc(summary="Change owner, team, description, rotation policy or destinations")
def update_certificate(certificate_id: int, body: CertificateUpdate) -> Any:
    with session_scope() as session:
        row = service.update_certificate(session=session, certificate_id=certificate_id, spec=body)
        return service.certificate_detail(session=session, row=row)


@bp.post("/<int:certificate_id>/revoke")
@bp.input(Revoke, arg_name="body")
@bp.output(CertificateDetail)
@bp.doc(summary="Revoke with an RFC 5280 reason; the CRL is republished at once")
def revoke_certificate(certificate_id: int, body: Revoke) -> Any:
    with session_scope() as session:
        row = service.revoke_certificate(
            session=session, certificate_id=certificate_id, reason=body.reason
        )
        return service.certificate_detail(session=session, row=row)


@bp.post("/<int:certificate_id>/rotate")
@bp.input(Rotate, arg_name="body")
@bp.output(CertificateDetail, status_code=201)
@bp.doc(summary="Reissue, deploy to the certificate's destinations, retire the old one")
def rotate_certificate(certificate_id: int, body: Rotate) -> Any:
    with session_scope() as session:
        row = service.rotate_certificate(
            session=session, certificate_id=certificate_id, validity_days=body.validity_days
        )
        return service.certificate_detail(session=session, row=row)


@bp.post("/<int:certificate_id>/export")
@role("admin")
@bp.input(Export, arg_name="body")
@bp.output(ExportRead)
@bp.doc(summary="Export with the private key (PEM or PKCS#12); audited")
def export_certificate(certificate_id: int, body: Export) -> Any:
    with session_scope() as session:
        return service.export_certificate(session=session, certificate_id=certificate_id, spec=body)


@bp.post("/<int:certificate_id>/deploy")
@bp.output(DeploymentPage)
@bp.doc(
    summary="Deploy to the certificate's destinations again",
    description="Destinations are made by admins; each deploy re-checks the target against "
    "the deploy roots or the outbound allow-list, and is audited with the resolved target.",
)
def deploy_certificate(certificate_id: int) -> Any:
    with session_scope() as session:
        rows = service.deploy_certificate(session=session, certificate_id=certificate_id)
        return _all(rows, DeploymentRead)


@bp.get("/<int:certificate_id>/deployments")
@bp.output(DeploymentPage)
@bp.doc(summary="Deployments of a certificate")
def list_deployments(certificate_id: int) -> Any:
    with session_scope(readonly=True) as session:
        rows = service.list_deployments(session=session, certificate_id=certificate_id)
        return _all(rows, DeploymentRead)


@bp.get("/<int:certificate_id>/history")
@bp.output(AuditPage)
@bp.doc(summary="Change log of a certificate (issue, export, revoke, rotate, deploy)")
def certificate_history(certificate_id: int) -> Any:
    with session_scope(readonly=True) as session:
        rows = service.certificate_history(session=session, certificate_id=certificate_id)
        return _all(rows, AuditRead)


@bp.post("/agents")
@role("admin")
@bp.input(AgentCertificateIssue, arg_name="body")
@bp.output(AgentCertificateRead, status_code=201)
@bp.doc(
    summary="Issue a Bolt agent's mutual-TLS certificate (returns its key once)",
    description="Only from an authority whose purpose is `agents`.",
)
def issue_agent_certificate(body: AgentCertificateIssue) -> Any:
    with session_scope() as session:
        return service.issue_agent_credentials(session=session, spec=body)


# --------------------------------------------------------------------------- destinations


@bp.get("/destinations")
@bp.output(DestinationPage)
@bp.doc(summary="Deployment destinations")
def list_destinations() -> Any:
    with session_scope(readonly=True) as session:
        return _all(service.list_destinations(session=session), DestinationRead)


@bp.post("/destinations")
@role("admin")
@bp.input(DestinationCreate, arg_name="body")
@bp.output(DestinationRead, status_code=201)
@bp.doc(
    summary="Add a directory, PKCS#12, S3, IAM or ACM destination (admin: it receives keys)",
    description="Directory and PKCS#12 paths must be absolute and lie under a deploy root "
    "(POPCORN_DEPLOY_ROOTS) once symlinks and `..` are resolved; S3, IAM and ACM endpoints "
    "must be allowed by POPCORN_OUTBOUND_ALLOW.",
)
def create_destination(body: DestinationCreate) -> Any:
    with session_scope() as session:
        return service.create_destination(session=session, spec=body)


@bp.delete("/destinations/<ref>")
@role("admin")
@bp.output(DestinationRead)
@bp.doc(summary="Remove a destination (by name or id)")
def delete_destination(ref: str) -> Any:
    with session_scope() as session:
        return service.delete_destination(session=session, ref=ref)


# --------------------------------------------------------------------------- discovery and scan


@bp.get("/sources")
@bp.output(SourcePage)
@bp.doc(summary="Discovery sources")
def list_sources() -> Any:
    with session_scope(readonly=True) as session:
        return _all(service.list_sources(session=session), SourceRead)


@bp.post("/sources")
@bp.input(SourceCreate, arg_name="body")
@bp.output(SourceRead, status_code=201)
@bp.doc(summary="Add endpoints to sweep, optionally on a cron schedule")
def create_source(body: SourceCreate) -> Any:
    with session_scope() as session:
        return service.create_source(session=session, spec=body)


@bp.post("/discover")
@bp.input(Discover, arg_name="body")
@bp.output(JobQueued, status_code=202)
@bp.doc(summary="Sweep endpoints or a source now (runs as a job)")
def discover(body: Discover) -> Any:
    with session_scope() as session:
        return _queued(service.queue_discovery(session=session, spec=body))


@bp.get("/endpoints")
@bp.output(EndpointPage)
@bp.doc(summary="TLS endpoints found by discovery (filters: host, port, certificate_id…)")
def list_endpoints() -> Any:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        return service.list_endpoints(session=session, params=params).serialize(EndpointRead)


@bp.post("/scan")
@bp.input(Scan, arg_name="body")
@bp.output(JobQueued, status_code=202)
@bp.doc(summary="Run the expiry scan now (runs as a job)")
def scan(body: Scan) -> Any:
    with session_scope() as session:
        return _queued(service.queue_scan(session=session, intervals=body.intervals))


@bp.get("/notifications")
@bp.output(NotificationPage)
@bp.doc(summary="Expiry warnings sent (filters: certificate_id, kind, interval_days, sent_at)")
def list_notifications() -> Any:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        page = service.list_notifications(session=session, params=params)
        return page.serialize(NotificationRead)


# --------------------------------------------------------------------------- public PKI


@pki_bp.get("/crl/<int:authority_id>.crl")
@pki_bp.output(DER, content_type="application/pkix-crl")
@pki_bp.doc(summary="The authority's current CRL (DER), no token needed")
def crl(authority_id: int) -> Response:
    return Response(
        service.serve_crl(authority_id=authority_id),
        content_type="application/pkix-crl",
        headers={"Cache-Control": "public, max-age=300"},
    )


@pki_bp.get("/ca/<int:authority_id>.crt")
@pki_bp.output(DER, content_type="application/pkix-cert")
@pki_bp.doc(summary="The authority's certificate (DER), for AIA caIssuers")
def ca_certificate(authority_id: int) -> Response:
    with session_scope(readonly=True) as session:
        der = service.ca_certificate_der(session=session, authority_id=authority_id)
    return Response(der, content_type="application/pkix-cert")


def _ocsp(authority_id: int, request_der: bytes) -> Response:
    with session_scope(readonly=True) as session:
        answer = service.ocsp_response(
            session=session, authority_id=authority_id, request_der=request_der
        )
    return Response(answer, content_type="application/ocsp-response")


@pki_bp.post("/ocsp/<int:authority_id>")
@pki_bp.output(DER, content_type="application/ocsp-response")
@pki_bp.doc(summary="OCSP responder (RFC 6960, POST of a DER request)")
def ocsp_post(authority_id: int) -> Response:
    return _ocsp(authority_id, request.get_data(cache=False)[:65536])


@pki_bp.get("/ocsp/<int:authority_id>/<path:encoded>")
@pki_bp.output(DER, content_type="application/ocsp-response")
@pki_bp.doc(summary="OCSP responder (GET with the base64 request in the path)")
def ocsp_get(authority_id: int, encoded: str) -> Response:
    return _ocsp(authority_id, decode_get_request(encoded))
