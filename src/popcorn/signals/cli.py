"""`popcorn signals …`: ingest files or a Prometheus server, query, analyse alerts, detect."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from popcorn.cli import json_option, output, parse_kv, progress, with_actor
from popcorn.db import session_scope
from popcorn.errors import InvalidInput
from popcorn.numbers import number
from popcorn.signals import catalog

if TYPE_CHECKING:
    import numpy as np


@click.group("signals")
def group() -> None:
    """Time series: ingest, query, retention and alert analysis."""


@group.command("ingest")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(catalog.FORMATS), help="Default: by extension.")
@click.option("--from-prometheus", "url", help="Pull from this Prometheus-compatible server.")
@click.option("--match", "match", help="Selector to pull, e.g. 'up{job=\"node\"}'.")
@click.option("--start", default="now-1h", show_default=True, help="Pull window start.")
@click.option("--end", default="now", show_default=True, help="Pull window end.")
@click.option("--step", default="60s", show_default=True, help="Pull resolution.")
@click.option("--enqueue", is_flag=True, help="Pull in a background job instead of now.")
@json_option
@with_actor
def ingest_cmd(
    files: tuple[Path, ...],
    fmt: str | None,
    url: str | None,
    match: str | None,
    start: str,
    end: str,
    step: str,
    enqueue: bool,
    as_json: bool,
) -> None:
    """Ingest CSV, Parquet, JSON or Prometheus text FILES (each all-or-nothing), or pull a
    window of series from a Prometheus server with --from-prometheus URL --match SELECTOR.

    CSV/Parquet are long format: a `timestamp` (unix seconds or RFC 3339), `value`, and
    either `series` (`metric{a="b"}`) or `metric` plus one column per label.
    """
    from popcorn.signals import service

    if url:
        if files or not match:
            raise click.UsageError("--from-prometheus needs --match and no FILES")
        if enqueue:
            from popcorn import jobs

            args = {"url": url, "match": match, "start": start, "end": end, "step": step}
            with session_scope() as session:
                job = jobs.submit_job(
                    session=session, task="signals.pull_prometheus", arguments=args
                )
                output({"job_id": job.id, "status": job.status}, as_json=as_json)
            return
        with progress(None, f"pulling {match}") as bar, session_scope() as session:
            result = service.pull_from_prometheus(
                session=session,
                url=url,
                match=match,
                start=start,
                end=end,
                step=step,
                progress=lambda done, total: bar.update(
                    bar.task_ids[0], completed=done, total=total
                ),
            )
        output(result.as_dict(), as_json=as_json)
        return
    if not files:
        raise click.UsageError("give FILES to ingest, or --from-prometheus URL --match SELECTOR")
    results = []
    for path in files:
        with session_scope() as session:
            result = service.ingest_file(session=session, path=path, fmt=fmt)
        results.append({"file": str(path), **result.as_dict()})
    columns = ["file", "samples", "series", "new_series", "duplicates", "skipped", "replaced",
               "first_time", "last_time"]  # fmt: skip
    output(results, as_json=as_json, columns=columns)


@group.command("series")
@click.argument("selector", required=False)
@click.option("--limit", default=100, show_default=True)
@json_option
def series_cmd(selector: str | None, limit: int, as_json: bool) -> None:
    """List series, optionally those matching SELECTOR."""
    from popcorn.listing import ListParams

    with session_scope(readonly=True) as session:
        page = catalog.list_series(
            session=session, params=ListParams(limit=min(limit, 1000)), match=selector
        )
        rows = [catalog.series_dict(s) for s in page.items]
    columns = ["id", "name", "first_time", "last_time", "sample_count"]
    output(rows, as_json=as_json, columns=columns, title=f"{page.count} series")


@group.command("query")
@click.argument("selector")
@click.option("--start", default="now-1h", show_default=True)
@click.option("--end", default="now", show_default=True)
@click.option("--step", help="Resample to this step (e.g. 60s); raw samples without it.")
@click.option("--agg", type=click.Choice(catalog.AGGREGATIONS), default="mean", show_default=True)
@json_option
def query_cmd(
    selector: str, start: str, end: str, step: str | None, agg: str, as_json: bool
) -> None:
    """Samples of the series matching SELECTOR; one column per series (up to 8)."""
    import numpy as np

    from popcorn.signals import service

    with session_scope(readonly=True) as session:
        result = service.query(
            session=session, selector=selector, start=start, end=end, step=step, agg=agg
        )
        data = result.as_dict()
    if as_json:
        output(data, as_json=True)
        return
    series = data["series"]
    if len(series) > 8 or step is None:
        rows = []
        for s in series:
            vals = np.array([np.nan if v is None else v for v in s["values"]], dtype=float)
            finite = vals[np.isfinite(vals)]
            rows.append(
                {
                    "id": s["id"],
                    "name": s["name"],
                    "points": len(vals),
                    "gaps": int(np.isnan(vals).sum()),
                    "min": _fmt(finite.min()) if finite.size else "",
                    "mean": _fmt(finite.mean()) if finite.size else "",
                    "max": _fmt(finite.max()) if finite.size else "",
                    "last": _fmt(finite[-1]) if finite.size else "",
                }
            )
        output(rows, as_json=False)
        return
    from datetime import UTC, datetime

    rows = []
    for i, t in enumerate(series[0]["timestamps"]):
        row: dict[str, Any] = {"time": datetime.fromtimestamp(t, UTC).isoformat()}
        for s in series:
            row[s["name"]] = _fmt(s["values"][i])
        rows.append(row)
    output(rows, as_json=False)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return number(value, 6)


@group.command("retention")
@click.option("--days", type=int, help="Set the retention to this many days.")
@click.option("--run", is_flag=True, help="Apply the retention now.")
@json_option
@with_actor
def retention_cmd(days: int | None, run: bool, as_json: bool) -> None:
    """Show or set how many days of samples are kept; --run deletes older ones now."""
    from popcorn.signals import service

    with session_scope() as session:
        data: dict[str, Any] = (
            service.set_retention(session=session, days=days)
            if days is not None
            else service.get_settings_view(session=session)
        )
    if run:
        data = {**data, **service.run_retention()}
    output(data, as_json=as_json)


@group.command("stats")
@json_option
def stats_cmd(as_json: bool) -> None:
    """How much is stored: series, samples, bytes on disk, day partitions."""
    from popcorn.signals import service

    with session_scope(readonly=True) as session:
        output(service.storage_stats(session=session), as_json=as_json)


@group.command("analyze")
@click.option("--alert-time", required=True, help="Unix seconds, RFC 3339 or now-10m.")
@click.option("--trigger", help="The alerting signal: series id or one-series selector.")
@click.option("--selector", "-s", help="Candidate signals.")
@click.option("--scope", multiple=True, help="Inventory scope label=value (repeatable).")
@click.option("--window", "window_minutes", default=120, show_default=True, help="Minutes before.")
@click.option("--after", "after_minutes", default=15, show_default=True, help="Minutes after.")
@click.option("--step", help="Grid step (default 60s, coarser for long windows).")
@click.option("--inline/--jobs", "inline", default=None, help="Force now or rq jobs.")
@click.option(
    "--chunk-size", type=int, default=None, help="Signals per job (default: signals_chunk_size)."
)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for jobs.")
@click.option("--top", default=20, show_default=True, help="Rows to show.")
@json_option
@with_actor
def analyze_cmd(
    alert_time: str,
    trigger: str | None,
    selector: str | None,
    scope: tuple[str, ...],
    window_minutes: int,
    after_minutes: int,
    step: str | None,
    inline: bool | None,
    chunk_size: int | None,
    wait: bool,
    top: int,
    as_json: bool,
) -> None:
    """Rank the signals that changed around an alert and group those that moved together."""
    from popcorn.signals import service

    scope_map: dict[str, Any] = {}
    for key, value in parse_kv(scope).items():
        scope_map.setdefault(key, []).append(str(value))
    analysis = service.analyze_alert(
        alert_time=alert_time,
        trigger=trigger,
        selector=selector,
        scope=scope_map or None,
        window_minutes=window_minutes,
        after_minutes=after_minutes,
        step=step,
        inline=inline,
        chunk_size=chunk_size,
    )
    analysis_id = analysis.id
    if wait:
        _wait(analysis_id)
    _show(analysis_id, as_json, top)


def _wait(analysis_id: int, timeout: float = 3600.0) -> None:
    import time

    from popcorn.signals import service

    deadline = time.monotonic() + timeout
    with progress(None, f"analysis {analysis_id}") as bar:
        while time.monotonic() < deadline:
            with session_scope(readonly=True) as session:
                analysis = service.get_analysis(session=session, analysis_id=analysis_id)
                failure = service.job_failure(session=session, analysis=analysis)
                status, done, total = analysis.status, analysis.chunks_done, analysis.chunks_total
            if failure:
                with session_scope() as session:
                    service.fail_analysis(session=session, analysis_id=analysis_id, error=failure)
                return
            bar.update(bar.task_ids[0], completed=done, total=total or None)
            if status in ("finished", "failed"):
                return
            time.sleep(0.5)
    raise TimeoutError(f"analysis {analysis_id} still running after {timeout:.0f}s")


@group.command("show")
@click.argument("analysis_id", type=int)
@click.option("--top", default=20, show_default=True, help="Rows to show.")
@json_option
def show_cmd(analysis_id: int, top: int, as_json: bool) -> None:
    """An analysis: its ranked signals and clusters."""
    _show(analysis_id, as_json, top)


def _show(analysis_id: int, as_json: bool, top: int) -> None:
    from popcorn.signals import service

    with session_scope(readonly=True) as session:
        data = service.analysis_dict(service.get_analysis(session=session, analysis_id=analysis_id))
    if as_json:
        output(data, as_json=True)
        return
    head = {k: data[k] for k in ("id", "status", "alert_time", "signal_count", "error") if data[k]}
    head["chunks"] = f"{data['chunks_done']}/{data['chunks_total']}"
    result = data.get("result") or {}
    head["counts"] = result.get("counts", {})
    output(head, as_json=False)
    findings = result.get("findings") or (data.get("partial") or {}).get("findings") or []
    rows = [
        {
            "rank": rank,
            "series": f.get("series_id"),
            "name": f.get("name"),
            "verdict": f.get("verdict"),
            "change": _offset(f.get("offset_seconds")),
            "effect": _fmt(f.get("effect_size")),
            "corr": _fmt(f.get("pearson")),
            "score": _fmt(f.get("score")),
            "cluster": f.get("cluster"),
        }
        for rank, f in enumerate(findings[:top], start=1)
    ]
    output(rows, as_json=False, title="ranked signals")
    clusters = [
        {
            "cluster": c["id"],
            "lead": c["representative_series"],
            "members": len(c["members"]),
            "score": _fmt(c["score"]),
            "explanation": c["explanation"],
        }
        for c in result.get("clusters", [])[:top]
    ]
    if clusters:
        output(clusters, as_json=False, title="clusters")


def _offset(seconds: int | None) -> str:
    if seconds is None:
        return ""
    sign = "-" if seconds < 0 else "+"
    minutes, secs = divmod(abs(int(seconds)), 60)
    return f"{sign}{minutes}m{secs:02d}s"


@group.command("detect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--column", default="value", show_default=True, help="CSV column to read.")
@click.option("--sensitivity", type=float, help="Above 1 finds smaller changes.")
@click.option("--min-size", type=int, help="Shortest segment in samples.")
@click.option("--penalty", type=float, help="Penalty per change (noise-variance units).")
@json_option
def detect_cmd(
    file: Path,
    column: str,
    sensitivity: float | None,
    min_size: int | None,
    penalty: float | None,
    as_json: bool,
) -> None:
    """Change points of one series in FILE: CSV (a value column, optional timestamp) or JSON
    (a list of numbers, or {"values": [...], "timestamps": [...]})."""
    import numpy as np

    from popcorn.cli import console
    from popcorn.signals.detect import change_points

    timestamps, values = _read_series(file, column)
    options = {
        k: v
        for k, v in {"sensitivity": sensitivity, "min_size": min_size, "penalty": penalty}.items()
        if v is not None
    }
    points = change_points(values, **options)
    rows = []
    for i in points:
        row: dict[str, Any] = {"index": i}
        if timestamps is not None:
            row["timestamp"] = timestamps[i]
        row["before"] = _fmt(float(np.nanmean(values[max(0, i - 5) : i])))
        row["after"] = _fmt(float(np.nanmean(values[i : i + 5])))
        rows.append(row)
    if as_json:
        output({"samples": len(values), "change_points": rows}, as_json=True)
        return
    if not rows:
        console.print(f"no change points in {len(values)} samples")
        return
    output(rows, as_json=False, title=f"{len(rows)} change point(s) in {len(values)} samples")


def _read_series(path: Path, column: str) -> tuple[list[Any] | None, np.ndarray[Any, Any]]:
    """(timestamps or None, values) from a CSV or JSON file; empty CSV cells are gaps."""
    import numpy as np

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path.name}: not JSON: {exc}") from None
        stamps = None
        if isinstance(data, dict):
            stamps = data.get("timestamps")
            data = data.get("values")
        if not isinstance(data, list):
            raise InvalidInput(f'{path.name}: expected a list of numbers or {{"values": [...]}}')
        items = [np.nan if v is None else v for v in data]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
            raise InvalidInput(f"{path.name}: values must be numbers (null for a gap)")
        if stamps is not None and len(stamps) != len(items):
            raise InvalidInput(f"{path.name}: {len(stamps)} timestamps but {len(items)} values")
        return stamps, np.asarray(items, dtype=float)
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(path)
    except pa.ArrowInvalid as exc:
        raise InvalidInput(f"{path.name}: not a readable CSV file: {exc}") from None
    if column not in table.column_names:
        raise InvalidInput(
            f"{path.name}: no column {column!r} (columns: {', '.join(table.column_names)})"
        )
    col = table.column(column)
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise InvalidInput(f"{path.name}: column {column} is not numeric ({col.type})")
    values = np.asarray(col.to_numpy(zero_copy_only=False), dtype=float)
    time_col = next((c for c in catalog.TIME_COLUMNS if c in table.column_names), None)
    stamps = None
    if time_col:
        stamps = [
            str(v) if not isinstance(v, int | float) else v
            for v in table.column(time_col).to_pylist()
        ]
    return stamps, values
