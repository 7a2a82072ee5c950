"""API shapes of the signals domain (large sample payloads are validated in ingest.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from popcorn.schemas import Schema


class SeriesRead(BaseModel):
    id: int
    name: str = Field(description='The series as `metric{label="value",...}`.')
    metric: str
    labels: dict[str, str]
    fingerprint: str = Field(description="Stable 64-bit hash of metric and labels, in hex.")
    site: str | None
    device: str | None
    first_time: str
    last_time: str
    sample_count: int


class SeriesPage(BaseModel):
    items: list[SeriesRead]
    count: int | None = None
    next: str | None = None


class IngestRead(BaseModel):
    batch_id: str
    samples: int = Field(description="Samples stored (after dropping repeated timestamps).")
    series: int
    new_series: int
    duplicates: int = Field(description="Repeated timestamps in the batch; the last one won.")
    skipped: int = Field(
        description="Non-finite samples (NaN, ±Inf) left out: Prometheus text and pulls."
    )
    replaced: int = Field(
        default=0, description="Samples at an already stored timestamp; the new value won."
    )
    files: int
    first_time: str | None
    last_time: str | None


class RetentionUpdate(Schema):
    retention_days: int = Field(ge=1, le=3650, description="Keep samples this many days.")


class SettingsRead(BaseModel):
    retention_days: int


class StatsRead(BaseModel):
    series: int
    samples: int
    bytes: int
    partitions: int
    oldest_day: str | None
    newest_day: str | None
    retention_days: int


class AnalysisCreate(Schema):
    alert_time: str | float = Field(description="Unix seconds, RFC 3339 or now-10m.")
    trigger: int | str | None = Field(
        default=None, description="The alerting signal: a series id or a one-series selector."
    )
    selector: str | None = Field(
        default=None, description='Candidate signals, e.g. `{site="ams1"}`.'
    )
    scope: dict[str, str | list[str]] | None = Field(
        default=None,
        description='Inventory scope as label values, e.g. {"site": "ams1"}: candidates '
        "without a selector, proximity weights with one.",
    )
    window_minutes: int = Field(default=120, ge=5, le=20160)
    after_minutes: int = Field(default=15, ge=0, le=1440)
    step: str | int | None = Field(default=None, description="Grid step, e.g. 60s (default).")
    options: dict[str, Any] | None = Field(default=None, description="Ranking options.")
    inline: bool | None = Field(
        default=None,
        description="true: analyse now; false: as jobs; unset: now up to 500 signals.",
    )
    chunk_size: int | None = Field(
        default=None,
        ge=10,
        le=1_000_000_000,
        description="Signals per job when run as jobs (default: the signals_chunk_size setting).",
    )


class AnalysisBrief(BaseModel):
    """An analysis in a list: everything but its (large) partial and final results."""

    id: int
    status: str = Field(description="queued, running, finished or failed")
    alert_time: str
    trigger: str | None
    selector: str | None
    scope: dict[str, Any]
    window_minutes: int
    step_seconds: int
    signal_count: int
    chunks_total: int
    chunks_done: int
    error: str
    created_by: str
    created_at: str
    finished_at: str | None


class AnalysisRead(AnalysisBrief):
    """An analysis with its results (partial while it runs)."""

    partial: dict[str, Any] | None = Field(
        default=None, description="Best findings of the chunks done so far (while running)."
    )
    result: dict[str, Any] | None = Field(
        default=None, description="Ranked findings, clusters and verdict counts."
    )


class QuerySeries(BaseModel):
    id: int
    name: str
    metric: str
    labels: dict[str, str]
    timestamps: list[float]
    values: list[float | None] = Field(description="null where a resampled cell is empty.")


class QueryRead(BaseModel):
    start: str
    end: str
    step: float | None
    agg: str
    series: list[QuerySeries]


class JobAccepted(BaseModel):
    job_id: int
    status: str


class AnalysisPage(BaseModel):
    items: list[AnalysisBrief]
    count: int | None = None
    next: str | None = None
