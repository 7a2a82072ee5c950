"""Stored notebooks as read-only HTML (nbconvert), for the console.

The HTML is sanitised by nbconvert (`sanitize_html`: no script, no event handler
attributes, in cell outputs) and served with a
Content-Security-Policy that forbids scripts and makes the page a sandbox, inside an
`<iframe sandbox>` on the console page. The failing cell is outlined in red and scrolled to.
"""

from __future__ import annotations

import json
from typing import Any

from popcorn.errors import NotFound
from popcorn.storage import get_store

FAILED_TAG = "popcorn-failed-cell"
STYLE = (
    f"<style>.celltag_{FAILED_TAG}{{outline:3px solid #c62828;outline-offset:2px;"
    f"background:#fff4f4}}.celltag_{FAILED_TAG}::before{{content:'failed here';"
    "color:#c62828;font:bold 12px sans-serif}</style>"
)
# The output page: no script at all, styles and images inline only, and a sandbox.
OUTPUT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'self'; sandbox"
)


def notebook_json(key: str) -> dict[str, Any]:
    if not key:
        raise NotFound("this run stored no output notebook", details={"key": key})
    data: dict[str, Any] = json.loads(get_store().get(key))
    return data


def to_html(data: bytes | dict[str, Any], *, failed_cell: int | None = None) -> str:
    """The notebook as a standalone, script-free HTML page."""
    import nbformat
    from nbconvert import HTMLExporter

    text = json.dumps(data) if isinstance(data, dict) else data.decode()
    nb = nbformat.reads(text, as_version=4)
    if failed_cell is not None and 0 <= failed_cell < len(nb.cells):
        tags = nb.cells[failed_cell].setdefault("metadata", {}).setdefault("tags", [])
        tags.append(FAILED_TAG)
        nb.cells[failed_cell]["id"] = "popcorn-failed"
    exporter = HTMLExporter(template_name="lab")
    exporter.sanitize_html = True
    exporter.embed_images = True
    body, _ = exporter.from_notebook_node(nb)
    return body.replace("</head>", STYLE + "</head>", 1)


def stored_html(key: str, *, failed_cell: int | None = None) -> str:
    return to_html(get_store().get(key), failed_cell=failed_cell)
