"""Inventory pages for racks: a searchable list with how many devices each holds, and each
rack with its front elevation (one row per U, from the top) and its history."""

from __future__ import annotations

import math
from typing import Any

from flask import render_template, request

from popcorn.db import session_scope
from popcorn.errors import PopcornError
from popcorn.inventory import service
from popcorn.inventory.schemas import RACK_STATUSES
from popcorn.web import helpers
from popcorn.web.pages.inventory import _listing, _offset, _read
from popcorn.web.views import bp

LIMIT = 100  # rows on one page of the list
FILTERS = ("q", "site", "location", "status")


@bp.get("/inventory/racks")
def inventory_racks() -> Any:
    """Every rack with its site, location and device count, a page at a time."""
    args = request.args
    form = {k: args.get(k, "").strip() for k in FILTERS}
    filters = {k: v for k, v in form.items() if v}
    error = None
    racks: dict[str, Any] = {"items": [], "count": 0, "offset": 0, "limit": LIMIT}
    counts: dict[int, int] = {}
    with session_scope(readonly=True) as session:
        try:
            racks = _listing(session, "rack", filters, LIMIT, _offset(args))
        except PopcornError as exc:
            error = helpers.error_details(exc)
        if racks["items"]:
            counts = service.devices_per_rack(
                session=session, rack_ids=[item["id"] for item in racks["items"]]
            )
    return render_template(
        "inventory/racks.html",
        form=form,
        racks=racks,
        counts=counts,
        statuses=RACK_STATUSES,
        error=error,
    ), 422 if error else 200


@bp.get("/inventory/racks/<ref>")
def inventory_rack(ref: str) -> str:
    """A rack (by id): its fields, its front elevation and the devices not drawn on it."""
    with session_scope(readonly=True) as session:
        rack = _read(session, "rack", ref)
        devices = service.rack_devices(session=session, rack_id=rack["id"])
        history = service.history(session=session, otype="rack", ref=rack["id"])
    rows, elsewhere = elevation(rack["u_height"], devices)
    return render_template(
        "inventory/rack.html",
        rack=rack,
        rows=rows,
        used=sum(1 for row in rows if row["device"]),
        elsewhere=elsewhere,
        unmounted=[d for d in devices if d["position"] is None],
        count=len(devices),
        history=list(reversed(history)),
    )


def elevation(
    height: int, devices: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of a rack's front elevation, from U `height` down to U1, and the mounted
    devices it cannot draw there (zero-U ones such as PDUs, half-depth ones on the rear
    face, ones reaching past the rack or overlapping a device already drawn).

    One row per U: `{"u", "device", "span", "top"}`; a device's Us all carry it, the
    highest (`top`) spans its height (at least one U); an empty U has no device.
    """
    taken: dict[int, dict[str, Any]] = {}
    tops: dict[int, int] = {}
    elsewhere = []
    for device in devices:
        if device["position"] is None:
            continue
        if device["u_height"] <= 0:  # mounted on the side, not in a U
            elsewhere.append(device)
            continue
        bottom = math.floor(device["position"])
        span = max(1, math.ceil(device["u_height"]))
        units = range(bottom, bottom + span)
        rear = device["face"] == "rear" and not device["is_full_depth"]
        if rear or bottom < 1 or units[-1] > height or any(u in taken for u in units):
            elsewhere.append(device)
            continue
        taken.update(dict.fromkeys(units, device))
        tops[units[-1]] = span
    rows = [
        {"u": u, "device": taken.get(u), "span": tops.get(u, 1), "top": u in tops}
        for u in range(height, 0, -1)
    ]
    return rows, elsewhere
