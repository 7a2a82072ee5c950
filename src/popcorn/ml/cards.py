"""Cards: what the flows put on them, and how Popcorn shows a card without its scripts.

Metaflow's cards are a JavaScript app over JSON embedded in the page. Popcorn shows cards
in a sandbox that runs no script, so it reads that JSON (through the client API's card
HTML) and renders the components as static HTML here: pages, sections, titles, text,
markdown, tables, artifacts, logs, code, data-URI images, value boxes, progress bars and
Vega-Lite charts (drawn on the server as PNGs, `charts.py`). The flows write their verdict
(model against baseline) and their metrics tables with `report`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from html import escape
from typing import Any

DATA = re.compile(r'__MF_DATA__\["[A-Za-z0-9_-]{0,80}"\] = "([A-Za-z0-9+/=]{1,20000000})"')
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;"
    "padding:4px 10px;text-align:right}th{background:#f3f3f3}pre{background:#f6f6f6;"
    "padding:.6em;overflow:auto}section{margin:1em 0}"
)


def verdict(evaluation: dict[str, Any]) -> str:
    higher = bool(evaluation.get("higher_is_better", True))
    model, baseline = float(evaluation["model"]), float(evaluation["baseline"])
    wins = model > baseline if higher else model < baseline
    return (
        f"**{evaluation['metric']}**: model {model:.4g} vs baseline {baseline:.4g}: "
        f"{'beats' if wins else 'does not beat'} the baseline "
        f"({'higher' if higher else 'lower'} is better)"
    )


def _fmt(value: Any) -> Any:
    return f"{value:.4g}" if isinstance(value, float) else value


def report(
    card: Any,
    title: str,
    evaluation: dict[str, Any],
    tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]],
) -> None:
    """Append a flow's report to `current.card`: title, verdict, then one table each."""
    from metaflow.cards import Markdown, Table

    card.append(Markdown(f"# {title}"))
    card.append(Markdown(verdict(evaluation)))
    for heading, headers, rows in tables:
        card.append(Markdown(f"## {heading}"))
        card.append(Table([[_fmt(v) for v in row] for row in rows], headers=list(headers)))


def _inline(text: str) -> str:
    parts = escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def _markdown(source: str) -> str:
    out = []
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        level = len(stripped) - len(stripped.lstrip("#"))
        if 0 < level <= 6 and stripped[level : level + 1] == " ":
            out.append(f"<h{level}>{_inline(stripped[level + 1 :])}</h{level}>")
        else:
            out.append(f"<p>{_inline(stripped)}</p>")
    return "".join(out)


def _component(item: Any, depth: int = 0) -> str:
    if depth > 20:
        return ""
    if not isinstance(item, dict):
        return escape(str(item))
    kind = item.get("type")
    head = ""
    if item.get("title") and kind not in {"title", "subtitle"}:
        head += f"<h3>{escape(str(item['title']))}</h3>"
    if item.get("subtitle") and kind not in {"title", "subtitle"}:
        head += f"<p><i>{escape(str(item['subtitle']))}</i></p>"
    if kind in {"page", "section"}:
        inner = "".join(_component(c, depth + 1) for c in item.get("contents") or [])
        return f"<section>{head}{inner}</section>"
    if kind == "title":
        return f"<h2>{escape(str(item.get('text', '')))}</h2>"
    if kind == "subtitle":
        return f"<h3>{escape(str(item.get('text', '')))}</h3>"
    if kind == "text":
        return f"{head}<p>{escape(str(item.get('text', '')))}</p>"
    if kind == "markdown":
        return head + _markdown(str(item.get("source", "")))
    if kind == "table":
        columns = "".join(f"<th>{_component(c, depth + 1)}</th>" for c in item.get("columns") or [])
        rows = "".join(
            "<tr>" + "".join(f"<td>{_component(c, depth + 1)}</td>" for c in row) + "</tr>"
            for row in item.get("data") or []
            if isinstance(row, list)
        )
        return f"{head}<table><tr>{columns}</tr>{rows}</table>"
    if kind == "artifacts":
        rows = "".join(
            f"<tr><td>{escape(str(a.get('name', '')))}</td>"
            f"<td><pre>{escape(str(a.get('data', '')))}</pre></td></tr>"
            for a in item.get("data") or []
            if isinstance(a, dict)
        )
        return f"{head}<table>{rows}</table>"
    if kind in {"log", "pythonCode"}:
        return f"{head}<pre>{escape(str(item.get('data', '')))}</pre>"
    if kind == "image":
        src = str(item.get("src") or "")
        if src.startswith("data:image/"):
            return f"{head}<img alt='{escape(str(item.get('label') or ''))}' src='{escape(src)}'>"
        return head
    if kind == "html":
        return head + str(item.get("data", ""))  # shown under a CSP that runs no script
    if kind == "vegaChart":
        return head + _chart(item.get("spec"))
    if kind == "progressBar":
        return head + _progress(item)
    if kind == "valueBox":
        return _value_box(item)
    if kind == "dag":
        return ""
    return f"{head}<p><i>({escape(str(kind))} not shown without scripts)</i></p>"


def _chart(spec: Any) -> str:
    from popcorn.ml.charts import vega_png

    try:
        png = vega_png(spec)
    except (TypeError, ValueError, OverflowError):  # data a chart cannot be drawn from
        png = None
    if png is None:
        return "<p><i>(a chart beyond what Popcorn draws without scripts)</i></p>"
    title = escape(str((spec or {}).get("title") or "chart")) if isinstance(spec, dict) else ""
    data = base64.b64encode(png).decode()
    return f"<img alt='{title}' src='data:image/png;base64,{data}'>"


def _number(value: Any, default: float) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def _progress(item: dict[str, Any]) -> str:
    top = max(_number(item.get("max"), 100.0), 1e-12)
    value = min(max(_number(item.get("value"), 0.0), 0.0), top)
    label = escape(str(item.get("label") or ""))
    unit = escape(str(item.get("unit") or ""))
    details = escape(str(item.get("details") or ""))
    return (
        f"<p>{label} <progress max='{top:g}' value='{value:g}'></progress> "
        f"{value:g} / {top:g} {unit} <i>{details}</i></p>"
    )


def _value_box(item: dict[str, Any]) -> str:
    parts = [
        f"<div style='font-size:.9em;color:#555'>{escape(str(item.get('title') or ''))}</div>",
        f"<div style='font-size:1.8em;font-weight:600'>{escape(str(item.get('value', '')))}</div>",
    ]
    for key in ("subtitle", "change_indicator"):
        if item.get(key):
            parts.append(f"<div style='font-size:.85em'>{escape(str(item[key]))}</div>")
    return (
        "<div style='display:inline-block;border:1px solid #ccc;border-radius:6px;"
        f"padding:.6em 1em;margin:.3em'>{''.join(parts)}</div>"
    )


def render_static(card_html: str, *, title: str = "card") -> str:
    """The card's components as static HTML (empty note when the card has none)."""
    found = DATA.search(card_html)
    body = "<p><i>this card holds no components Popcorn can show</i></p>"
    if found:
        try:
            data = json.loads(base64.b64decode(found.group(1)))
        except (binascii.Error, ValueError):
            data = None
        if isinstance(data, dict):
            body = "".join(_component(c) for c in data.get("components") or [])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{STYLE}</style>"
        f"<title>{escape(title)}</title></head><body>{body}</body></html>"
    )
