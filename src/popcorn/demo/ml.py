"""The demo's ML part: train the recommendations flow at a small size on the platform's
workers (a real Metaflow run), let it promote itself when it beats popularity, and ask the
API for a member's recommendations from the promoted version."""

from __future__ import annotations

import time
from typing import Any

SIZE = {"members": "3000", "titles": "600", "plays": "40000", "iterations": "6"}
FAST = {"members": "1500", "titles": "300", "plays": "20000", "iterations": "4"}


def play(client: Any, *, timeout: float, fast: bool = False) -> dict[str, Any]:
    """Run, wait, predict; returns what the summary shows (ids for its links)."""
    size = FAST if fast else SIZE
    run = client.post("/api/v1/ml/runs", json={"flow": "recommendations", "parameters": size})
    deadline = time.monotonic() + max(timeout, 300)
    while run["status"] not in ("succeeded", "failed"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"ML run {run['id']} still {run['status']}")
        time.sleep(1.0)
        run = client.get(f"/api/v1/ml/runs/{run['id']}")
    if run["status"] != "succeeded":
        raise RuntimeError(f"ML run {run['id']} failed at {run['failed_step']}: {run['error']}")
    promoted = _promoted(client, "recommendations")  # promoted with the run's success
    if promoted is None:
        raise RuntimeError(f"ML run {run['id']} was not promoted: {run.get('error')}")
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
