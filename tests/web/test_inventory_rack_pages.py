"""Console pages for racks: the list with its filters and pager, a rack's front elevation,
and the links to racks from locations, sites and devices."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from console_kit import Console, places_world, text_of

from popcorn.db import session_scope
from popcorn.inventory import service
from popcorn.web.pages import inventory_places
from popcorn.web.pages.inventory_racks import elevation

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
NEXT = "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}"  # between breadcrumbs
TO = "\N{EN DASH}"  # in a pager's range


def rack_ids() -> dict[str, int]:
    with session_scope(readonly=True) as session:
        listing = service.list_objects(session=session, otype="rack", args={"limit": "1000"})
    return {item["name"]: item["id"] for item in listing["items"]}


def row_of(page: str, cell: str) -> str:
    """The text of the table row whose cells include `cell` (a link's text)."""
    for row in re.findall(r"<tr[^>]*>.*?</tr>", page, flags=re.S):
        if f">{cell}</a>" in row:
            return text_of(row).strip()
    raise AssertionError(f"no row for {cell!r}")


def u_row(page: str, u: int) -> str:
    """The HTML of the elevation's row for U `u`."""
    found = re.findall(rf'<tr class="(?:occupied|free)" data-u="{u}">.*?</tr>', page, flags=re.S)
    assert len(found) == 1, found
    return found[0]


def add_racks(count: int, site: str = "bru-isp1") -> None:
    racks = "".join(
        f"  - {{site: {site}, name: B{n:03d}, description: spare row}}\n" for n in range(count)
    )
    with session_scope() as session:
        service.import_files(session=session, files=[("racks.yaml", f"racks:\n{racks}")])


def test_rack_list_pages_filters_and_counts_devices(console: Callable[[str], Console]) -> None:
    places_world()
    add_racks(205)
    with session_scope() as session:
        service.update_object(
            session=session, otype="device", ref="oca-bru-01", data={"rack": "B000"}
        )
    ui = console("viewer")
    html = ui.page("/ui/inventory/racks")
    page = text_of(html)
    assert "Racks (207)" in page and f"1{TO}100 of 207" in page
    ids = rack_ids()
    assert row_of(html, "R01") == "R01 ams1 cage-a active 42U 1"
    assert row_of(html, "R02") == "R02 ams1 floor-1 active 42U 0"
    assert f'<a href="/ui/inventory/racks/{ids["R01"]}">R01</a>' in html
    assert row_of(html, "B000") == "B000 bru-isp1 — active 42U 1 spare row"
    assert re.search(r'href="/ui/inventory/racks\?[^"]*offset=100[^"]*">next', html)
    last = text_of(ui.page("/ui/inventory/racks?offset=200"))
    assert f"201{TO}207 of 207" in last and "previous" in last
    # the filters: site, location (with the ones below it), status and a search
    in_ams = ui.page("/ui/inventory/racks?site=ams1")
    assert "Racks (2)" in text_of(in_ams) and "B000" not in text_of(in_ams)
    floor = text_of(ui.page("/ui/inventory/racks?location=floor-1"))
    assert "R01" in floor and "R02" in floor and "B000" not in floor
    cage = text_of(ui.page("/ui/inventory/racks?location=cage-a"))
    assert "R01" in cage and "R02" not in cage
    found = text_of(ui.page("/ui/inventory/racks?q=B20"))
    assert "Racks (5)" in found and "B204" in found and "R01" not in found
    paged = ui.page("/ui/inventory/racks?site=bru-isp1&offset=100")
    assert re.search(
        r'racks\?[^"]*site=bru-isp1[^"]*">next', paged
    ) and f"101{TO}200 of 205" in text_of(paged)
    assert "Racks (0)" in text_of(ui.page("/ui/inventory/racks?status=planned"))
    # every inventory list links the racks list
    assert 'href="/ui/inventory/racks"' in ui.page("/ui/inventory/locations")


def test_bad_rack_filter_shows_the_error_with_422(console: Callable[[str], Console]) -> None:
    places_world()
    ui = console("viewer")
    bad = text_of(ui.page("/ui/inventory/racks?location=atlantis", status=422))
    assert "no location 'atlantis'" in bad and "Search racks" in bad
    huge = text_of(ui.page("/ui/inventory/racks?offset=99999999999999999999", status=422))
    assert "is not a whole number within 64 bits" in huge


def test_rack_page_draws_its_elevation(console: Callable[[str], Console]) -> None:
    places_world()  # oca-ams1-01 (a 2U model) at U10 of R01, in Cage A on Floor 1
    with session_scope() as session:
        service.update_object(
            session=session,
            otype="rack",
            ref=str(rack_ids()["R01"]),
            data={"u_height": 12, "description": "<script>alert(1)</script>"},
        )
        service.update_object(
            session=session, otype="device", ref="rtr-ams1-01", data={"rack": "R01"}
        )
    ident = rack_ids()["R01"]
    ui = console("viewer")
    html = ui.page(f"/ui/inventory/racks/{ident}")
    page = text_of(html)
    assert f"Racks {NEXT} ams1 {NEXT} cage-a {NEXT}" in page
    assert "<script>alert(1)" not in html and ESCAPED in html
    assert len(re.findall(r'data-u="\d+"', html)) == 12  # one row per U, from the top
    assert html.index('data-u="12"') < html.index('data-u="1"')
    top = u_row(html, 11)
    assert 'rowspan="2"' in top and 'href="/ui/inventory/devices/oca-ams1-01"' in top
    assert "oca-storage-gen4" in top and "2U" in text_of(top)
    below = u_row(html, 10)
    assert "<td" not in below and 'class="occupied"' in below  # drawn across from U11
    for free in (12, 9, 1):
        assert 'class="free"' in u_row(html, free) and "empty" in u_row(html, free)
    assert "used 2U on the front" in page and "devices 2" in page
    # the router is in the rack without a position
    unmounted = html[html.index('id="unmounted"') : html.index('id="elevation"')]
    assert "Not mounted (1)" in text_of(unmounted)
    assert 'href="/ui/inventory/devices/rtr-ams1-01"' in unmounted
    assert "rtr-ams1-01" not in html[html.index('id="elevation"') :]
    assert "History" in page and "update" in page


def test_unknown_rack_is_a_404_page(console: Callable[[str], Console]) -> None:
    places_world()
    ui = console("viewer")
    assert "no rack '999999'" in text_of(ui.page("/ui/inventory/racks/999999", status=404))
    ui.page("/ui/inventory/racks/R01", status=404)  # a name names no rack: ids do


def test_racks_link_from_locations_sites_and_devices(
    console: Callable[[str], Console], monkeypatch: pytest.MonkeyPatch
) -> None:
    places = places_world()
    ids = rack_ids()
    link = f'<a href="/ui/inventory/racks/{ids["R01"]}">R01</a>'
    ui = console("viewer")
    floor = ui.page(f"/ui/inventory/locations/{places['floor-1']}")
    assert link in floor and f'<a href="/ui/inventory/racks/{ids["R02"]}">R02</a>' in floor
    assert "see all" not in text_of(floor)
    site = ui.page("/ui/inventory/sites/ams1")
    assert link in site  # its devices' rack
    assert '<a href="/ui/inventory/racks?site=ams1">2</a>' in site  # every rack of the site
    listed = ui.page("/ui/inventory/devices?site=ams1")
    assert f"{link} U10" in listed  # the device list's rack column
    device = ui.page("/ui/inventory/devices/oca-ams1-01")
    assert link in device and "rack R01 U10" in text_of(device)
    # a location with more racks than its page shows links the filtered list
    monkeypatch.setattr(inventory_places, "PARTS_LIMIT", 1)
    floor = ui.page(f"/ui/inventory/locations/{places['floor-1']}")
    assert "see all 2 racks" in text_of(floor)
    assert f'href="/ui/inventory/racks?location={places["floor-1"]}"' in floor
    listed = text_of(ui.page(f"/ui/inventory/racks?location={places['floor-1']}"))
    assert "Racks (2)" in listed


def test_the_elevation_sets_aside_what_it_cannot_draw_on_the_front() -> None:
    def device(name: str, position: float | None, height: float, **extra: Any) -> dict[str, Any]:
        return {"name": name, "position": position, "u_height": height, "face": "front",
                "is_full_depth": True, **extra}  # fmt: skip

    drawn = [
        device("server", 3, 2),
        device("switch", 10, 1, face="rear"),  # full depth: seen from the front too
        device("patch", 1.5, 0.5),  # half a U at U1.5: drawn in U1
    ]
    aside = [
        device("pdu", 5, 0),  # zero-U
        device("probe", 7, 1, face="rear", is_full_depth=False),  # rear, half depth
        device("tall", 11, 2),  # U11-12 in a 11U rack
        device("clash", 4, 1),  # U4 is the server's
        device("below", 0, 1),
    ]
    rows, elsewhere = elevation(11, [*drawn, *aside, device("loose", None, 1)])
    assert [d["name"] for d in elsewhere] == [d["name"] for d in aside]
    by_u = {row["u"]: row for row in rows}
    assert [row["u"] for row in rows] == list(range(11, 0, -1))
    assert by_u[4]["device"]["name"] == by_u[3]["device"]["name"] == "server"
    assert by_u[4]["top"] and by_u[4]["span"] == 2 and not by_u[3]["top"]
    assert by_u[10]["device"]["name"] == "switch" and by_u[1]["device"]["name"] == "patch"
    assert [u for u, row in by_u.items() if row["device"] is None] == [11, 9, 8, 7, 6, 5, 2]
