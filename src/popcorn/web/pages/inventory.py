"""Inventory pages: search, a site with its devices, a device with its components, links,
Bolt agent and change history; operators move devices along their lifecycle, mark failed
parts and write journal notes."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from popcorn.db import session_scope
from popcorn.errors import PopcornError
from popcorn.inventory import schemas, service
from popcorn.web import auth as console_auth
from popcorn.web import helpers
from popcorn.web.views import OVERVIEW_PANELS, bp

SEARCH_FILTERS = ("site", "status", "role", "region")
PARTS_LIMIT = 1000  # components, interfaces or links shown on one device page


def _offset(args: Any) -> int:
    raw = str(args.get("offset", "0"))
    return int(raw) if raw.isdigit() else 0


def _listing(
    session: Session, otype: str, args: dict[str, Any], limit: int, offset: int = 0
) -> dict[str, Any]:
    page = service.list_objects(
        session=session, otype=otype, args={**args, "limit": str(limit), "offset": str(offset)}
    )
    page["offset"], page["limit"] = offset, limit
    return page


def _read(session: Session, otype: str, ref: str) -> dict[str, Any]:
    """One object as its detail page shows it (by id, or what its type is known by)."""
    obj = service.get_object(session=session, otype=otype, ref=ref)
    return service.read_one(session=session, otype=otype, obj=obj)


@bp.get("/inventory")
def inventory() -> Any:
    """The old address of the device list: it moved to its own URL."""
    query = request.query_string.decode()
    return redirect(url_for("web.inventory_devices") + (f"?{query}" if query else ""))


@bp.get("/inventory/devices")
def inventory_devices() -> Any:
    args = request.args
    form = {k: args.get(k, "").strip() for k in ("q", *SEARCH_FILTERS)}
    filters = {k: v for k, v in form.items() if v}
    offset = _offset(args)
    error = None
    devices: dict[str, Any] = {"items": [], "count": 0, "offset": 0, "limit": 50}
    sites: dict[str, Any] = {"items": [], "count": 0}
    with session_scope(readonly=True) as session:
        try:
            devices = _listing(session, "device", filters, 50, offset)
            site_args = {"q": form["q"]} if form["q"] else {}
            if form["region"]:
                site_args["region"] = form["region"]
            if not (form["site"] or form["status"] or form["role"]):
                sites = _listing(session, "site", site_args, 100)
        except PopcornError as exc:
            error = helpers.error_details(exc)
        by_status = service.device_counts(session=session, by="status")
        by_role = service.device_counts(session=session, by="role")
        capacity = {row["site"]: row for row in service.site_capacity(session=session)}
        failed = service.failed_components(session=session, limit=10)
    return render_template(
        "inventory/index.html",
        form=form,
        searching=bool(filters),
        devices=devices,
        sites=sites,
        capacity=capacity,
        by_status=by_status,
        by_role=by_role,
        failed=failed,
        error=error,
        statuses=schemas.DEVICE_STATUSES,
        roles=schemas.DEVICE_ROLES,
    ), 422 if error else 200


@bp.get("/inventory/sites")
def inventory_sites() -> Any:
    """Every site with its active capacity, a page at a time (search by code, name, region or
    site group)."""
    args = request.args
    form = {k: args.get(k, "").strip() for k in ("q", "region", "site_group")}
    filters = {k: v for k, v in form.items() if v}
    error = None
    sites: dict[str, Any] = {"items": [], "count": 0, "offset": 0, "limit": 100}
    with session_scope(readonly=True) as session:
        try:
            sites = _listing(session, "site", filters, 100, _offset(args))
        except PopcornError as exc:
            error = helpers.error_details(exc)
        capacity = {row["site"]: row for row in service.site_capacity(session=session)}
    return render_template(
        "inventory/sites.html", form=form, sites=sites, capacity=capacity, error=error
    ), 422 if error else 200


@bp.get("/inventory/sites/<ref>")
def inventory_site(ref: str) -> str:
    offset = _offset(request.args)
    with session_scope(readonly=True) as session:
        site = _read(session, "site", ref)
        devices = _listing(session, "device", {"site": site["code"]}, 100, offset)
        locations = _listing(session, "location", {"site": site["code"]}, PARTS_LIMIT)
        racks = _listing(session, "rack", {"site": site["code"]}, 1)["count"]
        location_counts = service.location_counts(session=session, site_ids=[site["id"]])
        capacity = service.site_capacity(session=session, site=site["code"])
        history = service.history(session=session, otype="site", ref=site["id"])
        journal = service.journal(session=session, otype="site", ref=site["id"])
    return render_template(
        "inventory/site.html",
        site=site,
        devices=devices,
        locations=locations,
        racks=racks,
        location_counts=location_counts,
        capacity=capacity[0] if capacity else None,
        history=list(reversed(history)),
        journal=list(reversed(journal)),
    )


@bp.get("/inventory/devices/<ref>")
def inventory_device(ref: str) -> str:
    with session_scope(readonly=True) as session:
        device = service.read_one(
            session=session, otype="device", obj=service.get_device(session=session, ref=ref)
        )
        name = device["name"]
        components = _listing(session, "component", {"device": name}, PARTS_LIMIT)
        interfaces = _listing(session, "interface", {"device": name}, PARTS_LIMIT)
        links = _listing(session, "link", {"device": name}, PARTS_LIMIT)
        history = service.history(session=session, otype="device", ref=device["id"])
        journal = service.journal(session=session, otype="device", ref=device["id"])
    by_link = {link["id"]: link for link in links["items"]}
    for interface in interfaces["items"]:
        link = by_link.get(interface["link_id"])
        if link is not None:
            near_a = link["a_device"] == name and link["a_name"] == interface["name"]
            interface["peer"] = (
                (link["b_device"], link["b_name"]) if near_a else (link["a_device"], link["a_name"])
            )
    return render_template(
        "inventory/device.html",
        device=device,
        components=components,
        interfaces=interfaces,
        links=links,
        history=list(reversed(history)),
        journal=list(reversed(journal)),
        statuses=schemas.DEVICE_STATUSES,
        journal_kinds=schemas.JOURNAL_KINDS,
        signals_link=_signals_link(name),
    )


def _signals_link(device: str) -> str | None:
    """The signals explorer on this device's series, when the signals domain is installed."""
    if not helpers.has_endpoint("web.signals"):
        return None
    return url_for("web.signals", query=f'{{device="{device}"}}', start="now-6h", end="now")


