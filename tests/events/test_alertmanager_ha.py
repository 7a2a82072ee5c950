"""Two real Alertmanager replicas (Debian's `prometheus-alertmanager`) send the same alert
to Popcorn, each with its own externalURL: one stored event, an incident counting it once,
a rule without its own dedupe acting once."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from popcorn_testing import Processes, free_port, wait_until
from sqlalchemy import func, select

from popcorn.db import session_scope
from popcorn.events.models import ActionRun, EventRecord, Incident

ALERTMANAGER = "prometheus-alertmanager"
MISSING = "Alertmanager is not installed (Debian package `prometheus-alertmanager`)"


def _sent(url: str) -> float:
    """Webhook notifications this replica has delivered (its own /metrics)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=2).text
    except httpx.HTTPError:
        return 0.0
    for line in text.splitlines():
        if line.startswith('alertmanager_notifications_total{integration="webhook"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def replicas(
    live_server: str, tokens: dict[str, str], tmp_path: Path
) -> Iterator[list[dict[str, str]]]:
    """Two unclustered replicas: the worst case, where both always notify."""
    binary = shutil.which(ALERTMANAGER)
    if binary is None:
        pytest.skip(MISSING)
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: popcorn\n"
        "  group_by: [alertname]\n"
        "  group_wait: 0s\n"
        "  group_interval: 1h\n"
        "  repeat_interval: 4h\n"
        "receivers:\n"
        "  - name: popcorn\n"
        "    webhook_configs:\n"
        f"      - url: {live_server}/api/v1/events/alertmanager\n"
        "        send_resolved: true\n"
        "        http_config:\n"
        "          authorization:\n"
        "            type: Bearer\n"
        f"            credentials: {tokens['operator']}\n"
    )
    procs: list[subprocess.Popen[bytes]] = []
    out: list[dict[str, str]] = []
    try:
        for name in ("am-a", "am-b"):
            port = free_port()
            store = tmp_path / name
            store.mkdir()
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115
            procs.append(
                subprocess.Popen(
                    [
                        binary,
                        f"--config.file={config}",
                        f"--storage.path={store}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        f"--web.external-url=http://{name}.example.net:{port}",
                        "--cluster.listen-address=",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            out.append({"name": name, "url": f"http://127.0.0.1:{port}"})

        def ready() -> bool:
            try:
                return all(
                    httpx.get(f"{r['url']}/-/ready", timeout=1).status_code == 200 for r in out
                )
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=30)
        yield out
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_two_replicas_make_one_event_and_one_incident_count(
    live_server: str,
    replicas: list[dict[str, str]],
    processes: Processes,
    tokens: dict[str, str],
) -> None:
    headers = {"Authorization": f"Bearer {tokens['operator']}"}
    rules = """
- name: page
  events: ["alertmanager.alert.*"]
  actions:
    - type: incident
      params: {key: "am/{{ data.fingerprint }}", title: "{{ labels.alertname }}"}
- name: record
  events: [alertmanager.alert.firing]
  actions:
    - type: emit
      params: {type: ops.alert.seen, data: {replica: "{{ data.externalURL }}"}}
"""
    loaded = httpx.post(
        f"{live_server}/api/v1/events/rules",
        content=rules,
        headers={**headers, "Content-Type": "application/yaml"},
    )
    assert loaded.status_code == 200, loaded.text
    processes.start("worker")

    # Prometheus sends every alert to every replica, with the same labels and start.
    starts = (datetime.now(UTC) - timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    alert = [
        {
            "labels": {"alertname": "EdgeDown", "site": "ams1", "severity": "critical"},
            "annotations": {"summary": "edge down in ams1"},
            "startsAt": starts,
            "generatorURL": "http://prometheus:9090/graph",
        }
    ]
    for replica in replicas:
        posted = httpx.post(f"{replica['url']}/api/v2/alerts", json=alert, timeout=5)
        assert posted.status_code == 200, posted.text
    wait_until(lambda: all(_sent(r["url"]) >= 1 for r in replicas), timeout=60)

    def settled() -> bool:
        with session_scope(readonly=True) as session:
            pending = session.scalar(
                select(func.count()).select_from(EventRecord).where(EventRecord.status == "pending")
            )
            return (
                session.scalar(select(func.count()).select_from(EventRecord)) >= 1 and not pending
            )

    wait_until(settled, timeout=60)
    with session_scope(readonly=True) as session:
        stored = session.scalars(
            select(EventRecord).where(EventRecord.type == "alertmanager.alert.firing")
        ).all()
        assert len(stored) == 1  # two deliveries, one event
        assert stored[0].source == "alertmanager"
        assert stored[0].data["externalURL"] in {
            f"http://{r['name']}.example.net:{r['url'].rsplit(':', 1)[1]}" for r in replicas
        }
        (incident,) = session.scalars(select(Incident)).all()
        assert incident.event_count == 1
        seen = EventRecord.type == "ops.alert.seen"
        emitted = session.scalar(select(func.count()).select_from(EventRecord).where(seen))
        assert emitted == 1  # the rule without a dedupe acted once
        runs = session.scalar(select(func.count()).select_from(ActionRun))
        assert runs == 2  # one incident action, one emit
