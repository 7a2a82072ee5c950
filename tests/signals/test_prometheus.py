"""Pulling series from a real Prometheus server through its HTTP API (CLI and rq job).

The server is Debian's `prometheus` package, started on a loopback port over a TSDB that
`promtool tsdb create-blocks-from openmetrics` backfilled with known samples.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from popcorn_testing import free_port, wait_until
from sqlalchemy import select

from popcorn import jobs
from popcorn.cli import cli
from popcorn.db import session_scope
from popcorn.errors import InvalidInput, NotFound, Unavailable
from popcorn.signals import service, store
from popcorn.signals.cli import group
from popcorn.signals.models import Series

cli.add_command(group)
STEP = 15
SAMPLES = 720  # three hours every 15 s
MISSING = "Prometheus is not installed (Debian package `prometheus`; .ci/run installs it)"


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def value(series: int, i: int) -> float:
    return 100.0 * series + i * 0.5


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip(MISSING)
    root = tmp_path_factory.mktemp("prometheus")
    start = (int(time.time()) - 4 * 3600) // 60 * 60
    lines = ["# TYPE edge_requests gauge"]
    for device in (1, 2):
        for i in range(SAMPLES):
            lines.append(
                f'edge_requests{{site="ams1",device="oc-{device}"}} {value(device, i)} '
                f"{start + STEP * i}"
            )
    lines.append("# TYPE edge_temp_celsius gauge")
    lines += [
        f'edge_temp_celsius{{site="ams1"}} {value(0, i)} {start + STEP * i}' for i in range(SAMPLES)
    ]
    (root / "data.om").write_text("\n".join(lines) + "\n# EOF\n")
    subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(root / "data.om"),
            str(root / "tsdb"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, timeout=60)
        yield {"url": url, "start": start}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["signals", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_pull_copies_the_series_exactly(prometheus: dict[str, Any]) -> None:
    start = prometheus["start"]
    end = start + STEP * (SAMPLES - 1)
    code, out = run(
        "ingest",
        "--from-prometheus",
        prometheus["url"],
        "--match",
        'edge_temp_celsius{site="ams1"}',
        "--start",
        str(start),
        "--end",
        str(end),
        "--step",
        "15s",
        "--json",
    )
    assert code == 0, out
    assert json.loads(out)["samples"] == SAMPLES
    with session_scope(readonly=True) as session:
        got = service.query(session=session, selector="edge_temp_celsius", start=start, end=end + 1)
    assert got.timestamps[0].tolist() == [start + STEP * i for i in range(SAMPLES)]
    assert got.values[0].tolist() == [value(0, i) for i in range(SAMPLES)]


def test_a_long_pull_is_split_into_range_queries(prometheus: dict[str, Any]) -> None:
    start = prometheus["start"]
    end = start + 3 * 3600 - STEP  # 10,785 one-second steps: two range queries per series
    with session_scope() as session:
        result = service.pull_from_prometheus(
            session=session,
            url=prometheus["url"],
            match="edge_requests",
            start=start,
            end=end,
            step="1s",
        )
    assert result.series == 2 and result.new_series == 2
    assert result.samples == 2 * (end - start + 1)
    with session_scope(readonly=True) as session:
        got = service.query(
            session=session,
            selector='edge_requests{device="oc-2"}',
            start=start,
            end=end + 1,
            step="15s",
            agg="last",
        )
        devices = sorted(session.scalars(select(Series.device)))
    assert got.values[0].tolist() == [value(2, i) for i in range(SAMPLES)]
    assert devices == ["oc-1", "oc-2"]


def test_pull_as_a_job_on_a_worker(prometheus: dict[str, Any], processes: Any) -> None:
    start = prometheus["start"]
    with session_scope() as session:
        record = jobs.enqueue(
            session,
            "signals.pull_prometheus",
            arguments={
                "url": prometheus["url"],
                "match": '{__name__=~"edge_.*"}',
                "start": start,
                "end": start + 3600,
                "step": "60s",
            },
        )
    processes.start("worker")
    done = jobs.wait_for(record.id, timeout=60)
    assert done.status == "finished", done.error
    assert done.result["series"] == 3 and done.result["samples"] == 3 * 61


def test_pull_errors_are_clear(prometheus: dict[str, Any]) -> None:
    start = prometheus["start"]
    with session_scope() as session:
        with pytest.raises(NotFound, match="no series match no_such_metric"):
            service.pull_from_prometheus(
                session=session,
                url=prometheus["url"],
                match="no_such_metric",
                start=start,
                end=start + 600,
            )
        with pytest.raises(InvalidInput, match="missing '}'"):
            service.pull_from_prometheus(
                session=session,
                url=prometheus["url"],
                match="edge_requests{",
                start=start,
                end=start + 600,
            )
        with pytest.raises(Unavailable, match="cannot reach Prometheus"):
            service.pull_from_prometheus(
                session=session,
                url=f"http://127.0.0.1:{free_port()}",
                match="up",
                start=start,
                end=start + 600,
            )
    code, out = run(
        "ingest",
        "--from-prometheus",
        prometheus["url"],
        "--match",
        "edge_requests",
        "--start",
        str(start + 600),
        "--end",
        str(start),
    )
    assert code == 1 and "end: must be after start" in out
    with session_scope(readonly=True) as session:
        assert session.scalars(select(Series)).all() == []
    assert not list(Path(store.root()).rglob("*.parquet"))
