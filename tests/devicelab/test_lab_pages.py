"""Device lab console pages: the fleet and runs, one run's results, predictions."""

from __future__ import annotations

from typing import Any

from console_kit import Console  # type: ignore[import-not-found]
from lab_kit import FakeAgent, catalog, device


def test_devices_runs_results_and_predictions_pages(
    app: Any, api: Any, tokens: dict[str, str]
) -> None:
    api.post("/api/v1/devicelab/tests", json={"tests": catalog()}, role="operator")
    agent = FakeAgent(api, device("tv-1", "tv-a", hdr=["dolby_vision"]))
    body = {
        "build": {"app_version": "9.9", "change": "CL-7<b>", "branch": "f", "components": ["hdr"]},
        "query": "name:playback.hdr",
    }
    run = api.post("/api/v1/devicelab/runs", json=body, role="operator").json
    item = agent.poll()["assignments"][0]
    agent.result(item["execution"], "failed", "assertion")
    console = Console(app.test_client(), tokens["viewer"])
    index = console.page("/ui/devicelab")
    assert "tv-1" in index and "Device lab" in index
    assert f"/ui/devicelab/runs/{run['id']}" in index
    detail = console.page(f"/ui/devicelab/runs/{run['id']}")
    assert "CL-7&lt;b&gt;" in detail and "playback.hdr" in detail and "change" in detail
    assert "JUnit XML" in detail
    predictions = console.page("/ui/devicelab/predictions")
    assert "no promoted test-failure model" in predictions  # ML has trained none yet
    console.page("/ui/devicelab/runs/999", status=404)
