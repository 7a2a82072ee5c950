"""Console pages for site groups and locations, and the links to them from sites and devices."""

from __future__ import annotations

import re
from collections.abc import Callable

from console_kit import Console, places_world, text_of

from popcorn.db import session_scope
from popcorn.inventory import service

ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
NEXT = "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}"  # between breadcrumbs
TO = "\N{EN DASH}"  # in a pager's range


def row_of(page: str, cell: str) -> str:
    """The text of the table row whose cells include `cell` (a link's text)."""
    for row in re.findall(r"<tr>.*?</tr>", page, flags=re.S):
        if f">{cell}</a>" in row:
            return text_of(row).strip()
    raise AssertionError(f"no row for {cell!r}")


def test_site_group_list_shows_parents_and_site_counts(
    console: Callable[[str], Console],
) -> None:
    ids = places_world()
    ui = console("viewer")
    html = ui.page("/ui/inventory/site-groups")
    # Tier 1 holds bru-isp1 and, through Tier 1 EU, ams1
    assert row_of(html, "Tier 1") == "Tier 1 tier-1 — 2 Our own data centres"
    assert row_of(html, "Tier 1 EU") == "Tier 1 EU tier-1-eu tier-1 1"
    assert f'href="/ui/inventory/site-groups/{ids["tier-1-eu"]}"' in html
    assert f'href="/ui/inventory/site-groups/{ids["tier-1"]}"' in html  # the parent's link
    assert 'href="/ui/inventory/sites?site_group=tier-1"' in html
    found = text_of(ui.page("/ui/inventory/site-groups?q=EU"))
    assert "Tier 1 EU" in found and "Our own data centres" not in found
    # every inventory list links the new ones, and they link the others
    for path in ("/ui/inventory/devices", "/ui/inventory/sites", "/ui/inventory/prefixes"):
        nav = ui.page(path)
        assert 'href="/ui/inventory/site-groups"' in nav and 'href="/ui/inventory/locations"' in nav
    assert 'href="/ui/inventory/sites"' in html and 'href="/ui/inventory/circuits"' in html


def test_site_group_page_shows_sub_groups_and_sites_below_it(
    console: Callable[[str], Console],
) -> None:
    ids = places_world()
    with session_scope() as session:
        service.update_object(
            session=session, otype="device", ref="oca-ams1-01", data={"storage_tb": "12345TB"}
        )
    ui = console("viewer")
    html = ui.page(f"/ui/inventory/site-groups/{ids['tier-1']}")
    page = text_of(html)
    assert "Tier 1 tier-1" in page and "Our own data centres" in page
    assert "Tier 1 EU 1 site Sites (2)" in page  # its sub-group, with that group's count
    ams1 = row_of(html, "ams1")
    assert ams1 == "ams1 Amsterdam IX 1 tier-1-eu benelux active 2 100 12,345"
    assert row_of(html, "bru-isp1").startswith("bru-isp1 Brussels ISP 1 tier-1 benelux active 0")
    assert "History" in page and "create" in page
    # by slug too; the sub-group's page names its parent and only its own site
    sub = text_of(ui.page("/ui/inventory/site-groups/tier-1-eu"))
    assert f"Site groups {NEXT} tier-1 {NEXT}" in sub and "ams1" in sub and "bru-isp1" not in sub
    assert "No sub-groups." in sub
    # the site list filters by group (sub-groups included) and links each site's group
    listed = ui.page("/ui/inventory/sites?site_group=tier-1-eu")
    assert "ams1" in text_of(listed) and "bru-isp1" not in text_of(listed)
    assert f'href="/ui/inventory/site-groups/{ids["tier-1-eu"]}"' in listed
    both = text_of(ui.page("/ui/inventory/sites?site_group=tier-1"))
    assert "ams1" in both and "bru-isp1" in both
    bad = text_of(ui.page("/ui/inventory/sites?site_group=atlantis", status=422))
    assert "no site group 'atlantis'" in bad
    site = ui.page("/ui/inventory/sites/ams1")
    assert f'<a href="/ui/inventory/site-groups/{ids["tier-1-eu"]}">tier-1-eu</a>' in site


def test_location_list_shows_site_parent_racks_and_devices(
    console: Callable[[str], Console],
) -> None:
    ids = places_world()
    with session_scope() as session:
        service.create_object(
            session=session,
            otype="location",
            data={"site": "bru-isp1", "slug": "room-1", "name": "Room 1", "status": "planned"},
        )
    ui = console("viewer")
    html = ui.page("/ui/inventory/locations")
    # a location counts the racks and devices of the locations below it
    assert row_of(html, "Floor 1") == "Floor 1 ams1 — active 2 2"
    assert row_of(html, "Cage A") == "Cage A ams1 floor-1 active 1 1 caged row"
    assert row_of(html, "Room 1") == "Room 1 bru-isp1 — planned 0 0"
    assert f'href="/ui/inventory/locations/{ids["cage-a"]}"' in html
    assert 'href="/ui/inventory/sites/ams1"' in html
    in_ams = text_of(ui.page("/ui/inventory/locations?site=ams1"))
    assert "Cage A" in in_ams and "Room 1" not in in_ams
    planned = text_of(ui.page("/ui/inventory/locations?status=planned"))
    assert "Room 1" in planned and "Cage A" not in planned
    found = text_of(ui.page("/ui/inventory/locations?q=caged"))
    assert "Cage A" in found and "Floor 1 ams1" not in found


