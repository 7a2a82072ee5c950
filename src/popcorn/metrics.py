"""Prometheus metrics: request counts and latencies by route, jobs by queue and state.

Under Gunicorn each worker is a process, so when PROMETHEUS_MULTIPROC_DIR is
set (`popcorn serve` sets it) the figures of all workers are merged at scrape.
Collectors that read the database run at scrape time, never per request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("popcorn.metrics")

REQUESTS = Counter("popcorn_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "popcorn_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Domains add scrape-time collectors: callables yielding metric families.
SCRAPE_COLLECTORS: list[Callable[[], Iterator[Any]]] = []
# ... and their own counters and histograms, shown as they are in a single process (merged
# across processes from PROMETHEUS_MULTIPROC_DIR otherwise).
PROCESS_METRICS: list[Any] = [REQUESTS, LATENCY]


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def _jobs() -> Iterator[Any]:
    from sqlalchemy import func, select

    from popcorn.db import session_scope
    from popcorn.jobs import JobRecord

    family = GaugeMetricFamily("popcorn_jobs", "Jobs by queue and state", labels=["queue", "state"])
    with session_scope(readonly=True) as session:
        rows = session.execute(
            select(JobRecord.queue, JobRecord.status, func.count()).group_by(
                JobRecord.queue, JobRecord.status
            )
        )
        for queue, state, count in rows:
            family.add_metric([queue, state], count)
    yield family


SCRAPE_COLLECTORS.append(_jobs)


class _ScrapeCollector:
    def collect(self) -> Iterator[Any]:
        for collector in SCRAPE_COLLECTORS:
            try:
                yield from collector()
            except Exception:
                log.warning("metrics collector %s failed", collector, exc_info=True)


def render() -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for collector in PROCESS_METRICS:
            registry.register(collector)
    registry.register(_ScrapeCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
