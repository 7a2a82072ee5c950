"""Certificates API (`/api/v1/certificates`) and the public PKI endpoints (`/pki`).

`bp` needs a token like every API route: reads viewer, changes operator,
authority creation, policy changes and key export admin. `pki_bp` serves
CRLs, OCSP answers and CA certificates without a token, because TLS clients
checking revocation have none.
"""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, request

from popcorn import jobs, metrics
from popcorn.app import role
from popcorn.audit import records_for
from popcorn.certificates import service
from popcorn.certificates.models import Endpoint, Notification
from popcorn.certificates.ocsp import decode_get_request
from popcorn.certificates.plugins import ISSUERS
from popcorn.certificates.schemas import (
    AgentCertificateIssue,
    AgentCertificateRead,
    AuthorityCreate,
    AuthorityRead,
    AuthorityUpdate,
    CertificateDetail,
    CertificateImport,
    CertificateIssue,
    CertificateUpdate,
    DeploymentRead,
    DestinationCreate,
    DestinationRead,
    Discover,
    EndpointRead,
    Export,
    ExportRead,
    NotificationRead,
    Revoke,
    Rotate,
    Scan,
    SourceCreate,
    SourceRead,
)
from popcorn.db import session_scope
from popcorn.listing import paginate, parse_list_params
from popcorn.schemas import ReadSchema

bp = APIBlueprint("certificates", __name__, tag="certificates")
pki_bp = APIBlueprint("certificates_pki", __name__, tag="pki")

metrics.SCRAPE_COLLECTORS.append(service.collect_metrics)


def _items(rows: list[Any], schema: type[ReadSchema]) -> dict[str, Any]:
    return {
        "items": [schema.model_validate(r).model_dump(mode="json") for r in rows],
        "count": len(rows),
        "next": None,
    }


def _job(record: jobs.JobRecord) -> dict[str, Any]:
    return {"job_id": record.id, "task": record.task, "status": record.status}


# --------------------------------------------------------------------------- authorities


@bp.get("/authorities")
@bp.doc(summary="Certificate authorities")
def list_authorities() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        rows = service.list_authorities(session=session)
        return {
            "items": [service.authority_read(r).model_dump(mode="json") for r in rows],
            "count": len(rows),
            "next": None,
        }


@bp.post("/authorities")
@role("admin")
@bp.input(AuthorityCreate, arg_name="body")
@bp.output(AuthorityRead, status_code=201)
@bp.doc(summary="Create a root or intermediate CA, import one, or add an external issuer")
def create_authority(body: AuthorityCreate) -> Any:
    with session_scope() as session:
        return service.authority_read(service.create_authority(session=session, spec=body))


