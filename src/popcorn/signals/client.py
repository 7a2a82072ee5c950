"""`client.signals`: ingest, query and alert analysis over the network."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from popcorn.client import Section, section


@section("signals")
class SignalsSection(Section):
    prefix = "signals"

    def ingest(self, series: list[dict[str, Any]]) -> dict[str, Any]:
        """Store `[{"metric", "labels", "timestamps", "values"}]`, all or nothing."""
        result: dict[str, Any] = self.client.post(self.path("/ingest"), {"series": series})
        return result

    def ingest_prometheus(self, text: str, *, time_: float | None = None) -> dict[str, Any]:
        """Store Prometheus exposition text; samples without a timestamp get `time_` or now."""
        params = {"time": time_} if time_ is not None else None
        result: dict[str, Any] = self.client.request(
            "POST",
            self.path("/ingest"),
            content=text.encode(),
            headers={"Content-Type": "text/plain; version=0.0.4"},
            params=params,
        )
        return result

    def series(self, match: str | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/series"), match=match, **filters)

    def query(
        self,
        selector: str,
        start: Any = "now-1h",
        end: Any = "now",
        step: Any = None,
        agg: str = "mean",
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(
            self.path("/query"), query=selector, start=start, end=end, step=step, agg=agg
        )
        return result

    def analyze(self, alert_time: Any, **params: Any) -> dict[str, Any]:
        """Start an analysis (see POST /api/v1/signals/analyses for the parameters)."""
        result: dict[str, Any] = self.client.post(
            self.path("/analyses"), {"alert_time": alert_time, **params}
        )
        return result

    def analysis(self, analysis_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/analyses/{analysis_id}"))
        return result

    def wait_for_analysis(self, analysis_id: int, *, timeout: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.analysis(analysis_id)
            if data["status"] in ("finished", "failed"):
                return data
            if time.monotonic() > deadline:
                raise TimeoutError(f"analysis {analysis_id} still {data['status']}")
            time.sleep(0.5)

    def plot(self, analysis_id: int, series_id: int) -> bytes:
        data: bytes = self.client.get(self.path(f"/analyses/{analysis_id}/plot/{series_id}.png"))
        return data
