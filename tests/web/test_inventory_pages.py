"""Inventory pages: search, sites, devices with components, links, agent and history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from console_kit import Console, build_world, text_of

from popcorn.db import session_scope
from popcorn.inventory import service


def test_fresh_install_explains_how_to_add_devices(console: Callable[[str], Console]) -> None:
    page = text_of(console("viewer").page("/ui/inventory/devices"))
    assert "No devices yet" in page and "popcorn inventory import" in page


def test_search_lists_sites_and_devices(console: Callable[[str], Console]) -> None:
    build_world()
    ui = console("viewer")
    page = text_of(ui.page("/ui/inventory/devices"))
    assert "ams1" in page and "bru-isp1" in page and "rtr-ams1-01" in page
    assert "maintenance" in page  # counts by status
    found = text_of(ui.page("/ui/inventory/devices?q=NFX-0003"))
    assert "oca-bru-01" in found and "oca-ams1-01" not in found
    routers = text_of(ui.page("/ui/inventory/devices?role=router"))
    assert "rtr-ams1-01" in routers and "oca-ams1-01" not in routers
    bad = text_of(ui.page("/ui/inventory/devices?region=atlantis", status=422))
    assert "no region 'atlantis'" in bad


def test_the_device_list_has_its_own_url_and_the_old_one_redirects(
    console: Callable[[str], Console],
) -> None:
    ui = console("viewer")
    moved = ui.client.get("/ui/inventory?role=router")
    assert moved.status_code == 302
    assert moved.headers["Location"].endswith("/ui/inventory/devices?role=router")


def test_the_favicon_needs_no_sign_in(client: Any) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200 and answer.content_type == "image/png"
    assert answer.data.startswith(b"\x89PNG")


def test_site_page_shows_devices_and_capacity(console: Callable[[str], Console]) -> None:
    build_world()
    page = text_of(console("viewer").page("/ui/inventory/sites/ams1"))
    assert "Amsterdam IX 1" in page and "oca-ams1-01" in page and "rtr-ams1-01" in page
    assert "oca-bru-01" not in page
    assert "100 Gbps" in page and "360 TB" in page


def test_device_page_shows_components_links_agent_and_history(
    console: Callable[[str], Console],
) -> None:
    build_world()
    ui = console("viewer")
    page = text_of(ui.page("/ui/inventory/devices/oca-ams1-01"))
    assert "disk0" in page and "HDD-2" in page
    assert "rtr-ams1-01 et-0/0/0" in page  # eth0's cable to the router
    assert "https://10.0.0.1:8443" in page and "1.2.0" in page and "just now" in page
    assert "History" in page and "agent" in page  # the agent's check-in is in the change log
    assert "Set status" not in page and "mark failed" not in page  # viewers only read
    router = text_of(ui.page("/ui/inventory/devices/rtr-ams1-01"))
    assert "oca-ams1-01 eth0" in router and "No agent has checked in" in router


def test_unknown_device_or_site_is_a_404_page(console: Callable[[str], Console]) -> None:
    ui = console("viewer")
    assert "no device 'nope'" in text_of(ui.page("/ui/inventory/devices/nope", status=404))
    assert "not found" in text_of(ui.page("/ui/inventory/sites/nowhere", status=404))


def test_operators_change_status_fail_parts_and_write_notes(
    console: Callable[[str], Console],
) -> None:
    build_world()
    viewer = console("viewer")
    refused = viewer.post("/ui/inventory/devices/oca-ams1-01/status", {"status": "maintenance"})
    assert refused.status_code == 403
    operator = console("operator")
    no_csrf = operator.post(
        "/ui/inventory/devices/oca-ams1-01/status", {"status": "maintenance"}, csrf=False
    )
    assert no_csrf.status_code == 400
    done = operator.post(
        "/ui/inventory/devices/oca-ams1-01/status",
        {"status": "maintenance", "reason": "disk swap"},
    )
    assert done.status_code == 302
    with session_scope(readonly=True) as session:
        assert service.get_device(session=session, ref="oca-ams1-01").status == "maintenance"
        disk = service.find_component(session=session, device="oca-ams1-01", component="disk0")
    operator.post(f"/ui/inventory/devices/oca-ams1-01/components/{disk.id}/fail", {})
    operator.post("/ui/inventory/device/oca-ams1-01/journal", {"comments": "RMA 4411"})
    page = text_of(operator.page("/ui/inventory/devices/oca-ams1-01"))
    assert "RMA 4411" in page and "Note added." in page
    assert "failed" in page and "active → maintenance" in page
    wrong = operator.post("/ui/inventory/devices/oca-ams1-01/status", {"status": "exploded"})
    assert wrong.status_code == 302
    assert "unknown status 'exploded'" in text_of(
        operator.page("/ui/inventory/devices/oca-ams1-01")
    )
    overview = text_of(operator.page("/ui/"))
    assert "oca-ams1-01: failed disk0" in overview


def test_the_site_list_has_its_own_url_with_search_and_capacity(
    console: Callable[[str], Console],
) -> None:
    build_world()
    ui = console("viewer")
    page = text_of(ui.page("/ui/inventory/sites"))
    assert "ams1" in page and "bru-isp1" in page and "active devices" in page
    found = text_of(ui.page("/ui/inventory/sites?q=bru"))
    assert "bru-isp1" in found and "ams1" not in found
    bad = text_of(ui.page("/ui/inventory/sites?region=atlantis", status=422))
    assert "no region 'atlantis'" in bad
