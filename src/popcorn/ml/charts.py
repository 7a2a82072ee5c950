"""Charts on cards, drawn on the server: Metaflow's `VegaChart` is drawn by Vega's
JavaScript in the browser, and Popcorn shows cards with no script, so the common part of
Vega-Lite (inline data; line, point, bar and area marks; x, y and colour encodings; layers;
a title) is drawn here with matplotlib as a PNG the card embeds as a data URI. A spec
beyond that part is answered with None, and the card says so instead of drawing it wrong.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

MARKS = {"line", "point", "circle", "square", "bar", "area", "tick"}
MAX_POINTS = 200_000
MAX_SERIES = 20


def _mark(spec: dict[str, Any]) -> str | None:
    mark = spec.get("mark")
    kind = mark.get("type") if isinstance(mark, dict) else mark
    return kind if isinstance(kind, str) and kind in MARKS else None


def _channel(encoding: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = encoding.get(name)
    if not isinstance(found, dict) or not isinstance(found.get("field"), str):
        return None
    return found


def _title(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("text", "")
    if isinstance(value, list):
        value = " ".join(map(str, value))
    return str(value or "")[:200]


def _value(raw: Any, kind: str) -> Any:
    if kind == "temporal" and isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            return None
    if kind in ("quantitative", "temporal"):
        return raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    return None if raw is None else str(raw)


def _layers(spec: dict[str, Any]) -> list[tuple[dict[str, Any], list[Any]]] | None:
    """(layer spec, its rows) for each layer, data inherited from the top; None if any
    layer reads data Popcorn does not hold inline or has a mark it does not draw."""
    top = spec.get("data")
    out = []
    for layer in spec.get("layer") or [spec]:
        if not isinstance(layer, dict):
            return None
        data = layer.get("data", top)
        rows = data.get("values") if isinstance(data, dict) else None
        if not isinstance(rows, list) or _mark(layer) is None:
            return None
        encoding = {**(spec.get("encoding") or {}), **(layer.get("encoding") or {})}
        out.append(({**layer, "encoding": encoding}, rows))
    return out


def vega_png(spec: Any) -> bytes | None:
    """A PNG of a Vega-Lite spec, or None when it is beyond what is drawn here."""
    if not isinstance(spec, dict):
        return None
    layers = _layers(spec)
    if not layers or sum(len(rows) for _, rows in layers) > MAX_POINTS:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax = fig.add_subplot()
    categories: dict[str, int] = {}
    labels: tuple[str, str] = ("", "")
    for layer, rows in layers:
        encoding = layer["encoding"]
        x, y = _channel(encoding, "x"), _channel(encoding, "y")
        if x is None or y is None:
            return None
        color = _channel(encoding, "color")
        x_kind, y_kind = str(x.get("type", "quantitative")), str(y.get("type", "quantitative"))
        series: dict[str, list[tuple[Any, Any]]] = {}
        for row in rows:
            if not isinstance(row, dict):
                continue
            xv, yv = _value(row.get(x["field"]), x_kind), _value(row.get(y["field"]), y_kind)
            if xv is None or yv is None:
                continue
            key = str(row.get(color["field"], "")) if color else ""
            series.setdefault(key, []).append((xv, yv))
        if len(series) > MAX_SERIES:
            return None
        mark = _mark(layer)
        for name, points in series.items():
            if x_kind in ("nominal", "ordinal"):
                xs = [categories.setdefault(p[0], len(categories)) for p in points]
            else:
                points.sort(key=lambda p: p[0])
                xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            label = name or None
            if mark == "bar":
                width = 0.8 / max(1, len(series))
                offset = list(series).index(name) * width - 0.4 + width / 2
                shifted = [v + offset for v in xs] if x_kind in ("nominal", "ordinal") else xs
                ax.bar(shifted, ys, width=width if x_kind in ("nominal", "ordinal") else 0.8,
                       label=label)  # fmt: skip
            elif mark == "area":
                ax.fill_between(xs, ys, alpha=0.4, label=label)
            elif mark == "line":
                ax.plot(xs, ys, linewidth=1.3, label=label)
            else:
                ax.scatter(xs, ys, s=12, label=label)
        labels = (_title(x.get("title")) or x["field"], _title(y.get("title")) or y["field"])
    if categories:
        ax.set_xticks(list(categories.values()), list(categories), rotation=30, fontsize=7)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    if spec.get("title"):
        ax.set_title(_title(spec["title"]), fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def line_spec(title: str, rows: list[dict[str, Any]], x: str, y: str, color: str) -> dict[str, Any]:
    """A Vega-Lite line chart of inline rows, one line per `color` value (for flows)."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "data": {"values": rows},
        "mark": "line",
        "encoding": {
            "x": {"field": x, "type": "quantitative"},
            "y": {"field": y, "type": "quantitative"},
            "color": {"field": color, "type": "nominal"},
        },
    }
