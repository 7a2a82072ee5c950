"""Signals pages: the series explorer (selector and time range to a chart) and alert analyses
(ranked signals, clusters, and each signal's plot with its change points)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from flask import Response, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from popcorn.db import session_scope
from popcorn.errors import InvalidInput, PopcornError
from popcorn.listing import ListParams
from popcorn.signals import plots, service
from popcorn.web import auth as console_auth
from popcorn.web import helpers
from popcorn.web.views import OVERVIEW_PANELS, bp

CHART_SERIES = 30  # lines in one explorer chart; more is unreadable
RAW_POINTS = 20_000  # above this many raw samples the explorer resamples
TARGET_POINTS = 720  # cells per series when it resamples
PLOTTED_FINDINGS = 20  # findings shown with their plot on an analysis page
RANKED_PAGE = 50  # ranked signals per page of an analysis
SHOWN_CLUSTERS = 10  # clusters shown open; the others are behind a "more" toggle
RANGES = ("15m", "1h", "6h", "24h", "7d")


def _explore(form: dict[str, str]) -> dict[str, Any]:
    """Run the explorer's query: a chart, the matched series, or the reason there is none."""
    out: dict[str, Any] = {"figure": None, "series": [], "error": None, "note": ""}
    if not form["query"]:
        return out
    try:
        with session_scope(readonly=True) as session:
            result = service.query(
                session=session,
                selector=form["query"],
                start=form["start"],
                end=form["end"],
                step=form["step"] or None,
                agg=form["agg"],
            )
            points = sum(len(v) for v in result.values)
            if not form["step"] and points > RAW_POINTS:
                span = (result.end - result.start).total_seconds()
                step = max(1, math.ceil(span / TARGET_POINTS))
                result = service.query(
                    session=session,
                    selector=form["query"],
                    start=form["start"],
                    end=form["end"],
                    step=f"{step}s",
                    agg=form["agg"],
                )
                out["note"] = (
                    f"{points:,} samples: shown as the {form['agg']} of every {step} s "
                    "(set a step to choose)."
                )
            data = result.as_dict()
    except PopcornError as exc:
        out["error"] = helpers.error_details(exc)
        return out
    traces = []
    for item in data["series"][:CHART_SERIES]:
        traces.append(
            {
                "type": "scattergl" if len(item["values"]) > 5000 else "scatter",
                "mode": "lines+markers" if len(item["values"]) < 60 else "lines",
                "name": item["name"],
                "x": [t * 1000 for t in item["timestamps"]],
                "y": helpers.finite(item["values"]),
            }
        )
    if len(data["series"]) > CHART_SERIES:
        out["note"] += (
            f" The selector matches {len(data['series'])} series; the chart shows the first "
            f"{CHART_SERIES}."
        )
    out["figure"] = helpers.chart(
        traces,
        xaxis={"type": "date", "title": {"text": "time (UTC)"}},
        yaxis={"automargin": True},
        showlegend=len(traces) <= 12,
    )
    out["series"] = data["series"]
    out["range"] = (data["start"], data["end"], data["step"])
    return out


