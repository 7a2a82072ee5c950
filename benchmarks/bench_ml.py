"""ML benchmark: recommender training, serving through the API, and Metaflow's overhead.

1. Training: ALS (`popcorn.ml.recommend`) on a generated viewing log with planted taste
   clusters and a popularity skew; wall time and peak memory (tracemalloc: numpy reports
   to it), recall@20 and NDCG@20 on a 7-day time split beside the popularity baseline.
2. Serving: `POST /api/v1/ml/models/recommendations/predict` (one member per request) on
   `popcorn serve` (Gunicorn, one worker) over loopback HTTP, requests per second and
   p50/p99, beside calling the same promoted model in-process (`Recommender.predict`).
3. Metaflow's overhead: `popcorn ml run recommendations --here` (Metaflow local runtime,
   datastore under the home, artifacts persisted, card rendered) beside the same functions
   run as a plain Python script, both as fresh processes, same size.

Run: .venv/bin/python benchmarks/bench_ml.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import git_revision, machine, write_result

PYTHON = sys.executable
FLOW_SIZE = {"members": 20000, "titles": 2000, "plays": 200000, "factors": 16, "iterations": 8}


def plain(size: dict[str, int]) -> dict[str, Any]:
    """What the recommendations flow computes, as a plain script (no Metaflow)."""
    import numpy as np

    from popcorn.ml import recommend

    log = recommend.generate_log(
        members=size["members"], titles=size["titles"], plays=size["plays"], seed=7
    )
    train, test = recommend.split_by_time(log, test_days=7)
    users, items = recommend.train_als(
        train, factors=size["factors"], iterations=size["iterations"]
    )
    model = recommend.evaluate(train, test, user_factors=users, item_factors=items)
    base = recommend.evaluate(train, test, user_factors=None, item_factors=None)
    popularity = np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float32)
    demand = recommend.regional_demand(log, users, items)
    recommend.Recommender(users, items, train, popularity, demand)
    return {"model": model["recall@20"], "baseline": base["recall@20"]}


def training(members: int, titles: int, plays: int, iterations: int) -> dict[str, Any]:
    from popcorn.ml import recommend

    log = recommend.generate_log(members=members, titles=titles, plays=plays, seed=7)
    train, test = recommend.split_by_time(log, test_days=7)
    tracemalloc.start()
    began = time.perf_counter()
    users, items = recommend.train_als(train, factors=16, iterations=iterations)
    seconds = time.perf_counter() - began
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    began = time.perf_counter()
    model = recommend.evaluate(train, test, user_factors=users, item_factors=items)
    base = recommend.evaluate(train, test, user_factors=None, item_factors=None)
    return {
        "members": members,
        "titles": titles,
        "plays": plays,
        "train_plays": int(train.nnz),
        "iterations": iterations,
        "seconds": seconds,
        "peak_mib": peak,
        "eval_seconds": time.perf_counter() - began,
        "model": model,
        "baseline": base,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def popcorn(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "popcorn", *args], env=env, capture_output=True, text=True, check=True
    )


def serving(env: dict[str, str], requests: int) -> dict[str, Any]:
    import httpx

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "support"))
    from popcorn_testing import free_port

    token = popcorn(env, "token", "create", "--name", "bench", "--role", "operator").stdout.split()[
        0
    ]
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "-m", "popcorn", "serve", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api/v1/ml/models/recommendations/predict"
    try:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("popcorn serve did not start")
                time.sleep(0.2)
            for member in range(50):  # warm: the worker loads the model once
                client.post(url, json={"rows": [{"member": member}]}).raise_for_status()
            latencies = []
            began = time.perf_counter()
            for i in range(requests):
                t0 = time.perf_counter()
                answer = client.post(url, json={"rows": [{"member": i % 1000}]})
                latencies.append(time.perf_counter() - t0)
                answer.raise_for_status()
            wall = time.perf_counter() - began
            version = answer.json()["version"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "rps": requests / wall,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "version": version,
    }


def in_process(env: dict[str, str], requests: int) -> dict[str, Any]:
    code = (
        "import json, time, sys\n"
        "from popcorn.db import session_scope\n"
        "from popcorn.ml import registry\n"
        "with session_scope(readonly=True) as s:\n"
        "    model = registry.load_promoted(session=s, name='recommendations')\n"
        "lat = []\n"
        f"for i in range({requests}):\n"
        "    t0 = time.perf_counter(); model.predict([{'member': i % 1000}])\n"
        "    lat.append(time.perf_counter() - t0)\n"
        "print(json.dumps(lat))\n"
    )
    latencies = json.loads(
        subprocess.run(
            [PYTHON, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout
    )
    return {
        "rps": len(latencies) / sum(latencies),
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes throughout")
    parser.add_argument("--plain", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.plain:
        print(json.dumps(plain(json.loads(options.plain))))
        return
    flow_size = dict(FLOW_SIZE)
    train_size = (100_000, 10_000, 1_000_000, 8)
    requests = 2000
    if options.quick:
        flow_size.update(members=3000, titles=500, plays=30000, iterations=4)
        train_size = (10_000, 2_000, 100_000, 4)
        requests = 300

    trained = training(*train_size)
    home = Path(tempfile.mkdtemp(prefix="popcorn-bench-ml-"))
    env = {**os.environ, "POPCORN_HOME": str(home), "POPCORN_LOG_LEVEL": "WARNING"}
    env.pop("POPCORN_DATABASE_URL", None)
    popcorn(env, "db", "upgrade")
    began = time.perf_counter()
    subprocess.run(
        [PYTHON, __file__, "--plain", json.dumps(flow_size)],
        env=env,
        check=True,
        capture_output=True,
    )
    t_plain = time.perf_counter() - began
    params = [a for k, v in flow_size.items() for a in ("--param", f"{k}={v}")]
    began = time.perf_counter()
    popcorn(env, "ml", "run", "recommendations", "--here", *params)
    t_flow = time.perf_counter() - began
    served = serving(env, requests)
    local = in_process(env, requests)
    load = os.getloadavg()

    m, b = trained["model"], trained["baseline"]
    text = f"""## ML: recommender training, serving, Metaflow's overhead