def _act(done: str, action: Any) -> None:
    """Run one change in its own transaction and tell the person how it went."""
    try:
        with session_scope() as session:
            action(session)
    except (PopcornError, ValueError) as exc:
        flash(getattr(exc, "message", None) or str(exc).splitlines()[0], "error")
    else:
        flash(done, "ok")


@bp.post("/inventory/devices/<ref>/status")
@console_auth.needs("operator")
def inventory_device_status(ref: str) -> Any:
    status = request.form.get("status", "")
    reason = request.form.get("reason", "").strip()
    _act(
        f"Status set to {status}.",
        lambda session: service.set_device_status(
            session=session, ref=ref, status=status, reason=reason
        ),
    )
    return redirect(url_for("web.inventory_device", ref=ref))


@bp.post("/inventory/devices/<ref>/components/<int:component_id>/fail")
@console_auth.needs("operator")
def inventory_component_fail(ref: str, component_id: int) -> Any:
    reason = request.form.get("reason", "").strip()
    _act(
        "Component marked failed.",
        lambda session: service.mark_component_failed(
            session=session, device=ref, component=component_id, reason=reason
        ),
    )
    return redirect(url_for("web.inventory_device", ref=ref) + "#components")


@bp.post("/inventory/<otype>/<ref>/journal")
@console_auth.needs("operator")
def inventory_journal(otype: str, ref: str) -> Any:
    if otype not in ("device", "site"):
        return redirect(url_for("web.inventory_devices"))
    comments = request.form.get("comments", "").strip()
    kind = request.form.get("kind", "info")
    if not comments:
        flash("Write a note first.", "error")
    else:
        _act(
            "Note added.",
            lambda session: service.add_journal(
                session=session, otype=otype, ref=ref, comments=comments, kind=kind
            ),
        )
    endpoint = "web.inventory_device" if otype == "device" else "web.inventory_site"
    return redirect(url_for(endpoint, ref=ref) + "#journal")


def inventory_panel(session: Session) -> dict[str, Any]:
    rows: list[tuple[str, Any, str | None]] = [
        (
            f"{row['status']} devices",
            f"{row['devices']:,}",
            url_for("web.inventory_devices", status=row["status"]),
        )
        for row in service.device_counts(session=session, by="status")
    ]
    failed = service.failed_components(session=session, limit=3)
    for item in failed:
        parts = ", ".join(part["name"] for part in item["failed"])
        rows.append(
            (
                f"{item['device']}: failed {parts}",
                item["site"],
                url_for("web.inventory_device", ref=item["device"]),
            )
        )
    return {
        "title": "Inventory",
        "link": url_for("web.inventory_devices"),
        "rows": rows,
        "empty": "No devices yet.",
    }


OVERVIEW_PANELS.append(inventory_panel)


# IPAM, circuit and power list pages; site groups and locations; racks.
from popcorn.web.pages import inventory_ipam, inventory_places, inventory_racks  # noqa: E402,F401
