"""Output formats of a run, as jupyter-scheduler offers them: the output notebook (ipynb) is
always stored; a definition may ask for HTML, Markdown and PDF besides, each converted
by nbconvert on the worker after the run and stored immutably beside the notebook.

- html: nbconvert's HTMLExporter (lab template), outputs sanitised, images embedded;
- markdown: nbconvert's MarkdownExporter (images it extracts are dropped: the notebook
  and the HTML keep them);
- pdf: nbconvert's WebPDFExporter, with its browser launched from the system's Chromium
  (Debian's `chromium`, or POPCORN_CHROMIUM) instead of a Playwright download, outputs
  sanitised as for html, with no network and from an about:blank page (a notebook's HTML
  never reaches out, nor loads a file:// URL of the worker's, while it prints).

A conversion that fails is recorded on the run (`format_errors`); it never fails the run.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

FORMATS = ("html", "markdown", "pdf")
SUFFIX = {"ipynb": "ipynb", "html": "html", "markdown": "md", "pdf": "pdf"}
MEDIA = {
    "ipynb": "application/x-ipynb+json",
    "html": "text/html; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "pdf": "application/pdf",
}
# Chromium resolves no name and opens no connection.
NO_NETWORK = "--host-resolver-rules=MAP * ~NOTFOUND"


def chromium() -> str:
    """The system Chromium for PDFs ('' when there is none)."""
    return os.environ.get("POPCORN_CHROMIUM") or shutil.which("chromium") or ""


def _node(data: bytes) -> Any:
    import nbformat

    return nbformat.reads(data.decode(), as_version=4)


def convert(data: bytes, fmt: str) -> bytes:
    """One stored output notebook in another format."""
    if fmt == "html":
        from nbconvert import HTMLExporter

        html = HTMLExporter(template_name="lab", sanitize_html=True, embed_images=True)
        body, _ = html.from_notebook_node(_node(data))
        return body.encode()
    if fmt == "markdown":
        from nbconvert import MarkdownExporter

        text, _ = MarkdownExporter().from_notebook_node(_node(data))
        return str(text).encode()
    if fmt == "pdf":
        pdf, _ = _pdf_exporter()(sanitize_html=True).from_notebook_node(_node(data))
        return bytes(pdf)
    raise ValueError(f"unknown output format {fmt!r} (one of {', '.join(FORMATS)})")


def _pdf_exporter() -> type:
    from nbconvert.exporters.webpdf import WebPDFExporter

    class SystemChromiumPDF(WebPDFExporter):
        """nbconvert's WebPDF exporter (its HTML, print media and paging), launching the
        system's Chromium: nbconvert itself only finds a browser Playwright downloaded."""

        def run_playwright(self, html: str) -> bytes:
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(1) as pool:  # no event loop here
                return pool.submit(self._print, html).result()

        def _print(self, html: str) -> bytes:
            from playwright.sync_api import sync_playwright

            browser_path = chromium()
            if not browser_path:
                raise RuntimeError("no Chromium for PDF output (install chromium)")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=browser_path,
                    args=["--no-sandbox", NO_NETWORK],
                    handle_sigint=False,
                    handle_sigterm=False,
                    handle_sighup=False,
                )
                try:
                    page = browser.new_page()
                    page.emulate_media(media="print")
                    # an about:blank page, not a file:// one: the notebook's outputs may
                    # name file:// URLs, which Chromium (the worker's user) would load
                    page.set_content(html, wait_until="load", timeout=60_000)
                    page.wait_for_timeout(self.page_render_timeout)
                    return bytes(page.pdf(print_background=True))
                finally:
                    browser.close()

    return SystemChromiumPDF


def convert_all(data: bytes, formats: list[str]) -> tuple[dict[str, bytes], dict[str, str]]:
    """Each asked-for format's bytes, and why any failed."""
    done: dict[str, bytes] = {}
    errors: dict[str, str] = {}
    for fmt in formats:
        try:
            done[fmt] = convert(data, fmt)
        except Exception as exc:  # recorded on the run; the run's own outcome stands
            errors[fmt] = f"{type(exc).__name__}: {exc}"[:500]
    return done, errors
