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


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("width", [1280, 800])
def test_sign_in_and_visit_every_page(
    browser: Any, live_server: str, tokens: dict[str, str], width: int
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{live_server}/ui/")
    assert "/ui/login" in page.url
    page.fill("#token", "pop_wrong")
    page.click("button[type=submit]")
    assert page.locator(".error").inner_text() == "invalid token"
    page.fill("#token", tokens["operator"])
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Overview')")
    shot(page, f"overview-{width}")
    links = page.locator("header nav a")
    labels = [links.nth(i).inner_text() for i in range(links.count())]
    assert "Jobs" in labels and "Audit" in labels
    for label in labels:
        page.click(f"header nav a:has-text('{label}')")
        page.wait_for_load_state()
        assert page.locator("h1").count() >= 1, label
        assert "500" not in page.title(), label
        shot(page, f"{label.lower()}-{width}")
        # nothing overflows the viewport horizontally except scrollable tables
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{label} is wider than the screen at {width}px"
    page.click("text=Sign out")
    page.wait_for_selector("#token")
