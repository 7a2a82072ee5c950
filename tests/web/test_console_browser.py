"""The console in a real browser (Playwright driving Debian's Chromium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


def watched(page: Any) -> Any:
    """A page that fails the test if the console's Content-Security-Policy blocks anything
    (an inline script or handler, a style plotly needs, a resource from elsewhere)."""
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.csp_blocked = blocked
    return page


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def fits(page: Any, label: str, width: int) -> None:
    """Nothing overflows the viewport horizontally except scrollable tables."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{label} is wider than the screen at {width}px"


def sign_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Overview')")


def visit(page: Any, url: str, name: str, width: int) -> None:
    """Open a page, check it rendered and fits the screen, and keep a screenshot."""
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").count() >= 1, url
    # every chart is drawn, and the full-page screenshot shows lazy images too
    page.wait_for_function(
        "[...document.querySelectorAll('.chart[data-figure]')].every(c => c.dataset.drawn)"
    )
    page.evaluate(
        "document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')"
    )
    page.wait_for_load_state("networkidle")
    shot(page, f"{name}-{width}")
    fits(page, name, width)
    assert not page.csp_blocked, page.csp_blocked


@pytest.mark.parametrize("width", [1280, 800])
def test_console_in_a_browser(
    browser: Any, console_pack: None, live_server: str, tokens: dict[str, str], width: int
) -> None:
    """A fresh install first (every page says "nothing yet"), then the same installation
    with data in every domain (one server for both: starting one takes seconds)."""
    empty_install_walk(browser, live_server, tokens, width)
    walk_with_data(browser, live_server, tokens, width)


def empty_install_walk(browser: Any, live_server: str, tokens: dict[str, str], width: int) -> None:
    page = watched(browser.new_page(viewport={"width": width, "height": 900}))
    page.goto(f"{live_server}/ui/")
    assert "/ui/login" in page.url
    page.fill("#token", "pop_wrong")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "invalid token"
    page.fill("#token", tokens["operator"])
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Overview')")
    shot(page, f"empty-overview-{width}")
    links = page.locator("header nav a")
    labels = [links.nth(i).inner_text() for i in range(links.count())]
    assert "Jobs" in labels and "Audit" in labels
    for label in labels:
        page.click(f"header nav a:has-text('{label}')")
        page.wait_for_load_state()
        assert page.locator("h1").count() >= 1, label
        assert "500" not in page.title(), label
        shot(page, f"empty-{label.lower()}-{width}")
        fits(page, label, width)
    page.click("text=Sign out")
    page.wait_for_selector("#token")
    assert not page.csp_blocked, page.csp_blocked
    page.close()


