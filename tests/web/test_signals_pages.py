"""Signals pages: explorer, analyses with ranked signals, clusters and plots."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from console_kit import T0, Console, analyse, store_incident, text_of

from popcorn.db import session_scope
from popcorn.signals import service


def test_fresh_install_shows_friendly_empty_states(console: Callable[[str], Console]) -> None:
    ui = console("viewer")
    page = text_of(ui.page("/ui/signals"))
    assert "No signals stored yet" in page and "No analyses yet" in page
    assert "Analyse an alert" not in page  # viewers cannot start one
    assert "No analyses yet" in text_of(ui.page("/ui/signals/analyses"))
    missing = text_of(ui.page('/ui/signals?query=nothing_here{a="b"}'))
    assert "no series match" in missing


def test_explorer_charts_the_matching_series_with_gaps(console: Callable[[str], Console]) -> None:
    with session_scope() as session:
        service.ingest_json(
            session=session,
            payload={
                "series": [
                    {
                        "metric": "cache_hit_ratio",
                        "labels": {"site": "ams1", "device": "oc-1"},
                        "timestamps": [T0, T0 + 60, T0 + 240],
                        "values": [0.9, 0.8, 0.7],
                    }
                ]
            },
        )
    ui = console("viewer")
    listed = ui.page("/ui/signals")
    assert 'cache_hit_ratio{device="oc-1",site="ams1"}' in text_of(listed)
    html = ui.page(f"/ui/signals?query=cache_hit_ratio&start={T0}&end={T0 + 300}&step=60s&agg=mean")
    figure = json.loads(
        re.search(r'data-figure="([^"]+)"', html).group(1).replace("&#34;", '"')  # type: ignore[union-attr]
    )
    (trace,) = figure["data"]
    # `end` is inclusive, as in Prometheus: the grid runs from T0 to T0 + 300.
    assert trace["x"] == [(T0 + 60 * i) * 1000 for i in range(6)]
    assert trace["y"] == [0.9, 0.8, None, None, 0.7, None]  # the gaps stay visible
    assert "plotly.min.js" in html
    bad = text_of(ui.page("/ui/signals?query=cache_hit_ratio&start=yesterday"))
    assert "start: 'yesterday' is not a time" in bad


def test_analysis_page_ranks_signals_with_clusters_and_plots(
    console: Callable[[str], Console],
) -> None:
    incident = store_incident()
    analysis_id = analyse(incident)
    ui = console("viewer")
    html = ui.page(f"/ui/signals/analyses/{analysis_id}")
    page = text_of(html)
    assert "Ranked signals" in page and "Clusters" in page and "finished" in page
    with session_scope(readonly=True) as session:
        findings = service.get_analysis(session=session, analysis_id=analysis_id).result["findings"]
    assert findings and findings[0]["name"] in page
    plot = f"/ui/signals/analyses/{analysis_id}/plot/{findings[0]['series_id']}.png"
    assert plot in html
    png = ui.get(plot)
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.data.startswith(b"\x89PNG")
    overview = text_of(ui.page("/ui/"))
    assert f"analysis {analysis_id}" in overview
    assert str(analysis_id) in text_of(ui.page("/ui/signals/analyses"))


def test_unknown_analysis_or_series_is_a_404_page(console: Callable[[str], Console]) -> None:
    ui = console("viewer")
    page = text_of(ui.page("/ui/signals/analyses/424242", status=404))
    assert "no analysis 424242" in page
    incident = store_incident()
    analysis_id = analyse(incident)
    missing = ui.get(f"/ui/signals/analyses/{analysis_id}/plot/999999.png")
    assert missing.status_code == 404 and missing.content_type.startswith("text/html")


def test_operators_start_analyses_viewers_cannot(console: Callable[[str], Console]) -> None:
    incident = store_incident()
    form = {
        "alert_time": str(incident.alert_time),
        "trigger": 'play_errors_rate{site="ams1"}',
        "selector": '{service=~".+"}',
        "window_minutes": "450",
        "after_minutes": "30",
    }
    viewer = console("viewer")
    assert viewer.post("/ui/signals/analyses", form).status_code == 403
    operator = console("operator")
    assert operator.post("/ui/signals/analyses", form, csrf=False).status_code == 400
    done = operator.post("/ui/signals/analyses", form)
    assert done.status_code == 302
    assert re.fullmatch(r"/ui/signals/analyses/\d+", done.headers["Location"])
    refused = operator.post("/ui/signals/analyses", {**form, "selector": "no_such_metric"})
    assert refused.status_code == 422
    assert "no candidate signal" in text_of(refused.get_data(as_text=True)) or "no series" in (
        text_of(refused.get_data(as_text=True))
    )
    assert 'value="no_such_metric"' in refused.get_data(as_text=True)  # the form keeps input
