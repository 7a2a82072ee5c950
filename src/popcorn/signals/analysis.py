"""Alert analysis: rank the signals that changed around an alert, inline or as chunk jobs.

`analyze_alert` builds the candidate set and grid; small sets are ranked in the request,
large ones as one rq job per chunk (`compute_rows` + `save_chunk`) and a merge job
(`merge_analysis`). The ranking itself is in rank.py and the change detection in detect.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from popcorn import jobs
from popcorn.audit import record_change
from popcorn.config import get_settings
from popcorn.db import session_scope, utcnow
from popcorn.errors import Conflict, InvalidInput, NotFound
from popcorn.listing import ListParams, PageResult, filter_clauses, paginate
from popcorn.lookup import parse_id
from popcorn.outbox import emit
from popcorn.signals.catalog import (
    find_series,
    from_ms,
    get_series,
    proximity_of,
    scope_values,
    series_name,
    to_ms,
)
from popcorn.signals.models import Analysis, AnalysisChunk, Series
from popcorn.signals.promql import (
    parse_duration,
    parse_time,
)
from popcorn.signals.series import FloatArray, load_block

INLINE_LIMIT = 500
MAX_ANALYSIS_SIGNALS = 100_000
HISTORY_OFFSETS_S = (86_400, 7 * 86_400)
TOP_IN_EVENT = 5


def analyze_alert(
    *,
    alert_time: Any,
    trigger: int | str | None = None,
    selector: str | None = None,
    scope: dict[str, Any] | None = None,
    window_minutes: int = 120,
    after_minutes: int = 15,
    step: Any = None,
    options: dict[str, Any] | None = None,
    inline: bool | None = None,
    chunk_size: int | None = None,
) -> Analysis:
    """Rank the signals around an alert: which changed just before it, and together.

    Candidates are the series matching `selector`, or else those whose labels carry one of
    `scope`'s values (`{"site": "ams1", "device": ["r1"]}`); with both, the scope weighs
    each candidate by proximity. `trigger` (a series id or a selector for one series) is the
    alerting signal. The window is `window_minutes` before the alert to `after_minutes`
    after it, on a grid of `step` (default one minute, coarser for long windows); the same
    window one day and one week earlier removes daily and weekly cycles where stored.

    `inline=None` analyses up to INLINE_LIMIT signals now and larger sets as jobs; `True`
    always analyses now, `False` always uses jobs. Jobs take `chunk_size` signals each (the
    signals_chunk_size setting by default), run on any worker, and a merge job ranks them
    all once every chunk is in; a set that fits one chunk is one job with no merge. The
    returned Analysis is `finished` (inline) or `queued`.

    Opens its own transactions, so call it outside any write transaction: the candidates
    are found and an inline ranking computed in a read-only session (on SQLite no write
    lock, so API writes and runbook checkpoints go on meanwhile), then the analysis, its
    audit record and event or its chunk jobs are written in one short transaction. Bad
    input writes nothing.
    """
    with session_scope(readonly=True) as session:
        analysis = _plan(
            session,
            alert_time=alert_time,
            trigger=trigger,
            selector=selector,
            scope=scope,
            window_minutes=window_minutes,
            after_minutes=after_minutes,
            step=step,
            options=options,
            chunk_size=chunk_size,
        )
        run_now = inline if inline is not None else analysis.signal_count <= INLINE_LIMIT
        result = None
        if run_now:
            result = compute_rows(
                session=session, analysis=analysis, lo=0, hi=analysis.signal_count
            )
    with session_scope() as session:
        _record(session, analysis, result)
    return analysis


def _plan(
    session: Session,
    *,
    alert_time: Any,
    trigger: int | str | None,
    selector: str | None,
    scope: dict[str, Any] | None,
    window_minutes: int,
    after_minutes: int,
    step: Any,
    options: dict[str, Any] | None,
    chunk_size: int | None,
) -> Analysis:
    """Validate the request and build the (unsaved) queued Analysis: reads only."""
    alert_dt = parse_time(alert_time, "alert_time")
    if not 5 <= int(window_minutes) <= 14 * 1440:
        raise InvalidInput("window_minutes: must be between 5 and 20160 (two weeks)")
    if not 0 <= int(after_minutes) <= 1440:
        raise InvalidInput("after_minutes: must be between 0 and 1440")
    size = int(chunk_size) if chunk_size is not None else get_settings().signals_chunk_size
    if size < 10:
        raise InvalidInput("chunk_size: must be at least 10")
    total_s = (int(window_minutes) + int(after_minutes)) * 60
    step_s = (
        int(parse_duration(step, "step"))
        if step not in (None, "")
        else max(60, math.ceil(total_s / 1440 / 60) * 60)
    )
    if step_s < 1 or total_s / step_s > 20_000:
        raise InvalidInput("step: the window would have more than 20000 points; use a larger step")
    if total_s / step_s < 30:
        raise InvalidInput("step: the window needs at least 30 points; use a smaller step")
    step_ms = step_s * 1000
    alert_ms = to_ms(alert_dt)
    start_ms = (alert_ms - int(window_minutes) * 60_000) // step_ms * step_ms
    n = math.ceil((alert_ms + int(after_minutes) * 60_000 - start_ms) / step_ms)
    end_ms = start_ms + n * step_ms
    opts = _options(options)

    trigger_series = _resolve_trigger(session, trigger) if trigger not in (None, "") else None
    candidates = find_series(session=session, selector=selector, scope=scope)
    if trigger_series is not None:
        candidates = [s for s in candidates if s.id != trigger_series.id]
    start_dt, end_dt = from_ms(start_ms), from_ms(end_ms)
    # In the store's order (samples are sorted by fingerprint), so that a chunk's series share
    # row groups instead of spreading over all of them.
    with_data = sorted(
        (s for s in candidates if s.last_at >= start_dt and s.first_at < end_dt),
        key=lambda s: s.fingerprint,
    )
    if not with_data:
        raise NotFound(
            f"no candidate signal has samples between {start_dt.isoformat()} and "
            f"{end_dt.isoformat()} ({len(candidates)} matched the selector/scope)",
            details={"candidates": len(candidates), "start": start_dt.isoformat()},
        )
    if len(with_data) > MAX_ANALYSIS_SIGNALS:
        raise InvalidInput(f"{len(with_data)} candidate signals; at most {MAX_ANALYSIS_SIGNALS}")
    if trigger_series is not None and not (
        trigger_series.last_at >= start_dt and trigger_series.first_at < end_dt
    ):
        raise NotFound(f"the trigger {series_name(trigger_series)} has no samples in the window")
    history = [
        off * 1000
        for off in HISTORY_OFFSETS_S
        if any(s.first_at <= from_ms(start_ms - off * 1000) for s in with_data[:5000])
    ]
    params = {
        "series_ids": [s.id for s in with_data],
        "trigger_id": trigger_series.id if trigger_series else None,
        "alert_s": alert_ms // 1000,
        "start_ms": start_ms,
        "step_ms": step_ms,
        "n": n,
        "history_offsets_ms": history,
        "options": opts.to_dict(),
        "proximity_scope": {k: sorted(v) for k, v in scope_values(scope).items()}
        if scope and selector
        else None,
        "candidates_without_data": len(candidates) - len(with_data),
        "chunk_size": size,
    }
    return Analysis(
        status="queued",
        alert_time=alert_dt,
        trigger=str(trigger) if trigger not in (None, "") else None,
        selector=selector,
        scope=dict(scope or {}),
        window_minutes=int(window_minutes),
        step_seconds=step_s,
        params=params,
        signal_count=len(with_data),
        created_by=_actor(),
        created_at=utcnow(),
    )


def _record(session: Session, analysis: Analysis, result: Any) -> None:
    """Save a planned analysis: finished with its inline `result`, or queued as chunk jobs."""
    session.add(analysis)
    session.flush()
    record_change(session, "create", "signals_analysis", analysis.id, after=_brief(analysis))
    if result is not None:
        analysis.chunks_total = analysis.chunks_done = 1
        _finish(session, analysis, result)
        return
    ids: list[int] = analysis.params["series_ids"]
    size = int(analysis.params["chunk_size"])
    for index, lo in enumerate(range(0, len(ids), size)):
        chunk = AnalysisChunk(
            analysis_id=analysis.id, index=index, bounds=[lo, min(lo + size, len(ids))]
        )
        session.add(chunk)
        session.flush()
        job = jobs.enqueue(
            session,
            "signals.analysis_chunk",
            arguments={"analysis_id": analysis.id, "index": index},
        )
        chunk.job_id = job.id
        analysis.chunks_total += 1


def _actor() -> str:
    from popcorn.context import current_actor

    return current_actor().name


def _options(options: dict[str, Any] | None) -> Any:
    from popcorn.signals.rank import AnalysisOptions

    try:
        return AnalysisOptions.from_dict(options)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"options: {exc}", details={"options": options}) from None


def _resolve_trigger(session: Session, trigger: int | str) -> Series:
    series_id = parse_id(trigger)
    if series_id is not None:
        return get_series(session=session, series_id=series_id)
    found = find_series(session=session, selector=str(trigger), limit=1)
    if not found:
        raise NotFound(f"trigger: no series match {trigger}", details={"trigger": trigger})
    if len(found) > 1:
        raise InvalidInput(
            f"trigger: {trigger} matches more than one series; name exactly one",
            details={"trigger": trigger},
        )
    return found[0]


def _brief(analysis: Analysis) -> dict[str, Any]:
    return {
        "status": analysis.status,
        "alert_time": analysis.alert_time.isoformat(),
        "trigger": analysis.trigger,
        "selector": analysis.selector,
        "scope": analysis.scope,
        "signal_count": analysis.signal_count,
    }


def compute_rows(*, session: Session, analysis: Analysis, lo: int, hi: int) -> Any:
    """Analyse candidates `lo:hi` of an analysis (one chunk, or all of them inline).

    Needs only reads; tasks call it in a read-only session so that chunks run side by side.
    """
    from popcorn.signals.rank import AnalysisError, analyze_block

    p = analysis.params
    ids: list[int] = p["series_ids"][lo:hi]
    rows = {s.id: s for s in session.scalars(select(Series).where(Series.id.in_(ids)))}
    series = [rows[i] for i in ids if i in rows]
    start_ms, step_ms, n = int(p["start_ms"]), int(p["step_ms"]), int(p["n"])
    block = load_block(series, start_ms, step_ms, n)
    history = None
    if p["history_offsets_ms"]:
        history = np.stack(
            [load_block(series, start_ms - off, step_ms, n) for off in p["history_offsets_ms"]]
        )
    trigger = None
    trigger_name = None
    if p["trigger_id"] is not None:
        trig_series = get_series(session=session, series_id=int(p["trigger_id"]))
        trigger = load_block([trig_series], start_ms, step_ms, n)[0]
        trigger_name = series_name(trig_series)
        if not np.isfinite(trigger).any():
            raise InvalidInput(f"the trigger {trigger_name} has no samples in the window")
    proximity = None
    if p.get("proximity_scope"):
        wanted = {k: set(v) for k, v in p["proximity_scope"].items()}
        proximity = np.array([proximity_of(s.labels or {}, wanted) for s in series])
    grid_s = (start_ms + np.arange(n, dtype=np.int64) * step_ms) // 1000
    try:
        return analyze_block(
            grid_s,
            block,
            int(p["alert_s"]),
            trigger=trigger,
            names=[series_name(s) for s in series],
            options=p["options"],
            proximity=proximity,
            history=history,
            index_offset=lo,
            trigger_name=trigger_name,
        )
    except AnalysisError as exc:
        raise InvalidInput(f"analysis: {exc}") from None


def _result_dict(analysis: Analysis, result: Any) -> dict[str, Any]:
    """The ranked findings worth reading, each with its series id, plus clusters and counts."""
    ids: list[int] = analysis.params["series_ids"]
    data = dict(result.to_dict(include_unchanged=False))
    for finding in data["findings"]:
        finding["series_id"] = ids[finding["index"]]
    for cluster in data["clusters"]:
        cluster["member_series"] = [ids[i] for i in cluster["members"]]
        cluster["representative_series"] = ids[cluster["representative"]]
    return data


def _finish(session: Session, analysis: Analysis, result: Any) -> None:
    before = _brief(analysis)
    analysis.result = _result_dict(analysis, result)
    analysis.status = "finished"
    analysis.partial = None
    analysis.finished_at = utcnow()
    record_change(
        session, "update", "signals_analysis", analysis.id, before=before, after=_brief(analysis)
    )
    top = [
        {
            k: f.get(k)
            for k in ("series_id", "name", "verdict", "score", "change_time", "explanation")
        }
        for f in analysis.result["findings"][:TOP_IN_EVENT]
    ]
    emit(
        session,
        "signals.analysis.completed",
        "signals_analysis",
        analysis.id,
        {
            "analysis_id": analysis.id,
            "alert_time": analysis.alert_time.isoformat(),
            "signal_count": analysis.signal_count,
            "counts": analysis.result.get("counts", {}),
            "top": top,
            "clusters": [
                {k: c[k] for k in ("id", "member_series", "representative_series", "explanation")}
                for c in analysis.result["clusters"][:3]
            ],
        },
    )


def chunk_bounds(*, session: Session, analysis_id: int, index: int) -> tuple[Analysis, int, int]:
    """The analysis and candidate range of one chunk (NotFound if either is gone)."""
    analysis = get_analysis(session=session, analysis_id=analysis_id)
    chunk = session.scalar(
        select(AnalysisChunk).where(
            AnalysisChunk.analysis_id == analysis_id, AnalysisChunk.index == index
        )
    )
    if chunk is None:
        raise NotFound(f"analysis {analysis_id} has no chunk {index}")
    lo, hi = chunk.bounds
    return analysis, int(lo), int(hi)


def _chunk_payload(result: Any) -> dict[str, Any]:
    """What a chunk keeps: its interesting findings and its verdict counts."""
    data = dict(result.to_dict(include_unchanged=False))
    data["counts"] = dict(result.counts)
    return data


def save_chunk(*, session: Session, analysis_id: int, index: int, result: Any) -> dict[str, Any]:
    """Record one chunk's findings; the last chunk in enqueues the merge job.

    An analysis of one chunk finishes here (no merge job). Idempotent: a chunk re-run by a
    retry (its worker died after saving) counts once, and only one merge job is enqueued.
    """
    analysis = session.get(Analysis, analysis_id, with_for_update=True)
    if analysis is None or analysis.status in ("finished", "failed"):
        return {"analysis_id": analysis_id, "status": analysis.status if analysis else "gone"}
    chunk = session.scalar(
        select(AnalysisChunk)
        .where(AnalysisChunk.analysis_id == analysis_id, AnalysisChunk.index == index)
        .with_for_update()
    )
    if chunk is None:
        raise NotFound(f"analysis {analysis_id} has no chunk {index}")
    if chunk.status != "done":
        chunk.status = "done"
        chunk.result = _chunk_payload(result)
        chunk.finished_at = utcnow()
        analysis.chunks_done += 1
    analysis.status = "running"
    if analysis.chunks_total == 1:
        _finish(session, analysis, _merge_parts([chunk.result or {}]))
        return {"analysis_id": analysis_id, "chunk": index, "chunks_done": 1, "chunks_total": 1}
    done = list(
        session.scalars(
            select(AnalysisChunk.result).where(
                AnalysisChunk.analysis_id == analysis_id, AnalysisChunk.status == "done"
            )
        )
    )
    merged = _merge_parts(done)
    analysis.partial = {
        "chunks_done": analysis.chunks_done,
        "chunks_total": analysis.chunks_total,
        "findings": _result_dict(analysis, merged)["findings"][:10],
    }
    if analysis.chunks_done >= analysis.chunks_total and analysis.job_id is None:
        job = jobs.enqueue(
            session, "signals.analysis_merge", arguments={"analysis_id": analysis_id}
        )
        analysis.job_id = job.id
    return {
        "analysis_id": analysis_id,
        "chunk": index,
        "chunks_done": analysis.chunks_done,
        "chunks_total": analysis.chunks_total,
        "findings": len(merged.findings),
    }


def _merge_parts(parts: Sequence[dict[str, Any]]) -> Any:
    from popcorn.signals.rank import merge_results

    merged = merge_results([dict(p) for p in parts])
    counts: dict[str, int] = {}
    for part in parts:
        for verdict, count in (part.get("counts") or {}).items():
            counts[verdict] = counts.get(verdict, 0) + int(count)
    merged.counts = counts
    return merged


def merge_analysis(*, session: Session, analysis_id: int) -> Analysis:
    """Merge every chunk of a jobs-run analysis into its final ranking."""
    analysis = session.get(Analysis, analysis_id, with_for_update=True)
    if analysis is None:
        raise NotFound(f"no analysis {analysis_id}", details={"id": analysis_id})
    if analysis.status in ("finished", "failed"):
        return analysis
    parts = list(
        session.scalars(
            select(AnalysisChunk)
            .where(AnalysisChunk.analysis_id == analysis_id)
            .order_by(AnalysisChunk.index)
        )
    )
    missing = [c.index for c in parts if c.status != "done"]
    if missing:
        raise Conflict(f"analysis {analysis_id}: chunks {missing} are not done")
    _finish(session, analysis, _merge_parts([c.result or {} for c in parts]))
    return analysis


def fail_analysis(*, session: Session, analysis_id: int, error: str) -> None:
    analysis = session.get(Analysis, analysis_id, with_for_update=True)
    if analysis is None or analysis.status in ("finished", "failed"):
        return
    before = _brief(analysis)
    analysis.status = "failed"
    analysis.error = error[:4000]
    analysis.finished_at = utcnow()
    record_change(
        session, "update", "signals_analysis", analysis.id, before=before, after=_brief(analysis)
    )


def get_analysis(*, session: Session, analysis_id: int) -> Analysis:
    analysis = session.get(Analysis, analysis_id)
    if analysis is None:
        raise NotFound(f"no analysis {analysis_id}", details={"id": analysis_id})
    return analysis


def job_failure(*, session: Session, analysis: Analysis) -> str | None:
    """Why a queued or running analysis can no longer finish (a chunk or merge job failed)."""
    if analysis.status not in ("queued", "running"):
        return None
    job_ids = list(
        session.scalars(
            select(AnalysisChunk.job_id).where(AnalysisChunk.analysis_id == analysis.id)
        )
    )
    if analysis.job_id:
        job_ids.append(analysis.job_id)
    failed = session.scalar(
        select(jobs.JobRecord).where(
            jobs.JobRecord.id.in_([j for j in job_ids if j]),
            jobs.JobRecord.status.in_(["failed", "canceled"]),
        )
    )
    if failed is None:
        return None
    reason = failed.error.splitlines()[0] if failed.error else "no error recorded"
    return f"job {failed.id} ({failed.task}) {failed.status}: {reason}"


def list_analyses(*, session: Session, params: ListParams) -> PageResult:
    allowed = {
        "status": Analysis.status,
        "alert_time": Analysis.alert_time,
        "created_at": Analysis.created_at,
    }
    stmt = select(Analysis).where(*filter_clauses(params.filters, allowed))
    return paginate(session, stmt, params, key=Analysis.id)


def analysis_dict(analysis: Analysis, *, full: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": analysis.id,
        "status": analysis.status,
        "alert_time": analysis.alert_time.isoformat(),
        "trigger": analysis.trigger,
        "selector": analysis.selector,
        "scope": analysis.scope,
        "window_minutes": analysis.window_minutes,
        "step_seconds": analysis.step_seconds,
        "signal_count": analysis.signal_count,
        "chunks_total": analysis.chunks_total,
        "chunks_done": analysis.chunks_done,
        "error": analysis.error,
        "created_by": analysis.created_by,
        "created_at": analysis.created_at.isoformat(),
        "finished_at": analysis.finished_at.isoformat() if analysis.finished_at else None,
    }
    if full:
        out["partial"] = analysis.partial
        out["result"] = analysis.result
    return out


def finding_for(analysis: Analysis, series_id: int) -> dict[str, Any] | None:
    for finding in (analysis.result or {}).get("findings", []):
        if finding.get("series_id") == series_id:
            return dict(finding)
    return None


def analysis_series(
    *, session: Session, analysis: Analysis, series_id: int
) -> tuple[Series, FloatArray, FloatArray, dict[str, Any] | None]:
    """One candidate's values on the analysis grid, and its finding if it was ranked."""
    p = analysis.params
    if series_id not in p["series_ids"] and series_id != p.get("trigger_id"):
        raise NotFound(
            f"series {series_id} is not part of analysis {analysis.id}",
            details={"analysis": analysis.id, "series": series_id},
        )
    series = get_series(session=session, series_id=series_id)
    start_ms, step_ms, n = int(p["start_ms"]), int(p["step_ms"]), int(p["n"])
    values = load_block([series], start_ms, step_ms, n)[0]
    grid = (start_ms + np.arange(n) * step_ms) / 1000.0
    return series, grid, values, finding_for(analysis, series_id)
