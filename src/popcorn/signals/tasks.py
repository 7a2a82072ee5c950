"""Signals jobs: retention, Prometheus pulls, and the chunks and merge of large analyses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from popcorn import jobs
from popcorn.db import session_scope
from popcorn.errors import PopcornError
from popcorn.signals import service


@jobs.task("signals.retention", queue="low", retries=2, timeout=3600)
def retention() -> dict[str, Any]:
    """Drop day partitions past the retention and compact the rest (scheduled hourly)."""
    return service.run_retention()


@jobs.task("signals.compact", queue="low", retries=0, timeout=1800)
def compact() -> dict[str, Any]:
    """Merge the small sample objects of each day (scheduled every two minutes): a read of
    today opens a handful of objects, not one per remote-write request."""
    return service.compact(sweep=False)


class PullArguments(BaseModel):
    """What a person may ask a pull for: the server must still pass the outbound check."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048)
    match: str = Field(max_length=4096)
    start: str | float = Field(union_mode="left_to_right")
    end: str | float = Field(union_mode="left_to_right")
    step: str | float = "60s"


@jobs.task(
    "signals.pull_prometheus",
    public=True,
    retries=2,
    timeout=3600,
    max_timeout=3600,
    arguments=PullArguments,
)
def pull_prometheus(
    url: str, match: str, start: Any, end: Any, step: Any = "60s"
) -> dict[str, Any]:
    """Copy a window of a Prometheus-compatible server's series (all or nothing)."""
    with session_scope() as session:
        result = service.pull_from_prometheus(
            session=session,
            url=url,
            match=match,
            start=start,
            end=end,
            step=step,
            progress=lambda done, total: jobs.report_progress(done, total),
        )
        return result.as_dict()


@jobs.task("signals.analysis_chunk", retries=2, timeout=1800)
def analysis_chunk(analysis_id: int, index: int) -> dict[str, Any]:
    """Analyse one slice of candidates; reads in a read-only session so chunks run in parallel."""
    jobs.report_progress(0, 1, message=f"analysis {analysis_id} chunk {index}: loading")
    try:
        with session_scope(readonly=True) as session:
            analysis, lo, hi = service.chunk_bounds(
                session=session, analysis_id=analysis_id, index=index
            )
            if analysis.status in ("finished", "failed"):
                return {"analysis_id": analysis_id, "skipped": analysis.status}
            result = service.compute_rows(session=session, analysis=analysis, lo=lo, hi=hi)
    except PopcornError as exc:  # bad input does not get better with retries
        with session_scope() as session:
            service.fail_analysis(session=session, analysis_id=analysis_id, error=exc.message)
        return {"analysis_id": analysis_id, "error": exc.message}
    with session_scope() as session:
        summary = service.save_chunk(
            session=session, analysis_id=analysis_id, index=index, result=result
        )
    top = [
        {"index": f.index, "name": f.name, "verdict": f.verdict, "score": f.score}
        for f in result.top(5)
    ]
    jobs.report_progress(
        int(summary.get("chunks_done", 0)),
        int(summary.get("chunks_total", 1)),
        partial={"analysis_id": analysis_id, "chunk": index, "top": top},
        message=f"analysis {analysis_id}: chunk {index} done",
    )
    return summary


@jobs.task("signals.analysis_merge", retries=3, timeout=600)
def analysis_merge(analysis_id: int) -> dict[str, Any]:
    """Rank and cluster the findings of every chunk; emits signals.analysis.completed."""
    with session_scope() as session:
        analysis = service.merge_analysis(session=session, analysis_id=analysis_id)
        return {"analysis_id": analysis.id, "status": analysis.status}