@bp.get("/authorities/<int:authority_id>")
@bp.output(AuthorityRead)
@bp.doc(summary="One authority (no key material)")
def show_authority(authority_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return service.authority_read(service.get_authority(session=session, ref=authority_id))


@bp.patch("/authorities/<int:authority_id>")
@role("admin")
@bp.input(AuthorityUpdate, arg_name="body")
@bp.output(AuthorityRead)
@bp.doc(summary="Change an authority's policy (validity, SANs, URLs, rotation)")
def update_authority(authority_id: int, body: AuthorityUpdate) -> Any:
    with session_scope() as session:
        row = service.update_authority(session=session, ref=authority_id, spec=body)
        return service.authority_read(row)


@bp.get("/authorities/<int:authority_id>/bundle")
@bp.doc(summary="The CA bundle (this authority up to its root) as PEM, for clients to trust")
def authority_bundle(authority_id: int) -> Response:
    with session_scope(readonly=True) as session:
        pem = service.ca_bundle(session=session, authority=authority_id)
    return Response(pem, content_type="application/x-pem-file")


@bp.post("/authorities/<int:authority_id>/crl")
@bp.doc(summary="Publish a fresh CRL now")
def publish_crl(authority_id: int) -> dict[str, Any]:
    with session_scope() as session:
        service.publish_crl(session=session, authority=authority_id)
        row = service.get_authority(session=session, ref=authority_id)
        return {"crl_number": row.crl_number, "crl_url": service.crl_url(row)}


@bp.get("/issuers")
@bp.doc(summary="Installed issuer plugins")
def list_issuers() -> dict[str, Any]:
    return {"items": [{"slug": slug} for slug in sorted(ISSUERS)], "count": len(ISSUERS)}


# --------------------------------------------------------------------------- certificates


@bp.get("")
@bp.doc(
    summary="Certificate inventory",
    description="Filters: status (active, expiring, expired, revoked, replaced, pending), "
    "owner, team, authority_id, common_name, domain, serial, fingerprint, source, profile, "
    "not_after__lte…, expires_within=<days>, q=<text>.",
)
def list_certificates() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        result = service.list_certificates(session=session, params=params)
        return result.as_dict(
            [service.certificate_read(r).model_dump(mode="json") for r in result.items]
        )


@bp.post("")
@bp.input(CertificateIssue, arg_name="body")
@bp.output(CertificateDetail, status_code=201)
@bp.doc(summary="Issue a certificate (from a CSR or with a generated key)")
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
@bp.doc(summary="Deploy to the certificate's destinations again")
def deploy_certificate(certificate_id: int) -> dict[str, Any]:
    with session_scope() as session:
        rows = service.deploy_certificate(session=session, certificate_id=certificate_id)
        return _items(rows, DeploymentRead)


@bp.get("/<int:certificate_id>/deployments")
@bp.doc(summary="Deployments of a certificate")
def list_deployments(certificate_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        rows = service.list_deployments(session=session, certificate_id=certificate_id)
        return _items(rows, DeploymentRead)


@bp.get("/<int:certificate_id>/history")
@bp.doc(summary="Change log of a certificate (issue, export, revoke, rotate, deploy)")
def certificate_history(certificate_id: int) -> dict[str, Any]:
    from popcorn.views import AuditRead

    with session_scope(readonly=True) as session:
        service.get_certificate(session=session, certificate_id=certificate_id)
        return _items(records_for(session, "certificate", certificate_id), AuditRead)


@bp.post("/agents")
@role("admin")
@bp.input(AgentCertificateIssue, arg_name="body")
@bp.output(AgentCertificateRead, status_code=201)
@bp.doc(summary="Issue a Bolt agent's mutual-TLS certificate (returns its key once)")
def issue_agent_certificate(body: AgentCertificateIssue) -> Any:
    with session_scope() as session:
        issued = service.issue_agent_certificate(session=session, **body.model_dump())
        bundle = service.ca_bundle(session=session, authority=body.authority)
        return AgentCertificateRead(
            certificate_id=issued.certificate_id,
            certificate_pem=issued.cert_pem,
            private_key_pem=issued.key_pem,
            chain_pem=issued.chain_pem,
            ca_bundle_pem=bundle,
        )


# --------------------------------------------------------------------------- destinations


@bp.get("/destinations")
@bp.doc(summary="Deployment destinations")
def list_destinations() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return _items(service.list_destinations(session=session), DestinationRead)


@bp.post("/destinations")
@bp.input(DestinationCreate, arg_name="body")
@bp.output(DestinationRead, status_code=201)
@bp.doc(summary="Add a directory, S3, IAM, ACM or PKCS#12 destination")
def create_destination(body: DestinationCreate) -> Any:
    with session_scope() as session:
        return service.create_destination(session=session, spec=body)


@bp.delete("/destinations/<ref>")
@bp.output(DestinationRead)
@bp.doc(summary="Remove a destination (by id or name)")
def delete_destination(ref: str) -> Any:
    with session_scope() as session:
        return service.delete_destination(session=session, ref=ref)


# --------------------------------------------------------------------------- discovery and scan


@bp.get("/sources")
@bp.doc(summary="Discovery sources")
def list_sources() -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return _items(service.list_sources(session=session), SourceRead)


@bp.post("/sources")
@bp.input(SourceCreate, arg_name="body")
@bp.output(SourceRead, status_code=201)
@bp.doc(summary="Add endpoints to sweep, optionally on a cron schedule")
def create_source(body: SourceCreate) -> Any:
    with session_scope() as session:
        return service.create_source(session=session, spec=body)


@bp.post("/discover")
@bp.input(Discover, arg_name="body")
@bp.doc(summary="Sweep endpoints or a source now (runs as a job)", responses={202: "queued"})
def discover(body: Discover) -> tuple[dict[str, Any], int]:
    with session_scope() as session:
        if body.source is not None:
            arguments: dict[str, Any] = {
                "source": service.get_source(session=session, ref=body.source).id
            }
        else:
            arguments = {"endpoints": body.endpoints}
        arguments["timeout"] = body.timeout
        return _job(jobs.enqueue(session, "certificates.discover", arguments=arguments)), 202


@bp.get("/endpoints")
@bp.doc(summary="TLS endpoints found by discovery (filters: host, port, certificate_id…)")
def list_endpoints() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        result = paginate(session, service.list_endpoints_query(params), params, key=Endpoint.id)
        return result.as_dict(
            [EndpointRead.model_validate(r).model_dump(mode="json") for r in result.items]
        )


@bp.post("/scan")
@bp.input(Scan, arg_name="body")
@bp.doc(summary="Run the expiry scan now (runs as a job)", responses={202: "queued"})
def scan(body: Scan) -> tuple[dict[str, Any], int]:
    with session_scope() as session:
        record = jobs.enqueue(session, "certificates.scan", arguments={"intervals": body.intervals})
        return _job(record), 202


@bp.get("/notifications")
@bp.doc(summary="Expiry warnings sent (filters: certificate_id, kind, interval_days, sent_at)")
def list_notifications() -> dict[str, Any]:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        stmt = service.list_notifications_query(params)
        result = paginate(session, stmt, params, key=Notification.id)
        return result.as_dict(
            [NotificationRead.model_validate(r).model_dump(mode="json") for r in result.items]
        )


# --------------------------------------------------------------------------- public PKI


@pki_bp.get("/crl/<int:authority_id>.crl")
@pki_bp.doc(summary="The authority's current CRL (DER), no token needed")
def crl(authority_id: int) -> Response:
    with session_scope(readonly=True) as session:
        der = service.current_crl(session=session, authority_id=authority_id)
    if der is None:  # never published, or close to its next update
        with session_scope() as session:
            der = service.current_crl(session=session, authority_id=authority_id)
            if der is None:
                der = service.publish_crl(session=session, authority=authority_id)
    return Response(
        der, content_type="application/pkix-crl", headers={"Cache-Control": "public, max-age=300"}
    )


@pki_bp.get("/ca/<int:authority_id>.crt")
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
@pki_bp.doc(summary="OCSP responder (RFC 6960, POST of a DER request)")
def ocsp_post(authority_id: int) -> Response:
    return _ocsp(authority_id, request.get_data(cache=False)[:65536])


@pki_bp.get("/ocsp/<int:authority_id>/<path:encoded>")
@pki_bp.doc(summary="OCSP responder (GET with the base64 request in the path)")
def ocsp_get(authority_id: int, encoded: str) -> Response:
    return _ocsp(authority_id, decode_get_request(encoded))