def walk_with_data(browser: Any, live_server: str, tokens: dict[str, str], width: int) -> None:
    from console_kit import (
        analyse,
        certificates_world,
        drain,
        events_world,
        places_world,
        store_incident,
        traffic_world,
        waiting_execution,
    )

    places = places_world()
    disk_event, _ = events_world()
    analysis_id = analyse(store_incident())
    execution_id = waiting_execution()
    certs = certificates_world()
    traffic = traffic_world()

    page = watched(browser.new_page(viewport={"width": width, "height": 900}))
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, live_server, tokens["operator"])
    base = f"{live_server}/ui"
    visit(page, f"{base}/", "overview", width)

    # inventory: search, open a device, its site
    visit(page, f"{base}/inventory/devices", "inventory", width)
    page.click("text=oca-ams1-01")
    page.wait_for_selector("h1:has-text('oca-ams1-01')")
    assert page.locator("#components").inner_text().count("disk") >= 2
    assert "rtr-ams1-01" in page.locator("#interfaces").inner_text()
    visit(page, page.url, "inventory-device", width)
    visit(page, f"{base}/inventory/sites/ams1", "inventory-site", width)
    # site groups and locations: each list, a group opened from its list, a location
    visit(page, f"{base}/inventory/site-groups", "inventory-site-groups", width)
    page.click("text=Tier 1 EU")
    page.wait_for_selector("h1:has-text('Tier 1 EU')")
    assert "ams1" in page.locator("#sites").inner_text()
    visit(page, page.url, "inventory-site-group", width)
    visit(page, f"{base}/inventory/locations", "inventory-locations", width)
    visit(page, f"{base}/inventory/locations/{places['floor-1']}", "inventory-location", width)
    assert "oca-ams1-01" in page.locator("#devices").inner_text()
    # racks: the list, a rack opened from a location, its elevation
    visit(page, f"{base}/inventory/racks", "inventory-racks", width)
    page.goto(f"{base}/inventory/locations/{places['floor-1']}")
    page.click("#racks >> text=R01")
    page.wait_for_selector("h1:has-text('R01')")
    assert "oca-ams1-01" in page.locator("#elevation").inner_text()
    visit(page, page.url, "inventory-rack", width)

    # signals: the explorer draws a chart; an analysis shows its plots
    visit(page, f"{base}/signals", "signals", width)
    page.click("table a >> nth=0")
    page.wait_for_selector(".chart[data-drawn=true]")
    shot(page, f"signals-explorer-{width}")
    fits(page, "signals explorer", width)
    visit(page, f"{base}/signals/analyses/{analysis_id}", "signals-analysis", width)
    plot = page.locator("img.plot").first
    plot.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=plot.element_handle())

    # events: recent events with their rules, one event, the rule editor, incidents
    visit(page, f"{base}/events", "events", width)
    visit(page, f"{base}/events/{disk_event}", "events-event", width)
    visit(page, f"{base}/events/rules", "events-rules", width)
    visit(page, f"{base}/events/rules/disk/incident", "events-rule", width)
    page.fill("#text", "name: disk/incident\nevents: [a.b]\nconditions: {labels.x: {bogus: 1}}\n")
    page.click("button[value=save]")
    page.wait_for_selector(".alert")
    assert "line 3" in page.locator(".alert").inner_text()
    shot(page, f"events-rule-error-{width}")
    fits(page, "rule editor error", width)
    visit(page, f"{base}/events/incidents", "events-incidents", width)

    # runbooks: approve the waiting step with its change ticket
    visit(page, f"{base}/runbooks", "runbooks", width)
    visit(page, f"{base}/runbooks/executions/{execution_id}", "runbooks-waiting", width)
    page.fill("input[name='payload.ticket']", "CHG-1234")
    page.click("button:has-text('Approve')")
    page.wait_for_selector(".flash:has-text('approved')")
    drain()
    page.reload()
    page.wait_for_selector("h1 .s-succeeded")
    page.wait_for_selector(".chart[data-drawn=true]")
    shot(page, f"runbooks-execution-{width}")
    fits(page, "runbook execution", width)

    # certificates: summary, inventory, one certificate, its authority
    visit(page, f"{base}/certificates", "certificates", width)
    visit(page, f"{base}/certificates/inventory", "certificates-inventory", width)
    visit(page, f"{base}/certificates/{certs['edge-api']}", "certificates-certificate", width)
    visit(
        page, f"{base}/certificates/authorities/{certs['issuing']}", "certificates-authority", width
    )

    # traffic: loads, the evacuation's per-step chart, its execution, a forecast
    visit(page, f"{base}/traffic", "traffic", width)
    assert page.locator(".chart[data-drawn=true]").count() == 1
    visit(page, f"{base}/traffic/plans/{traffic['evacuation']}", "traffic-plan", width)
    visit(page, f"{base}/traffic/executions/{traffic['execution']}", "traffic-execution", width)
    visit(page, f"{base}/traffic/forecasts/{traffic['forecast']}", "traffic-forecast", width)

    # an unknown device is a page, not an error envelope
    missing = page.goto(f"{base}/inventory/devices/no-such-device")
    assert missing is not None and missing.status == 404
    assert "no device" in page.locator("main").inner_text()
    shot(page, f"not-found-{width}")
