"""Signal samples on S3 (moto over HTTP) beside the local-directory object store.

The same work on both backends, in the same run: ingest a long-format Parquet file end to end
(parse, sort, write the day objects, list them in the database, commit), then read back
(one hour of every series resampled to one minute; one series over the whole range, where
row-group statistics let the reader skip all but one row group of each object). The
local directory is the embedded default and the baseline; S3 is what several machines share.
moto is an in-process Python S3 server, so its figures show the request overhead of the
object-store path, not the throughput of a real S3 or MinIO.

Run: .venv/bin/python benchmarks/bench_signals_objstore.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

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

    home = Path(tempfile.mkdtemp(prefix="popcorn-bench-objstore-"))
    os.environ["POPCORN_HOME"] = str(home)
    os.environ.pop("POPCORN_DATABASE_URL", None)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "bench"
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    import boto3
    from moto.server import ThreadedMotoServer
    from sqlalchemy import delete

    from popcorn.audit import AuditRecord
    from popcorn.config import reset_settings
    from popcorn.db import session_scope, upgrade
    from popcorn.signals import service
    from popcorn.signals.models import SampleFile, Series
    from popcorn.storage import get_store

    reset_settings()
    upgrade()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    rng = np.random.default_rng(0)
    ts = T0 + 15 * np.arange(per_series)  # 15 s scrapes, about four hours
    values = rng.normal(100, 5, (n_series, per_series)).round(3)
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
    batches = 10
    cut = n_series // batches
    parts = []
    for i in range(batches):
        part = home / f"input-{i}.parquet"
        pq.write_table(table.slice(i * cut * per_series, cut * per_series), part)
        parts.append(part)

    def reset() -> None:
        store = get_store()
        for obj in store.list("signals/"):
            store.delete(obj.key)
        with session_scope() as session:
            session.execute(delete(Series))
            session.execute(delete(SampleFile))
            session.execute(delete(AuditRecord))

    def ingest_one() -> None:
        with session_scope() as session:
            assert service.ingest_file(session=session, path=parquet_path).samples == total

    def ingest_batches() -> None:
        for part in parts:
            with session_scope() as session:
                service.ingest_file(session=session, path=part)

    def read_all() -> None:
        with session_scope(readonly=True) as session:
            got = service.query(
                session=session, selector="edge_rps", start=T0, end=T0 + 3600, step="60s"
            )
        assert len(got.series) == n_series

    def read_one() -> None:
        with session_scope(readonly=True) as session:
            got = service.query(
                session=session,
                selector='edge_rps{host="oc-0042"}',
                start=T0,
                end=T0 + 15 * per_series,
            )
        assert got.values[0].size == per_series

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)

    def use(backend: str) -> None:
        if backend == "local":
            os.environ.pop("POPCORN_STORAGE_URL", None)
        else:
            os.environ["POPCORN_STORAGE_URL"] = f"s3://{bucket}/popcorn"
            os.environ["POPCORN_STORAGE_ENDPOINT_URL"] = endpoint
        reset_settings()

    steps = {"ingest": ingest_one, "batches": ingest_batches}
    reads = {"read_all": read_all, "read_one": read_one}
    figures: dict[str, dict[str, float]] = {"local": {}, "s3": {}}
    for _round in range(runs):  # backends alternate, so load changes hit both alike
        for backend in ("local", "s3"):
            use(backend)
            for name, fn in steps.items():
                seconds = best(1, fn, reset)
                figures[backend][name] = min(figures[backend].get(name, seconds), seconds)
            for name, fn in reads.items():
                seconds = best(1, fn, lambda: None)
                figures[backend][name] = min(figures[backend].get(name, seconds), seconds)
            reset()
    server.stop()
    watch.stop()

    read_all_n = n_series * min(per_series, 3600 // 15)
    local = figures["local"]

    def row(name: str, f: dict[str, float]) -> str:
        def cell(key: str, n: int) -> str:
            ratio = "" if f is local else f" ({f[key] / local[key]:.1f}x the time)"
            return f"{f[key] * 1000:.0f} ms, {n / f[key]:,.0f} samples/s{ratio}"

        return (
            f"| {name} | {cell('ingest', total)} | {cell('batches', total)} | "
            f"{cell('read_all', read_all_n)} | {cell('read_one', per_series)} |"
        )

    lines = [
        "## Signal samples on the object store: local directory vs S3",
        "",
        f"{total:,} samples ({n_series} series x {per_series}, 15 s apart), best of {runs} "
        "runs (the backends alternate), the same work on each in the same run, end to end "
        "with the database "
        "commit. The local directory is the embedded default (the baseline); S3 is moto "
        "serving HTTP on this machine (a Python server: the figures show the object-store "
        "path's request overhead, not a real S3's throughput).",
        "",
        f"| store | ingest one Parquet file | ingest as {batches} batches | read 1 h of all series "
        "at 1 min | read 1 series, all samples |",
        "|---|---:|---:|---:|---:|",
        row("local directory (baseline)", local),
        row("S3 (moto, HTTP)", figures["s3"]),
        "",
        "- reads list the day's objects in the database and open them through pyarrow's "
        "filesystem (S3: pyarrow's own client), so a one-series read fetches only the row "
        "groups whose statistics match",
        f"- machine: {machine()}; {watch.note()}; revision {git_revision()}",
    ]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.quick:
        print(f"\nwritten to {write_result('signals-objstore', markdown)}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
