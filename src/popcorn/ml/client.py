"""`client.ml`: flows, runs, schedules, the model registry and predictions over the API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from popcorn.client import Section, section

DONE = {"succeeded", "failed"}


@section("ml")
class Ml(Section):
    prefix = "ml"

    def flows(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.get(self.path("/flows"))["items"]
        return result

    def runs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return self.client.paginate(self.path("/runs"), **filters)

    def run(
        self,
        flow: str,
        parameters: dict[str, Any] | None = None,
        *,
        decorators: list[str] | None = None,
        auto_promote: bool = True,
        wait: bool = False,
        timeout: float = 3600.0,
    ) -> dict[str, Any]:
        """Start a run on the workers (parameters as on the command line); with `wait`,
        return it once it has succeeded or failed."""
        body = {
            "flow": flow,
            "parameters": {k: str(v) for k, v in (parameters or {}).items()},
            "decorators": decorators or [],
            "auto_promote": auto_promote,
        }
        started: dict[str, Any] = self.client.post(self.path("/runs"), body)
        return self.wait(started["id"], timeout=timeout) if wait else started

    def get_run(self, run_id: int) -> dict[str, Any]:
        """A run with Metaflow's steps, artifacts, cards and its failure, if any."""
        result: dict[str, Any] = self.client.get(self.path(f"/runs/{run_id}"))
        return result

    def wait(self, run_id: int, *, timeout: float = 3600.0, every: float = 1.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.get_run(run_id)
            if found["status"] in DONE:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"ML run {run_id} still {found['status']} after {timeout}s")
            time.sleep(every)

    def cancel(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path(f"/runs/{run_id}/cancel"))
        return result

    def resume(self, run_id: int) -> dict[str, Any]:
        """A new run that resumes a failed one with Metaflow's `resume`."""
        result: dict[str, Any] = self.client.post(self.path(f"/runs/{run_id}/resume"))
        return result

    def log(self, run_id: int) -> str:
        data = self.client.get(self.path(f"/runs/{run_id}/log"))
        return data.decode() if isinstance(data, bytes) else str(data or "")

    def card(self, run_id: int, step: str) -> str:
        """A step's card as static HTML (no scripts)."""
        data = self.client.get(self.path(f"/runs/{run_id}/cards/{step}"))
        return data.decode() if isinstance(data, bytes) else str(data or "")

    def schedules(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.get(self.path("/schedules"))["items"]
        return result

    def schedule(
        self,
        name: str,
        flow: str,
        *,
        cron: str | None = None,
        interval_seconds: int | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "flow": flow,
            "cron": cron,
            "interval_seconds": interval_seconds,
            "parameters": {k: str(v) for k, v in (parameters or {}).items()},
        }
        result: dict[str, Any] = self.client.post(self.path("/schedules"), body)
        return result

    def unschedule(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.delete(self.path(f"/schedules/{name}"))
        return result

    def models(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.client.get(self.path("/models"))["items"]
        return result

    def model(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client.get(self.path(f"/models/{name}"))
        return result

    def promote(self, run_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path("/models/promote"), {"run": run_id})
        return result

    def rollback(self, name: str, *, to: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post(self.path(f"/models/{name}/rollback"), {"to": to})
        return result

    def predict(self, name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """`{"model", "version", "predictions"}` from the promoted version."""
        result: dict[str, Any] = self.client.post(
            self.path(f"/models/{name}/predict"), {"rows": rows}
        )
        return result
