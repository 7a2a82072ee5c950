"""Signals API: ingest, series, range queries, retention and alert analyses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from apiflask import APIBlueprint, FileSchema
from flask import Response, request

from popcorn import metrics
from popcorn.app import role
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.listing import parse_list_params
from popcorn.signals import plots, remote_write, service
from popcorn.signals.promql import parse_time
from popcorn.signals.schemas import (
    AnalysisBrief,
    AnalysisCreate,
    AnalysisPage,
    AnalysisRead,
    IngestRead,
    JobAccepted,
    QueryRead,
    RetentionUpdate,
    SeriesPage,
    SeriesRead,
    SettingsRead,
    StatsRead,
)

bp = APIBlueprint("signals", __name__, tag="signals")

PROMETHEUS_TYPES = ("text/plain", "application/openmetrics-text")
PNG = FileSchema(type="string", format="binary")


@bp.post("/ingest")
@bp.output(IngestRead, status_code=201)
@bp.doc(
    summary="Ingest samples: a JSON batch, or Prometheus text exposition / OpenMetrics",
    description=(
        'JSON (`application/json`): `{"series": [{"metric": "cpu", "labels": {"host": "a"}, '
        '"timestamps": [unix seconds...], "values": [numbers...]}]}` (or `"samples": [[t, v], '
        "...]`). Prometheus text (`text/plain` or `application/openmetrics-text`); samples "
        "without a timestamp get `?time=` (default now). A batch is stored entirely or not at "
        "all; non-finite values and bad timestamps are a 422 naming the sample. Repeated "
        "timestamps of one series keep the value given last."
    ),
)
def ingest() -> Any:
    ctype = (request.mimetype or "").lower()
    with session_scope() as session:
        if ctype in PROMETHEUS_TYPES or request.args.get("format") == "prometheus":
            when = request.args.get("time")
            text = request.get_data(as_text=True)
            result = service.ingest_prometheus_text(
                session=session, text=text, default_time=parse_time(when) if when else None
            )
        elif ctype == "application/json":
            payload = request.get_json(silent=True)
            if payload is None:
                raise InvalidInput("body: not valid JSON")
            result = service.ingest_json(session=session, payload=payload)
        else:
            raise InvalidInput(
                f"Content-Type {ctype or 'missing'}: send application/json or text/plain",
                details={"accepted": ["application/json", *PROMETHEUS_TYPES]},
            )
        return result.as_dict()


@bp.post("/write")
@bp.output({}, status_code=204)
@bp.doc(
    summary="Prometheus remote write 1.0 receiver (operator token)",
    description=(
        "A snappy-compressed protobuf `WriteRequest` (`Content-Type: application/x-protobuf`, "
        "`Content-Encoding: snappy`, `X-Prometheus-Remote-Write-Version: 0.1.0`), as "
        "Prometheus's `remote_write` sends it. 204 stored; 400, 413 and 415 are permanent "
        "(the sender drops the batch); 503 is retried; 429 with Retry-After when the machine "
        "already stores `signals_remote_write_max_inflight` requests (Prometheus retries it "
        "with `retry_on_http_429: true`). Samples at a stored timestamp replace it; NaN and "
        "stale markers are skipped."
    ),
    responses={
        204: "stored",
        400: "bad body",
        413: "too large",
        415: "not remote write 1.0",
        429: "busy: retry after Retry-After seconds",
        503: "cannot store now: retry",
    },
)
def remote_write_receive() -> Any:
    headers = remote_write.Headers(
        content_type=request.headers.get("Content-Type", ""),
        content_encoding=request.headers.get("Content-Encoding", ""),
        version=request.headers.get("X-Prometheus-Remote-Write-Version", ""),
    )
    with remote_write.handling():
        body = request.get_data(cache=False)
        with session_scope() as session:
            result = remote_write.receive(session=session, body=body, headers=headers)
    remote_write.count(result)
    return ""


@bp.get("/series")
@bp.output(SeriesPage)
@bp.doc(summary="List series (?match=selector; filters metric, site, device, last_at__gte…)")
def list_series() -> Any:
    params = parse_list_params(request.args)
    match = params.filters.pop("match", [None])[-1]
    with session_scope(readonly=True) as session:
        page = service.list_series(session=session, params=params, match=match)
        page.items = [service.series_dict(s) for s in page.items]
        return page.serialize(SeriesRead)


@bp.get("/series/<int:series_id>")
@bp.output(SeriesRead)
@bp.doc(summary="One series' metadata")
def show_series(series_id: int) -> Any:
    with session_scope(readonly=True) as session:
        return service.series_dict(service.get_series(session=session, series_id=series_id))


@bp.get("/query")
@bp.output(QueryRead)
@bp.doc(
    summary="Samples of the series matching a selector, raw or resampled",
    description=(
        '`query` (or `match`): `metric{label="v",other=~"re.*"}`; `start`, `end`: unix '
        "seconds, RFC 3339 or now-1h (default the last hour); `step`: e.g. 60s to resample "
        "onto a grid from `start` (omit for raw samples); `agg`: mean, max, min, sum, last, "
        "count. Empty cells are null. No matching series or no samples in the window is 404."
    ),
)
def query() -> Any:
    args = request.args
    selector = args.get("query") or args.get("match")
    if not selector:
        raise InvalidInput('query: give a selector, e.g. ?query=up{job="api"}')
    with session_scope(readonly=True) as session:
        result = service.query(
            session=session,
            selector=selector,
            start=args.get("start", "now-1h"),
            end=args.get("end", "now"),
            step=args.get("step"),
            agg=args.get("agg", "mean"),
        )
        return result.as_dict()


@bp.get("/settings")
@bp.output(SettingsRead)
@bp.doc(summary="Signals settings (retention)")
def show_settings() -> Any:
    with session_scope(readonly=True) as session:
        return service.get_settings_view(session=session)


@bp.put("/settings")
@role("admin")
@bp.input(RetentionUpdate, arg_name="body")
@bp.output(SettingsRead)
@bp.doc(summary="Change the retention in days (applied by the hourly signals.retention job)")
def update_settings(body: RetentionUpdate) -> Any:
    with session_scope() as session:
        return service.set_retention(session=session, days=body.retention_days)


@bp.post("/retention")
@role("admin")
@bp.output(JobAccepted, status_code=202)
@bp.doc(summary="Run the retention job now (returns the job)")
def run_retention() -> Any:
    with session_scope() as session:
        job = service.run_retention_now(session=session)
        return {"job_id": job.id, "status": job.status}


@bp.get("/stats")
@bp.output(StatsRead)
@bp.doc(summary="How much is stored: series, samples, bytes, day partitions")
def stats() -> Any:
    with session_scope(readonly=True) as session:
        return service.storage_stats(session=session)


@bp.post("/analyses")
@bp.input(AnalysisCreate, arg_name="body")
@bp.output(AnalysisRead, status_code=201)
@bp.doc(
    summary="Analyse the signals around an alert",
    description=(
        "Up to 500 candidate signals are analysed in the request (201, status finished); "
        "more run as one job per chunk plus a merge job (202, status queued: poll GET "
        "/analyses/<id>, which shows `partial` results while it runs)."
    ),
    responses={201: "finished", 202: "queued"},
)
def create_analysis(body: AnalysisCreate) -> Any:
    analysis = service.analyze_alert(**body.model_dump())  # its own short transactions
    data = service.analysis_dict(analysis)
    return data, 201 if data["status"] == "finished" else 202


@bp.get("/analyses")
@bp.output(AnalysisPage)
@bp.doc(summary="List analyses (filters: status, alert_time__gte, created_at__gte…)")
def list_analyses() -> Any:
    params = parse_list_params(request.args)
    with session_scope(readonly=True) as session:
        page = service.list_analyses(session=session, params=params)
        page.items = [service.analysis_dict(a, full=False) for a in page.items]
        return page.serialize(AnalysisBrief)


@bp.get("/analyses/<int:analysis_id>")
@bp.output(AnalysisRead)
@bp.doc(summary="An analysis: status, progress, partial results, ranked signals and clusters")
def show_analysis(analysis_id: int) -> Any:
    with session_scope(readonly=True) as session:
        analysis = service.get_analysis(session=session, analysis_id=analysis_id)
        failure = service.job_failure(session=session, analysis=analysis)
        if failure is None:
            return service.analysis_dict(analysis)
    with session_scope() as session:
        service.fail_analysis(session=session, analysis_id=analysis_id, error=failure)
        return service.analysis_dict(service.get_analysis(session=session, analysis_id=analysis_id))


@bp.get("/analyses/<int:analysis_id>/plot/<int:series_id>.png")
@bp.output(PNG, content_type="image/png")
@bp.doc(summary="PNG of one signal of an analysis, its change points and the alert time")
def plot(analysis_id: int, series_id: int) -> Response:
    with session_scope(readonly=True) as session:
        analysis = service.get_analysis(session=session, analysis_id=analysis_id)
        series, grid, values, finding = service.analysis_series(
            session=session, analysis=analysis, series_id=series_id
        )
        png = plots.analysis_png(
            service.series_name(series), grid, values, analysis.alert_time, finding
        )
    return Response(png, mimetype="image/png", headers={"Cache-Control": "max-age=60"})


def _scrape() -> Iterator[Any]:
    """Stored series and samples for /metrics (two aggregate queries at scrape time)."""
    from prometheus_client.core import GaugeMetricFamily

    with session_scope(readonly=True) as session:
        stats = service.storage_stats(session=session)
    yield GaugeMetricFamily("popcorn_signals_series", "Signals series stored", stats["series"])
    yield GaugeMetricFamily("popcorn_signals_samples", "Signals samples stored", stats["samples"])
    yield GaugeMetricFamily("popcorn_signals_bytes", "Bytes of sample files", stats["bytes"])


metrics.SCRAPE_COLLECTORS.append(_scrape)