Machine: {machine()}; revision {git_revision()}; load average during the run {load[0]:.1f}.

### Training (ALS, 16 factors, {trained["iterations"]} iterations)

{trained["members"]:,} members x {trained["titles"]:,} titles, {trained["plays"]:,} plays
generated ({trained["train_plays"]:,} member-title pairs in the training weeks), 8 taste
clusters, Zipf popularity; test on the last 7 days.

| model | train time | peak memory (tracemalloc) | recall@20 | NDCG@20 |
|---|---:|---:|---:|---:|
| ALS matrix factorisation | {trained["seconds"]:.1f} s | {trained["peak_mib"]:.0f} MiB | {m["recall@20"]:.4f} | {m["ndcg@20"]:.4f} |
| popularity baseline | - | - | {b["recall@20"]:.4f} | {b["ndcg@20"]:.4f} |

recall@20 ratio ALS / popularity: {m["recall@20"] / b["recall@20"]:.2f}x over {int(m["members"]):,} sampled test members (evaluation {trained["eval_seconds"]:.1f} s).

### Serving (one member per request, {requests:,} sequential requests)

| path | requests/s | p50 | p99 |
|---|---:|---:|---:|
| API: `popcorn serve` (Gunicorn, 1 worker), loopback HTTP, token auth, schema check | {served["rps"]:.0f} | {served["p50"] * 1000:.2f} ms | {served["p99"] * 1000:.2f} ms |
| in-process `Recommender.predict` | {local["rps"]:.0f} | {local["p50"] * 1000:.3f} ms | {local["p99"] * 1000:.3f} ms |

The API serves version {served["version"]} and costs {served["p50"] / local["p50"]:.0f}x the in-process call at the median (HTTP, auth, a database read of the promoted version, JSON).

### Metaflow's overhead ({flow_size["members"]:,} members, {flow_size["titles"]:,} titles, {flow_size["plays"]:,} plays)

| run | wall time |
|---|---:|
| `popcorn ml run recommendations --here` (Metaflow local runtime, 4 steps, artifacts persisted, card) | {t_flow:.1f} s |
| the same functions as a plain script | {t_plain:.1f} s |

Overhead: {t_flow - t_plain:.1f} s ({t_flow / t_plain:.2f}x).
"""  # noqa: E501
    print(text)
    write_result("ml", text)


if __name__ == "__main__":
    main()
