"""An alert analysis spread over workers: the same ranking on one and on two worker processes.

A generated incident of N signals x 1,440 samples (one day at one minute; three planted
culprits with followers) is ingested once, then ranked around its alert three ways, each
from the shared store:

- in one process, no jobs (`analyze_alert(inline=True)`): what one machine does alone;
- as chunk jobs (`--chunk-size` signals each, plus the merge job) on one `popcorn worker`;
- the same jobs on two `popcorn worker` processes.

Each worker is a separate process with its own POPCORN_HOME, as on its own machine; they
share PostgreSQL (a fresh schema of `--database-url`), Redis (`--redis-url`, flushed) and an
S3 object store (a moto server started here). Wall time runs from the analysis request to
its finished ranking; the three rankings are compared. The machine is a shared 2-core VM:
the load average is recorded, and two workers can only go faster where a core is free.

    .venv/bin/python benchmarks/bench_signals_sharded.py --signals 100000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench --redis-url redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from common import LoadWatch, drop_schema, fresh_schema, git_revision, machine, write_result

BLOCK = 5_000  # signals generated at a time (a 100,000-signal day does not fit in memory twice)
WINDOW_MINUTES = 1_410
AFTER_MINUTES = 30


def store(keys: list[Any], values: np.ndarray, timestamps: np.ndarray) -> None:
    from popcorn.db import session_scope
    from popcorn.signals import service
    from popcorn.signals.ingest import Batch

    rows, at = np.nonzero(np.isfinite(values))
    batch = Batch(keys, rows.astype(np.int64), timestamps[at] * 1000, values[rows, at])
    with session_scope() as session:
        service.ingest_batch(session=session, batch=batch, source="bench")


def ingest(n_signals: int) -> int:
    """Store the incident, generated a block at a time on one timeline; returns its alert."""
    from popcorn.signals.generate import generate_incident
    from popcorn.signals.ingest import series_key

    timestamps: np.ndarray | None = None
    alert_time = 0
    for block, lo in enumerate(range(0, n_signals, BLOCK)):
        size = min(BLOCK, n_signals - lo)
        inc = generate_incident(max(size, 30), 1_440, seed=block)
        if timestamps is None:
            timestamps, alert_time = inc.timestamps, inc.alert_time
            trigger = series_key("play_errors_rate", {}, "bench")
            store([trigger], inc.trigger[None, :], timestamps)
        keys = [
            series_key(
                name.split(".", 1)[1].split("#")[0],
                {"service": name.split(".", 1)[0], "signal": str(lo + i)},
                "bench",
            )
            for i, name in enumerate(inc.names[:size])
        ]
        store(keys, inc.values[:size], timestamps)
    return alert_time


def request(alert_time: int, *, inline: bool, chunk_size: int | None = None) -> int:
    from popcorn.signals import service

    analysis = service.analyze_alert(
        alert_time=alert_time,
        trigger="play_errors_rate",
        selector='{service=~".+"}',
        window_minutes=WINDOW_MINUTES,
        after_minutes=AFTER_MINUTES,
        inline=inline,
        chunk_size=chunk_size,
    )
    return analysis.id


def finished(analysis_id: int) -> dict[str, Any] | None:
    from popcorn.db import session_scope
    from popcorn.signals import service

    with session_scope(readonly=True) as session:
        analysis = service.get_analysis(session=session, analysis_id=analysis_id)
        failure = service.job_failure(session=session, analysis=analysis)
        if failure:
            raise SystemExit(f"analysis {analysis_id} failed: {failure}")
        if analysis.status == "failed":
            raise SystemExit(f"analysis {analysis_id} failed: {analysis.error}")
        if analysis.status != "finished":
            return None
        return service.analysis_dict(analysis)


def ranking(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (f["series_id"], f["verdict"], f["score"], f["change_time"])
        for f in data["result"]["findings"]
    ]


def on_workers(
    count: int, env: dict[str, str], base: Path, alert_time: int, chunk_size: int
) -> tuple[float, dict[str, Any]]:
    """Rank as chunk jobs on `count` worker processes, each with its own home."""
    from rq import Worker

    from popcorn.jobs import get_redis

    procs = []
    logs = []
    try:
        for i in range(count):
            home = base / f"worker-{count}-{i}"
            home.mkdir(parents=True)
            log = home / "worker.log"
            logs.append(str(log))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "popcorn", "worker", "--no-fork"],
                    env={**env, "POPCORN_HOME": str(home)},
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 300
        while Worker.count(connection=get_redis()) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit(f"workers did not start; see {logs}")
            time.sleep(0.2)
        started = time.perf_counter()
        analysis_id = request(alert_time, inline=False, chunk_size=chunk_size)
        while (data := finished(analysis_id)) is None:
            time.sleep(0.05)
        return time.perf_counter() - started, data
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=16_000)
    parser.add_argument("--chunk-size", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=2, help="Runs of each; the best counts.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("POPCORN_BENCH_DATABASE_URL", ""),
        help="PostgreSQL; a fresh schema is made in it and dropped after.",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("POPCORN_BENCH_REDIS_URL", ""),
        help="A Redis database this benchmark may flush.",
    )
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql") or not args.redis_url:
        parser.error("--database-url (PostgreSQL) and --redis-url are required")
    watch = LoadWatch()
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    database_url = fresh_schema(args.database_url)
    base = Path(tempfile.mkdtemp(prefix="popcorn-bench-sharded-"))
    env = {
        **os.environ,
        "POPCORN_DATABASE_URL": database_url,
        "POPCORN_REDIS_URL": args.redis_url,
        "POPCORN_SECRET_KEY": uuid.uuid4().hex,
        "POPCORN_STORAGE_URL": "s3://popcorn-bench/objects",
        "POPCORN_STORAGE_ENDPOINT_URL": f"http://{host}:{port}",
        "POPCORN_OUTBOUND_ALLOW": "127.0.0.0/8",
        "POPCORN_LOG_LEVEL": "WARNING",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POPCORN_HOME": str(base / "api"),
    }
    os.environ.update(env)
    import boto3

    from popcorn.config import reset_settings
    from popcorn.db import dispose_engines, upgrade
    from popcorn.jobs import get_redis

    reset_settings()
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        s3.create_bucket(Bucket="popcorn-bench")
        upgrade()
        get_redis().flushdb()
        t0 = time.perf_counter()
        alert_time = ingest(args.signals)
        ingest_s = time.perf_counter() - t0
        print(f"ingested {args.signals} signals in {ingest_s:.1f} s", flush=True)

        runs: dict[str, list[float]] = {"inline": [], "one": [], "two": []}
        rankings = []
        for attempt in range(args.repeat):  # interleaved, so that no setup has the warm cache
            t0 = time.perf_counter()
            inline = finished(request(alert_time, inline=True))
            runs["inline"].append(time.perf_counter() - t0)
            assert inline is not None
            one_s, one = on_workers(1, env, base / f"run{attempt}", alert_time, args.chunk_size)
            runs["one"].append(one_s)
            two_s, two = on_workers(2, env, base / f"run{attempt}", alert_time, args.chunk_size)
            runs["two"].append(two_s)
            rankings += [ranking(inline), ranking(one), ranking(two)]
            print({k: f"{v[-1]:.1f} s" for k, v in runs.items()}, flush=True)
        inline_s, one_s, two_s = (min(runs[k]) for k in ("inline", "one", "two"))
        same = all(r == rankings[0] for r in rankings)
        watch.stop()
        chunks = two["chunks_total"]
    finally:
        dispose_engines()
        drop_schema(database_url)
        moto.stop()
        shutil.rmtree(base, ignore_errors=True)
    n = args.signals

    def row(label: str, seconds: float, note: str) -> str:
        return f"| {label} | {seconds:.1f} s | {n / seconds:,.0f} | {note} |"

    lines = [
        "## Signals: alert analysis spread over workers",
        "",
        f"Incident: {n:,} signals x 1,440 samples (one day at 1 min), ranked around its alert "
        f"from the shared store. Jobs: {chunks} chunks of {args.chunk_size:,} signals plus a "
        "merge job. Each worker is its own process with its own POPCORN_HOME; all share "
        f"PostgreSQL, Redis and an S3 store (moto). Best of {args.repeat} runs each.",
        "",
        "| how | wall (request to ranking) | signals/s | vs one worker |",
        "|---|---:|---:|---:|",
        row("one process, no jobs (`--inline`)", inline_s, f"{one_s / inline_s:.2f}x"),
        row("chunk jobs on 1 worker", one_s, "1.00x"),
        row("chunk jobs on 2 workers", two_s, f"{one_s / two_s:.2f}x"),
        "",
        f"- the three rankings are identical: {'yes' if same else 'NO'}",
        f"- ingest of the {n * 1440:,} samples beforehand: {ingest_s:.1f} s",
        f"- machine: {machine()}; {watch.note()}; revision {git_revision()}",
    ]
    path = write_result("signals-sharded", "\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
