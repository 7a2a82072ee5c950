"""The demo's ML part: train the recommendations flow at a small size on the platform's
workers (a real Metaflow run), let it promote itself when it beats popularity, and ask the
API for a member's recommendations from the promoted version. The device lab's part trains
its failure model (the `test-failure` flow) the same way, through `submit` and `wait`. Runs
are submitted as soon as the platform is up and train while the incident plays."""

from __future__ import annotations

import time
from typing import Any

SIZE = {"members": "3000", "titles": "600", "plays": "40000", "iterations": "6"}
FAST = {"members": "1500", "titles": "300", "plays": "20000", "iterations": "4"}
POLL_SECONDS = 0.25  # a run's status is one small read; the story waits for nothing longer


def start(client: Any, *, fast: bool = False) -> dict[str, Any]:
    """Submit the recommendations run; it trains on a worker while the story plays."""
    return submit(client, "recommendations", FAST if fast else SIZE)


def play(client: Any, run: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Wait for the run `start` submitted, then predict; returns what the summary shows."""
    run, promoted = wait(client, run, "recommendations", timeout=max(timeout, 300))
    answer = client.post(
        "/api/v1/ml/models/recommendations/predict", json={"rows": [{"member": 7}]}
    )
    return {
        "run_id": run["id"],
        "pathspec": run["pathspec"],
        "version": answer["version"],
        "evaluation": promoted["evaluation"],
        "member_7": answer["predictions"][0][:5],
    }


def submit(client: Any, flow: str, parameters: dict[str, str]) -> dict[str, Any]:
    """Queue a flow's run on the workers; `wait` follows it."""
    run: dict[str, Any] = client.post(
        "/api/v1/ml/runs", json={"flow": flow, "parameters": parameters}
    )
    return run


def wait(
    client: Any, run: dict[str, Any], flow: str, *, timeout: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Wait for a submitted run to succeed and promote its model (it promotes itself when it
    beats its baseline): (the run, the promoted version)."""
    deadline = time.monotonic() + timeout
    while run["status"] not in ("succeeded", "failed"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"ML run {run['id']} still {run['status']}")
        time.sleep(POLL_SECONDS)
        run = client.get(f"/api/v1/ml/runs/{run['id']}")
    if run["status"] != "succeeded":
        raise RuntimeError(f"ML run {run['id']} failed at {run['failed_step']}: {run['error']}")
    promoted = _promoted(client, flow)  # promoted with the run's success
    if promoted is None or promoted["run_id"] != run["id"]:
        raise RuntimeError(f"ML run {run['id']} ({flow}) was not promoted: {run.get('error')}")
    return run, promoted


def _promoted(client: Any, name: str) -> dict[str, Any] | None:
    from popcorn.client import PopcornAPIError

    try:
        model = client.get(f"/api/v1/ml/models/{name}")
    except PopcornAPIError as error:
        if error.status == 404:
            return None
        raise
    return next((v for v in model["versions"] if v["promoted"]), None)


def describe(found: dict[str, Any]) -> str:
    e = found["evaluation"]
    return (
        f"run {found['run_id']} ({found['pathspec']}): {e['metric']} {e['model']:.3f} vs "
        f"popularity {e['baseline']:.3f}; serving v{found['version']}; member 7 gets "
        f"{', '.join(found['member_7'][:3])}…"
    )
