"""Signals ingest: samples per second into Popcorn's store, against one SQL row per sample.

Popcorn writes samples to day-partitioned Parquet (zstd, sorted by series and time) and
keeps one metadata row per series. Measured, end to end with the commit:

- a long-format Parquet file (`popcorn signals ingest file.parquet`),
- JSON batches as the API receives them (`json.loads` of the body, validation, storage),
  once through the service and once through the Flask app (HTTP framing without sockets),
- Prometheus remote write: the same samples as Prometheus sends them (WriteRequests of
  2,000 one-sample series, its default `max_samples_per_send`, snappy-compressed, one
  sender after the other as one queue shard does), through the Flask app and over real
  HTTP to `popcorn serve` (Gunicorn, one worker),
- reading it back: one hour of every series resampled to one minute.

Baseline, in the same run: what a naive store does, one SQLite row per sample
(`executemany` into a table keyed by (series_id, ts), WAL, one transaction).

Run: .venv/bin/python benchmarks/bench_signals_ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from common import LoadWatch, best, git_revision, machine, write_result

T0 = 1_772_409_600  # 2026-03-02T00:00:00Z


def main() -> None:
    watch = LoadWatch()
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="100k samples instead of 1M")
    args = parser.parse_args()
    n_series, per_series = (100, 1000) if args.quick else (1000, 1000)
    total = n_series * per_series
    runs = 3

    home = Path(tempfile.mkdtemp(prefix="popcorn-bench-signals-"))
    os.environ["POPCORN_HOME"] = str(home)
    os.environ.pop("POPCORN_DATABASE_URL", None)
    from popcorn.config import reset_settings

    reset_settings()
    from sqlalchemy import delete

    from popcorn.app import create_app
    from popcorn.audit import AuditRecord
    from popcorn.auth import create_token
    from popcorn.db import session_scope, upgrade
    from popcorn.signals import service, store
    from popcorn.signals.models import SampleFile, Series

    upgrade()
    rng = np.random.default_rng(0)
    ts = T0 + 15 * np.arange(per_series)  # 15 s scrapes, about four hours
    values = rng.normal(100, 5, (n_series, per_series)).round(3)

    def reset() -> None:
        shutil.rmtree(store.root(), ignore_errors=True)
        with session_scope() as session:
            session.execute(delete(Series))
            session.execute(delete(SampleFile))
            session.execute(delete(AuditRecord))

    # --- Parquet file ---------------------------------------------------------------
    table = pa.table(
        {
            "metric": pa.array(["edge_rps"] * total).dictionary_encode(),
            "host": pa.array([f"oc-{i:04d}" for i in range(n_series)]).take(
                pa.array(np.repeat(np.arange(n_series), per_series))
            ),
            "timestamp": np.tile(ts, n_series),
            "value": values.reshape(-1),
        }
    )
    parquet_path = home / "input.parquet"
    pq.write_table(table, parquet_path)

    def ingest_parquet() -> None:
        with session_scope() as session:
            result = service.ingest_file(session=session, path=parquet_path)
        assert result.samples == total

    parquet_s = best(runs, ingest_parquet, reset)
    with session_scope(readonly=True) as session:
        stored_bytes = store.bytes_used(session)

    # --- JSON batches (service) -------------------------------------------------------
    batch_series = 100
    bodies = []
    for lo in range(0, n_series, batch_series):
        bodies.append(
            json.dumps(
                {
                    "series": [
                        {
                            "metric": "edge_rps",
                            "labels": {"host": f"oc-{i:04d}"},
                            "timestamps": ts.tolist(),
                            "values": values[i].tolist(),
                        }
                        for i in range(lo, min(lo + batch_series, n_series))
                    ]
                }
            ).encode()
        )
    json_mb = sum(len(b) for b in bodies) / 2**20

    def ingest_json() -> None:
        for body in bodies:
            with session_scope() as session:
                service.ingest_json(session=session, payload=json.loads(body))

    json_s = best(runs, ingest_json, reset)

    # --- JSON batches (Flask app) -----------------------------------------------------
    app = create_app()
    client = app.test_client()
    with session_scope() as session:
        _, token = create_token(session=session, name="bench", role="operator")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def ingest_http() -> None:
        for body in bodies:
            res = client.post("/api/v1/signals/ingest", data=body, headers=headers)
            assert res.status_code == 201, res.json

    http_s = best(runs, ingest_http, reset)

    # --- Prometheus remote write ----------------------------------------------------------
    rw_bodies = remote_write_bodies(ts, values)
    rw_mb = sum(len(b) for b in rw_bodies) / 2**20
    rw_headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }

    def remote_write_app() -> None:
        for body in rw_bodies:
            res = client.post("/api/v1/signals/write", data=body, headers=rw_headers)
            assert res.status_code == 204, res.json

    rw_app_s = best(runs, remote_write_app, reset)

    with gunicorn(home) as http:

        def remote_write_socket() -> None:
            for body in rw_bodies:
                res = http.post("/api/v1/signals/write", content=body, headers=rw_headers)
                assert res.status_code == 204, res.text

        rw_http_s = best(runs, remote_write_socket, reset)
    rw_requests = len(rw_bodies)

    # --- read back ----------------------------------------------------------------------
    def read() -> None:
        with session_scope(readonly=True) as session:
            got = service.query(
                session=session, selector="edge_rps", start=T0, end=T0 + 3600, step="60s"
            )
        assert len(got.series) == n_series

    read_s = best(runs, read, lambda: None)
    read_samples = n_series * min(per_series, 3600 // 15)

    # --- baseline: one SQLite row per sample -------------------------------------------
    db_path = home / "naive.db"
    rows = [
        (int(s), int(t), float(v))
        for s in range(n_series)
        for t, v in zip(ts, values[s], strict=True)
    ]

    def naive_reset() -> None:
        db_path.unlink(missing_ok=True)
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE samples (series_id INTEGER, ts INTEGER, value REAL, "
            "PRIMARY KEY (series_id, ts))"
        )
        conn.commit()
        conn.close()

    def naive() -> None:
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA synchronous=NORMAL")
        with conn:
            conn.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?)", rows)
        conn.close()

    naive_s = best(runs, naive, naive_reset)
    naive_bytes = db_path.stat().st_size + sum(
        p.stat().st_size for p in home.glob("naive.db-*") if p.exists()
    )

    def rate(seconds: float, n: int = total) -> str:
        return f"{n / seconds / 1e6:.2f} M/s" if n / seconds >= 1e5 else f"{n / seconds:,.0f}/s"

    def versus(seconds: float) -> str:
        ratio = naive_s / seconds
        return f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"

    lines = [
        "## Signals ingest (samples per second)",
        "",
        f"{total:,} samples: {n_series} series x {per_series} samples (15 s apart), float "
        f"values with 3 decimals. Best of {runs} runs, each into an empty store, measured "
        "end to end including the database commit.",
        "",
        "| path | time | samples/s | vs one SQL row per sample |",
        "|---|---:|---:|---:|",
        f"| Popcorn, Parquet file (`signals ingest x.parquet`) | {parquet_s:.2f} s | "
        f"{rate(parquet_s)} | {versus(parquet_s)} |",
        f"| Popcorn, JSON batches of {batch_series * per_series:,} samples, service "
        f"(incl. `json.loads`) | {json_s:.2f} s | {rate(json_s)} | "
        f"{versus(json_s)} |",
        f"| Popcorn, same JSON batches through the Flask app ({json_mb:.0f} MiB of bodies) | "
        f"{http_s:.2f} s | {rate(http_s)} | {versus(http_s)} |",
        f"| Popcorn, Prometheus remote write, {rw_requests} WriteRequests of "
        f"{total // rw_requests:,} samples through the Flask app ({rw_mb:.0f} MiB snappy) | "
        f"{rw_app_s:.2f} s | {rate(rw_app_s)} | {versus(rw_app_s)} |",
        f"| Popcorn, same WriteRequests over HTTP to `popcorn serve` (1 worker, 1 sender) | "
        f"{rw_http_s:.2f} s | {rate(rw_http_s)} | {versus(rw_http_s)} |",
        f"| baseline: SQLite `executemany`, one row per sample, keyed (series, ts) | "
        f"{naive_s:.2f} s | {rate(naive_s)} | 1.0x |",
        "",
        f"- read back: one hour of all {n_series} series resampled to 1 min "
        f"({read_samples:,} samples): {read_s * 1000:.0f} ms ({rate(read_s, read_samples)})",
        f"- on disk: Popcorn {stored_bytes / 2**20:.1f} MiB "
        f"({stored_bytes / total:.1f} bytes/sample); SQLite baseline "
        f"{naive_bytes / 2**20:.1f} MiB ({naive_bytes / total:.1f} bytes/sample)",
        "- remote write pays per request what a file pays once: a sample file, a look-up of "
        "the timestamps it may replace and a series update per WriteRequest "
        f"({rw_http_s / rw_requests * 1000:.0f} ms a request over HTTP)",
        "- the baseline's time excludes building its Python rows; Popcorn's includes parsing "
        "and validating its input (finite values, timestamps, names) and sorting",
        f"- machine: {machine()}; {watch.note()}; revision {git_revision()}",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.quick:
        print(f"\nwritten to {write_result('signals-ingest', markdown)}")
    shutil.rmtree(home, ignore_errors=True)


def remote_write_bodies(ts: np.ndarray, values: np.ndarray, per_request: int = 2000) -> list[bytes]:
    """Snappy WriteRequests as Prometheus's queue sends them: scrape after scrape, one
    sample per TimeSeries, `per_request` samples a request."""
    import cramjam

    from popcorn.signals.remote_write import message_class

    n_series, per_series = values.shape
    hosts = [f"oc-{i:04d}" for i in range(n_series)]
    bodies = []
    request = message_class()()
    for j in range(per_series):
        stamp = int(ts[j]) * 1000
        for i in range(n_series):
            series = request.timeseries.add()
            for name, value in (("__name__", "edge_rps"), ("host", hosts[i]), ("job", "edge")):
                label = series.labels.add()
                label.name, label.value = name, value
            sample = series.samples.add()
            sample.value, sample.timestamp = float(values[i, j]), stamp
            if len(request.timeseries) == per_request:
                bodies.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
                request = message_class()()
    if len(request.timeseries):
        bodies.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    return bodies


@contextmanager
def gunicorn(home: Path) -> Iterator[Any]:
    """`popcorn serve` with one worker, and an httpx client with one keep-alive connection."""
    import socket

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = open(home / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "popcorn", "serve", "--port", str(port), "--workers", "1"],
        env={**os.environ, "POPCORN_LOG_LEVEL": "WARNING"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            for _ in range(600):
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            yield http
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    main()
