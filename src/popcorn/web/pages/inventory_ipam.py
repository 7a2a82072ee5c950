"""Inventory pages for IPAM, circuits and power: prefixes with their hierarchy and use,
addresses, VLANs, circuits and power feeds, each searchable and paged, figures readable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import render_template, request

from popcorn.db import session_scope
from popcorn.errors import PopcornError
from popcorn.inventory.ipam import reads, service
from popcorn.numbers import number, percent, quantity
from popcorn.web import helpers
from popcorn.web.views import bp

LIMIT = 100

# Per page: title, object type, filters offered, columns (header, how to show a row).
Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _dash(value: Any) -> str:
    return "—" if value in (None, "") else str(value)


def _device_cell(row: dict[str, Any]) -> dict[str, Any]:
    return {"device": row["device"], "text": row["interface"] or ""}


PAGES: dict[str, tuple[str, str, tuple[str, ...], list[Column]]] = {
    "prefixes": (
        "Prefixes",
        "prefix",
        ("q", "vrf", "site", "status", "within"),
        [
            ("prefix", lambda r: {"indent": r["depth"], "text": r["prefix"]}),
            ("VRF", lambda r: r["vrf"] or "global"),
            ("site", lambda r: _dash(r["site"])),
            ("status", lambda r: {"badge": r["status"]}),
            ("children", lambda r: number(r["children"])),
            ("utilisation", lambda r: {"bar": r["utilization"], "text": percent(r["utilization"])}),
            ("description", lambda r: r["description"]),
        ],
    ),
    "ip-addresses": (
        "IP addresses",
        "ip_address",
        ("q", "vrf", "status", "device"),
        [
            ("address", lambda r: r["address"]),
            ("VRF", lambda r: r["vrf"] or "global"),
            ("status", lambda r: {"badge": r["status"]}),
            ("role", lambda r: _dash(r["role"])),
            ("device", _device_cell),
            ("primary", lambda r: "yes" if r["primary"] else ""),
            ("DNS name", lambda r: r["dns_name"]),
        ],
    ),
    "vlans": (
        "VLANs",
        "vlan",
        ("q", "group", "site", "status"),
        [
            ("VID", lambda r: r["vid"]),
            ("name", lambda r: r["name"]),
            ("group", lambda r: _dash(r["group"])),
            ("site", lambda r: _dash(r["site"])),
            ("status", lambda r: {"badge": r["status"]}),
            ("description", lambda r: r["description"]),
        ],
    ),
    "circuits": (
        "Circuits",
        "circuit",
        ("q", "provider", "type", "status"),
        [
            ("circuit", lambda r: r["cid"]),
            ("provider", lambda r: r["provider"]),
            ("type", lambda r: r["type"]),
            ("status", lambda r: {"badge": r["status"]}),
            ("commit rate", lambda r: reads.human_rate(r["commit_rate"])),
            ("A side", lambda r: _dash(r["a_site"])),
            ("Z side", lambda r: _dash(r["z_site"])),
        ],
    ),
    "power-feeds": (
        "Power feeds",
        "power_feed",
        ("q", "site", "power_panel", "status"),
        [
            ("feed", lambda r: f"{r['power_panel']}/{r['name']}"),
            ("site", lambda r: r["site"]),
            ("rack", lambda r: _dash(r["rack"])),
            ("status", lambda r: {"badge": r["status"]}),
            ("supply", lambda r: f"{r['type']}, {r['supply']}, {r['phase']}"),
            ("rating", lambda r: f"{quantity(r['voltage'], 'V')}, {quantity(r['amperage'], 'A')}"),
            ("available", lambda r: quantity(r["available_power"], "VA")),
            ("allocated", lambda r: quantity(r["allocated_draw"], "W")),
            ("utilisation", lambda r: {"bar": r["utilization"], "text": percent(r["utilization"])}),
        ],
    ),
}


def _offset() -> int:
    raw = str(request.args.get("offset", "0"))
    return int(raw) if raw.isdigit() else 0


def _page(path: str) -> Any:
    title, otype, fields, columns = PAGES[path]
    form = {k: request.args.get(k, "").strip() for k in fields}
    filters = {k: v for k, v in form.items() if v}
    offset = _offset()
    error = None
    listing: dict[str, Any] = {"items": [], "count": 0}
    with session_scope(readonly=True) as session:
        try:
            listing = service.list_objects(
                session=session,
                otype=otype,
                args={**filters, "limit": str(LIMIT), "offset": str(offset)},
            )
        except PopcornError as exc:
            error = helpers.error_details(exc)
    listing.update(offset=offset, limit=LIMIT)
    rows = [[show(item) for _, show in columns] for item in listing["items"]]
    return render_template(
        "inventory/ipam_list.html",
        title=title,
        path=path,
        endpoint=f"web.inventory_{otype}_list",
        form=form,
        headers=[header for header, _ in columns],
        rows=rows,
        listing=listing,
        error=error,
    ), 422 if error else 200


def _route(path: str) -> None:
    otype = PAGES[path][1]

    def view() -> Any:
        return _page(path)

    view.__name__ = f"inventory_{otype}_list"
    bp.get(f"/inventory/{path}")(view)


for _path in PAGES:
    _route(_path)
