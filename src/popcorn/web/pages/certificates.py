"""Certificate pages: what expires soon, the authorities with their CRL and OCSP addresses,
revocations, the searchable inventory, and one certificate (operators revoke it here)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from popcorn.certificates import service
from popcorn.db import session_scope
from popcorn.errors import PopcornError
from popcorn.listing import ListParams
from popcorn.web import auth as console_auth
from popcorn.web import helpers
from popcorn.web.views import OVERVIEW_PANELS, bp

STATUSES = ("active", "expiring", "expired", "revoked", "pending", "failed", "replaced")
REASONS = (
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)


def _reads(rows: Any) -> list[dict[str, Any]]:
    return [service.certificate_read(row).model_dump(mode="json") for row in rows]


def _count(session: Session, **filters: str) -> int:
    page = service.list_certificates(
        session=session, params=ListParams(limit=1, filters={k: [v] for k, v in filters.items()})
    )
    return page.count or 0


def _expiring(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """Certificates in use that expire within the warning period (or already have), soonest
    first."""
    page = service.list_certificates(
        session=session,
        params=ListParams(limit=limit, filters={"status__in": ["expiring,expired"]}),
    )
    return sorted(_reads(page.items), key=lambda c: (c["days_left"] is None, c["days_left"]))


def _authorities(session: Session) -> list[dict[str, Any]]:
    out = []
    for row in service.list_authorities(session=session):
        data = service.authority_read(row).model_dump(mode="json")
        data["issued"] = _count(session, authority_id=str(row.id))
        out.append(data)
    return out


@bp.get("/certificates")
def certificates() -> str:
    with session_scope(readonly=True) as session:
        counts = {status: _count(session, status=status) for status in STATUSES}
        expiring = _expiring(session)
        authorities = _authorities(session)
        revoked = helpers.newest(
            lambda params: service.list_certificates(session=session, params=params),
            {"status": ["revoked"]},
            size=10,
        )
        revoked["items"] = _reads(revoked["items"])
    return render_template(
        "certificates/index.html",
        counts=counts,
        total=sum(counts.values()),
        expiring=expiring,
        authorities=authorities,
        authority_names={a["id"]: a["name"] for a in authorities},
        revoked=revoked,
        warning_days=service.EXPIRING_DAYS,
    )


@bp.get("/certificates/inventory")
def certificates_inventory() -> Any:
    form = {k: request.args.get(k, "").strip() for k in ("q", "status", "authority_id")}
    filters = {k: [v] for k, v in form.items() if v and k != "q"}
    error = None
    listing: dict[str, Any] = {"items": [], "count": 0, "page": 1, "pages": 1}
    with session_scope(readonly=True) as session:

        def fetch(params: ListParams) -> Any:
            params.q = form["q"] or None
            return service.list_certificates(session=session, params=params)

        try:
            listing = helpers.newest(fetch, filters, page=helpers.page_number(request.args))
            listing["items"] = _reads(listing["items"])
        except PopcornError as exc:
            error = helpers.error_details(exc)
        names = {a.id: a.name for a in service.list_authorities(session=session)}
    return render_template(
        "certificates/inventory.html",
        form=form,
        listing=listing,
        authority_names=names,
        statuses=STATUSES,
        error=error,
    ), 422 if error else 200


@bp.get("/certificates/<int:certificate_id>")
def certificates_certificate(certificate_id: int) -> str:
    with session_scope(readonly=True) as session:
        row = service.get_certificate(session=session, certificate_id=certificate_id)
        detail = service.certificate_detail(session=session, row=row).model_dump(mode="json")
        authority = (
            service.get_authority(session=session, ref=row.authority_id).name
            if row.authority_id
            else None
        )
        deployments = [
            {"status": d.status, "location": d.location, "error": d.error, "at": d.created_at}
            for d in service.list_deployments(session=session, certificate_id=certificate_id)
        ]
    return render_template(
        "certificates/certificate.html",
        cert=detail,
        authority=authority,
        deployments=deployments,
        reasons=REASONS,
    )


@bp.post("/certificates/<int:certificate_id>/revoke")
@console_auth.needs("operator")
def certificates_revoke(certificate_id: int) -> Any:
    reason = request.form.get("reason", "unspecified")
    try:
        with session_scope() as session:
            service.revoke_certificate(
                session=session, certificate_id=certificate_id, reason=reason
            )
    except PopcornError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Certificate {certificate_id} revoked ({reason}); the CRL is published.", "ok")
    return redirect(url_for("web.certificates_certificate", certificate_id=certificate_id))


@bp.get("/certificates/authorities/<int:authority_id>")
def certificates_authority(authority_id: int) -> str:
    with session_scope(readonly=True) as session:
        row = service.get_authority(session=session, ref=authority_id)
        authority = service.authority_read(row).model_dump(mode="json")
        parent = (
            service.get_authority(session=session, ref=row.parent_id).name
            if row.parent_id
            else None
        )
        issued = helpers.newest(
            lambda params: service.list_certificates(session=session, params=params),
            {"authority_id": [str(authority_id)]},
            size=25,
        )
        issued["items"] = _reads(issued["items"])
        revoked = _count(session, authority_id=str(authority_id), status="revoked")
    return render_template(
        "certificates/authority.html",
        authority=authority,
        parent=parent,
        issued=issued,
        revoked=revoked,
        authority_names={authority["id"]: authority["name"]},
    )


def certificates_panel(session: Session) -> dict[str, Any]:
    rows: list[tuple[str, Any, str | None]] = []
    for cert in _expiring(session, limit=6):
        days = cert["days_left"]
        when = "expired" if days is not None and days < 0 else f"in {days} days"
        rows.append(
            (
                cert["name"],
                when,
                url_for("web.certificates_certificate", certificate_id=cert["id"]),
            )
        )
    active = _count(session, status="active")
    if active:
        label = "other certificates, valid past 30 days" if rows else "none expire within 30 days"
        shown = f"{active} active" if not rows else active
        rows.append((label, shown, url_for("web.certificates_inventory")))
    return {
        "title": "Certificates",
        "link": url_for("web.certificates"),
        "rows": rows,
        "empty": "No certificates yet.",
    }


OVERVIEW_PANELS.append(certificates_panel)
