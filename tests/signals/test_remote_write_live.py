"""A real Prometheus (Debian's `prometheus`) scraping itself every second and remote-writing
into a Popcorn server (gunicorn) with an operator token: its series arrive with their
labels, and every timestamp Popcorn holds is one Prometheus scraped, counted once."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from popcorn_testing import free_port, wait_until

from popcorn.signals import store

MISSING = "Prometheus is not installed (Debian package `prometheus`; .ci/run installs it)"


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen[bytes]):
        self.url = url
        self.proc = proc

    def stop(self) -> None:
        """SIGTERM: Prometheus sends what it has queued before it exits."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


@pytest.fixture
def prometheus_writing(
    live_server: str, tokens: dict[str, str], tmp_path: Path
) -> Iterator[Prometheus]:
    """Prometheus scraping itself and remote-writing to the live server."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(MISSING)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secret = tmp_path / "popcorn-token"
    secret.write_text(tokens["operator"])
    secret.chmod(0o600)
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: self\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        "remote_write:\n"
        f"  - url: {live_server}/api/v1/signals/write\n"
        f"    authorization: {{credentials_file: {secret}}}\n"
        "    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Prometheus(url, proc)
    try:
        yield running
    finally:
        running.stop()
        log.close()


def _get(base: str, path: str, token: str, **params: Any) -> Any:
    response = httpx.get(
        base + path, params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_prometheus_remote_writes_its_own_metrics(
    prometheus_writing: Prometheus, live_server: str, tokens: dict[str, str]
) -> None:
    viewer = tokens["viewer"]

    def up_series() -> dict[str, Any] | None:
        page = _get(live_server, "/api/v1/signals/series", viewer, match='up{job="self"}')
        items = page["items"]
        return items[0] if items and items[0]["sample_count"] >= 5 else None

    up = wait_until(up_series, timeout=90, interval=0.5)
    target = prometheus_writing.url.removeprefix("http://")
    assert up["metric"] == "up" and up["labels"] == {"instance": target, "job": "self"}
    raw = httpx.get(
        f"{prometheus_writing.url}/api/v1/query",
        params={"query": 'up{job="self"}[10m]'},
        timeout=10,
    ).json()
    scraped = {round(float(t) * 1000) for t, _ in raw["data"]["result"][0]["values"]}
    prometheus_writing.stop()  # it sends what it still holds, then nothing moves

    # the scrape's own series and Prometheus's metrics came along, named as Prometheus names them
    for name in ("scrape_samples_scraped", "prometheus_build_info", "go_goroutines"):
        page = _get(live_server, "/api/v1/signals/series", viewer, match=f'{name}{{job="self"}}')
        assert page["count"] == 1, name
    build = _get(live_server, "/api/v1/signals/series", viewer, match="prometheus_build_info")
    assert build["items"][0]["labels"]["version"].startswith("2.")
    # Every scrape of `up` arrived, each timestamp once, and sample_count says so.
    ours = _get(
        live_server, "/api/v1/signals/query", viewer, query='up{job="self"}', start="now-10m"
    )
    (series,) = ours["series"]
    stamps = [round(t * 1000) for t in series["timestamps"]]
    assert len(stamps) == len(set(stamps)) and set(series["values"]) == {1.0}
    assert scraped <= set(stamps)
    count = _get(live_server, f"/api/v1/signals/series/{up['id']}", viewer)["sample_count"]
    assert count == len(stamps)
    # and every request Prometheus sent was answered 204 (metadata-only ones included)
    scrape = httpx.get(f"{live_server}/metrics", timeout=10).text
    answers = {
        line.split('status="')[1].split('"')[0]
        for line in scrape.splitlines()
        if line.startswith("popcorn_http_requests_total{")
        and 'route="/api/v1/signals/write"' in line
    }
    assert answers == {"204"}