def test_location_page_shows_sub_locations_racks_and_devices(
    console: Callable[[str], Console],
) -> None:
    ids = places_world()
    ui = console("viewer")
    html = ui.page(f"/ui/inventory/locations/{ids['floor-1']}")
    page = text_of(html)
    assert f"Locations {NEXT} ams1 {NEXT}" in page and "Floor 1 floor-1" in page
    assert "Cage A 1 rack · 1 device Racks (2)" in page  # its sub-location
    assert row_of(html, "cage-a").startswith("R01 cage-a active 42U")  # racks below it too
    assert "R02 floor-1 active 42U" in page
    assert row_of(html, "oca-ams1-01").startswith("oca-ams1-01 storage-appliance")
    assert "cage-a R01 U10" in row_of(html, "oca-ams1-01")
    assert "floor-1 —" in row_of(html, "rtr-ams1-01")
    assert "oca-bru-01" not in page
    cage = ui.page(f"/ui/inventory/locations/{ids['cage-a']}")
    assert f'<a href="/ui/inventory/locations/{ids["floor-1"]}">floor-1</a> {NEXT}' in cage
    assert "rtr-ams1-01" not in text_of(cage) and "R02" not in text_of(cage)
    assert "No sub-locations." in text_of(cage)
    # the site lists its locations; a device links the location it is in
    site = ui.page("/ui/inventory/sites/ams1")
    assert row_of(site, "Cage A") == "Cage A floor-1 active 1 1 caged row"
    assert f'href="/ui/inventory/locations/{ids["floor-1"]}"' in site
    device = ui.page("/ui/inventory/devices/oca-ams1-01")
    link = f'<a href="/ui/inventory/locations/{ids["cage-a"]}">cage-a</a>'
    assert link in device and "ams1 · cage-a · rack R01 U10" in text_of(device)
    bare = text_of(ui.page("/ui/inventory/devices/oca-bru-01"))
    assert "/ui/inventory/locations/" not in bare
    assert "No locations in this site." in text_of(ui.page("/ui/inventory/sites/bru-isp1"))


def test_unknown_group_or_location_is_a_404_page(console: Callable[[str], Console]) -> None:
    places_world()
    ui = console("viewer")
    assert "no site group 'nope'" in text_of(ui.page("/ui/inventory/site-groups/nope", status=404))
    ui.page("/ui/inventory/site-groups/999999", status=404)
    assert "no location '999999'" in text_of(ui.page("/ui/inventory/locations/999999", status=404))
    ui.page("/ui/inventory/locations/floor-1", status=404)  # a slug names no location: ids do
    ui.page("/ui/inventory/locations/99999999999999999999999", status=404)
    # an offset no database can hold is a refused filter, not an error page
    for path in ("site-groups", "locations"):
        bad = text_of(ui.page(f"/ui/inventory/{path}?offset=99999999999999999999", status=422))
        assert "is not a whole number within 64 bits" in bad


def test_lists_and_pages_go_a_hundred_at_a_time(console: Callable[[str], Console]) -> None:
    ids = places_world()
    numbers = range(120)
    groups = "".join(
        f"  - {{slug: g{i:03}, name: Group {i:03}, parent: tier-1}}\n" for i in numbers
    )
    places = "".join(
        f"  - {{site: ams1, slug: r{i:03}, name: Room {i:03}, parent: cage-a}}\n" for i in numbers
    )
    with session_scope() as session:
        service.import_files(
            session=session,
            files=[("more.yaml", f"site_groups:\n{groups}locations:\n{places}")],
        )
    ui = console("viewer")
    first = ui.page("/ui/inventory/site-groups")
    assert "(122)" in text_of(first) and f"1{TO}100 of 122" in text_of(first)
    assert "Group 097" in first and "Group 098" not in first
    assert 'href="/ui/inventory/site-groups?offset=100&amp;q="' in first
    second = ui.page("/ui/inventory/site-groups?offset=100")
    assert f"101{TO}122 of 122" in text_of(second) and "Group 119" in second
    assert "Group 097" not in second
    rooms = text_of(ui.page("/ui/inventory/locations?site=ams1&offset=100"))
    assert f"101{TO}122 of 122" in rooms and "Room 119" in rooms and "Room 097" not in rooms
    assert 'href="/ui/inventory/locations?offset=100&amp;q=&amp;site=ams1&amp;status="' in ui.page(
        "/ui/inventory/locations?site=ams1"
    )
    tier = text_of(ui.page("/ui/inventory/site-groups/tier-1"))
    assert "Sub-groups (121)" in tier and "Group 119" in tier  # children are not paged
    cage = text_of(ui.page(f"/ui/inventory/locations/{ids['cage-a']}"))
    assert "Sub-locations (120)" in cage and "Room 119" in cage
    site = text_of(ui.page("/ui/inventory/sites/ams1"))
    assert "Locations (122)" in site


def test_names_are_escaped(console: Callable[[str], Console]) -> None:
    places_world()
    script = "<script>alert(1)</script>"
    with session_scope() as session:
        group = service.create_object(
            session=session,
            otype="site_group",
            data={"slug": "evil", "name": script, "description": script},
        )
        place = service.create_object(
            session=session,
            otype="location",
            data={"site": "ams1", "slug": "evil", "name": script, "description": script},
        )
    ui = console("viewer")
    for path in (
        "/ui/inventory/site-groups",
        f"/ui/inventory/site-groups/{group['id']}",
        "/ui/inventory/locations",
        f"/ui/inventory/locations/{place['id']}",
        "/ui/inventory/sites/ams1",
    ):
        html = ui.page(path)
        assert script not in html, path
        assert ESCAPED in html, path
