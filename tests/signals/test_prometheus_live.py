"""A real Prometheus (Debian's `prometheus`) scraping itself: its own /metrics ingests as
text (NaN summary quantiles skipped and counted), and two overlapping pulls with a relative
start land on the step grid and count every timestamp once."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from popcorn_testing import free_port, wait_until
from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.signals import service, store
from popcorn.signals.models import Series

MISSING = "Prometheus is not installed (Debian package `prometheus`)"


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


@pytest.fixture(scope="module")
def scraping(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus scraping its own /metrics every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(MISSING)
    root: Path = tmp_path_factory.mktemp("prometheus-live")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (root / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: self\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    log = open(root / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
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
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_its_own_metrics_ingest_as_text_with_nan_quantiles_skipped(scraping: str) -> None:
    text = httpx.get(f"{scraping}/metrics", timeout=5).text
    non_finite = 0
    for line in text.splitlines():
        if line and not line.startswith("#"):
            value = float(line.rsplit(" ", 1)[1])
            non_finite += not math.isfinite(value)
    assert non_finite > 0  # summaries without observations: quantiles are NaN
    with session_scope() as session:
        result = service.ingest_prometheus_text(session=session, text=text)
    assert result.skipped == non_finite
    assert (
        result.samples
        == sum(1 for line in text.splitlines() if line and not line.startswith("#")) - non_finite
    )
    assert result.as_dict()["skipped"] == non_finite


def _stored(selector: str) -> tuple[list[int], int]:
    with session_scope(readonly=True) as session:
        got = service.query(session=session, selector=selector, start="now-10m", end="now")
        (series,) = session.scalars(select(Series).where(Series.metric == "up")).all()
        return [round(t) for t in got.timestamps[0].tolist()], series.sample_count


@pytest.mark.slow
def test_two_overlapping_pulls_stay_on_the_grid_and_count_once(scraping: str) -> None:
    def scraped(n: int) -> bool:
        answer = httpx.get(
            f"{scraping}/api/v1/query", params={"query": "count_over_time(up[1m])"}, timeout=5
        ).json()
        result = answer["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) >= n

    wait_until(lambda: scraped(12), timeout=60)
    args: dict[str, Any] = {"url": scraping, "match": "up", "step": "2s"}
    with session_scope() as session:
        first = service.pull_from_prometheus(session=session, start="now-20s", end="now", **args)
    time.sleep(1.3)  # the second window starts off the first one's grid
    with session_scope() as session:
        second = service.pull_from_prometheus(session=session, start="now-20s", end="now", **args)
    stamps, count = _stored('up{job="self"}')
    assert all(t % 2 == 0 for t in stamps)  # one 2 s grid, whatever "now" was
    assert len(stamps) == len(set(stamps)) == count  # sample_count is the truth
    assert second.replaced >= second.samples - 2 > 0  # the overlap replaced, not added
    assert count == first.samples + second.samples - second.replaced
