"""Cards without scripts: chart, value box and progress bar components are drawn on the
server (a Vega-Lite chart as a PNG), and a chart beyond that is named, not drawn wrong."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from popcorn.ml import cards, charts


def _card(components: list[dict[str, Any]]) -> str:
    """A card page as Metaflow writes it: its components as base64 JSON in a script."""
    data = base64.b64encode(json.dumps({"components": components}).encode()).decode()
    return f'<html><script>window.__MF_DATA__["abc"] = "{data}"</script></html>'


def test_charts_value_boxes_and_progress_bars_render_without_scripts() -> None:
    # The components as Metaflow's VegaChart, ValueBox and ProgressBar render them (built
    # by hand: importing Metaflow here would fix its datastore settings for the session).
    rows = [{"h": h, "rps": 100.0 + h * r, "region": f"r{r}"} for r in (1, 2) for h in range(24)]
    line = {"type": "vegaChart", "spec": charts.line_spec("Next day", rows, "h", "rps", "region")}
    bars = {
        "type": "vegaChart",
        "spec": {
            "data": {"values": [{"model": "als", "recall": 0.2}, {"model": "pop", "recall": 0.1}]},
            "mark": {"type": "bar"},
            "encoding": {
                "x": {"field": "model", "type": "nominal"},
                "y": {"field": "recall", "type": "quantitative", "title": "recall@20"},
            },
        },
    }
    remote = {"type": "vegaChart", "spec": {"data": {"url": "https://x/a.csv"}, "mark": "line"}}
    box = {"type": "valueBox", "title": "recall@20", "value": "0.212", "subtitle": "<b>x</b>"}
    bar = {"type": "progressBar", "max": 10, "label": "epochs", "value": 4}
    html = cards.render_static(_card([line, bars, remote, box, bar]))
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(images) == 2
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "beyond what Popcorn draws without scripts" in html  # the remote-data chart
    assert "0.212" in html and "&lt;b&gt;x&lt;/b&gt;" in html  # escaped, never markup
    assert "<progress max='10' value='4'>" in html
    assert "<script" not in html


def test_unsupported_or_malformed_specs_are_not_drawn() -> None:
    assert charts.vega_png({"mark": "arc", "data": {"values": []}}) is None
    assert charts.vega_png({"mark": "line", "data": {"values": [{"a": 1}]}}) is None  # no x/y
    assert charts.vega_png("not a spec") is None
    many = [{"x": i, "y": 1, "c": str(i)} for i in range(50)]
    spec = {"mark": "line", "data": {"values": many}, "encoding": {
        "x": {"field": "x", "type": "quantitative"}, "y": {"field": "y", "type": "quantitative"},
        "color": {"field": "c", "type": "nominal"}}}  # fmt: skip
    assert charts.vega_png(spec) is None  # 50 series: too many to tell apart