def _series_link(series: dict[str, Any]) -> str:
    """Explorer URL showing one series' last hour of data."""
    last = helpers.as_datetime(series["last_time"])
    assert last is not None
    return url_for(
        "web.signals",
        query=series["name"],
        start=(last - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        end=(last + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _analyses(session: Session, page: int, size: int) -> dict[str, Any]:
    listing = helpers.newest(
        lambda params: service.list_analyses(session=session, params=params), page=page, size=size
    )
    listing["items"] = [service.analysis_dict(a, full=False) for a in listing["items"]]
    return listing


def _render_signals(analysis_form: dict[str, Any], analysis_error: Any = None) -> Any:
    form = {
        "query": request.args.get("query", "").strip(),
        "start": request.args.get("start", "").strip() or "now-1h",
        "end": request.args.get("end", "").strip() or "now",
        "step": request.args.get("step", "").strip(),
        "agg": request.args.get("agg", "mean"),
    }
    explored = _explore(form)
    with session_scope(readonly=True) as session:
        stats = service.storage_stats(session=session)
        known = [
            service.series_dict(s)
            for s in service.list_series(session=session, params=ListParams(limit=15)).items
        ]
        analyses = _analyses(session, 1, 10)
    for series in known:
        series["link"] = _series_link(series)
    status = 422 if analysis_error else 200
    return render_template(
        "signals/index.html",
        form=form,
        aggregations=service.AGGREGATIONS,
        ranges=RANGES,
        explored=explored,
        stats=stats,
        known=known,
        analyses=analyses,
        analysis_form=analysis_form,
        analysis_error=analysis_error,
        chart_page=explored["figure"] is not None,
    ), status


@bp.get("/signals")
def signals() -> Any:
    return _render_signals(_default_analysis_form())


def _default_analysis_form() -> dict[str, Any]:
    return {
        "alert_time": "",
        "trigger": "",
        "selector": "",
        "scope": "",
        "window_minutes": 120,
        "after_minutes": 15,
    }


def _scope(text: str) -> dict[str, list[str]] | None:
    """`site=ams1, device=r1 r2` as an inventory scope."""
    scope: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InvalidInput(f"scope: {part!r} is not label=value", details={"scope": text})
        scope.setdefault(key.strip(), []).extend(value.split())
    return scope or None


@bp.post("/signals/analyses")
@console_auth.needs("operator")
def signals_analyze() -> Any:
    form = {k: request.form.get(k, "").strip() for k in _default_analysis_form()}
    try:
        analysis = service.analyze_alert(
            alert_time=form["alert_time"] or "now",
            trigger=form["trigger"] or None,
            selector=form["selector"] or None,
            scope=_scope(form["scope"]),
            window_minutes=int(form["window_minutes"] or 120),
            after_minutes=int(form["after_minutes"] or 15),
        )
        analysis_id = analysis.id
    except (PopcornError, ValueError) as exc:
        if isinstance(exc, PopcornError):
            error = helpers.error_details(exc)
        else:
            error = {"message": "window and after must be whole minutes", "fields": {}}
        return _render_signals(form, error)
    return redirect(url_for("web.signals_analysis", analysis_id=analysis_id))


@bp.get("/signals/analyses")
def signals_analyses() -> str:
    with session_scope(readonly=True) as session:
        analyses = _analyses(session, helpers.page_number(request.args), helpers.PAGE_SIZE)
    return render_template("signals/analyses.html", analyses=analyses)


@bp.get("/signals/analyses/<int:analysis_id>")
def signals_analysis(analysis_id: int) -> str:
    with session_scope(readonly=True) as session:
        analysis = service.get_analysis(session=session, analysis_id=analysis_id)
        failure = service.job_failure(session=session, analysis=analysis)
        data = service.analysis_dict(analysis)
        trigger_id = analysis.params.get("trigger_id")
        trigger = (
            service.series_dict(service.get_series(session=session, series_id=trigger_id))
            if trigger_id
            else None
        )
    result = data.get("result") or {}
    findings = result.get("findings") or (data.get("partial") or {}).get("findings") or []
    clusters = list(result.get("clusters", []))
    main = [c for c in clusters if len(c.get("member_series", [])) > 1 or c["score"] >= 0.1]
    # Thousands of ranked signals: one page of the ranking and the top plots come first,
    # the rest is paged (the page stays small however many signals were ranked).
    raw = str(request.args.get("offset", "0"))
    offset = int(raw) if raw.isdigit() and int(raw) < len(findings) else 0
    return render_template(
        "signals/analysis.html",
        analysis=data,
        failure=failure,
        trigger=trigger,
        result=result,
        findings=findings,
        ranked=findings[offset : offset + RANKED_PAGE],
        ranking={"count": len(findings), "limit": RANKED_PAGE, "offset": offset},
        clusters=clusters,
        main_clusters=main[:SHOWN_CLUSTERS],
        other_clusters=main[SHOWN_CLUSTERS:] + [c for c in clusters if c not in main],
        plotted=PLOTTED_FINDINGS,
    )


@bp.get("/signals/analyses/<int:analysis_id>/plot/<int:series_id>.png")
def signals_plot(analysis_id: int, series_id: int) -> Response:
    """The same picture as the API's plot: the signal, its change points and the alert."""
    with session_scope(readonly=True) as session:
        analysis = service.get_analysis(session=session, analysis_id=analysis_id)
        series, grid, values, finding = service.analysis_series(
            session=session, analysis=analysis, series_id=series_id
        )
        png = plots.analysis_png(
            service.series_name(series), grid, values, analysis.alert_time, finding
        )
    return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=60"})


def signals_panel(session: Session) -> dict[str, Any]:
    stats = service.storage_stats(session=session)
    rows: list[tuple[str, Any, str | None]] = []
    if stats["series"]:
        rows = [
            ("series", f"{stats['series']:,}", None),
            ("samples", f"{stats['samples']:,}", None),
            ("on disk", helpers.fmt_bytes(stats["bytes"]), None),
        ]
    for item in _analyses(session, 1, 3)["items"]:
        rows.append(
            (
                f"analysis {item['id']} · {item['signal_count']} signals",
                item["status"],
                url_for("web.signals_analysis", analysis_id=item["id"]),
            )
        )
    return {
        "title": "Signals",
        "link": url_for("web.signals"),
        "rows": rows,
        "empty": "No signals stored yet.",
    }


OVERVIEW_PANELS.append(signals_panel)
