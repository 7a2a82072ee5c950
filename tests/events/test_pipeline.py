"""The pipeline with real processes: nothing accepted is lost when Redis loses its queues,
and an alert posted over HTTP flows through the worker, the outbox and a webhook."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from popcorn_testing import Processes, wait_until
from sqlalchemy import func, select

from popcorn import jobs, outbox
from popcorn.db import session_scope
from popcorn.events.models import ActionRun, EventRecord, Incident


class Receiver:
    """Collects webhook bodies on a loopback port."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def counts() -> dict[str, int]:
    with session_scope(readonly=True) as session:
        rows = session.execute(
            select(EventRecord.status, func.count()).group_by(EventRecord.status)
        ).all()
        done = session.scalar(
            select(func.count()).select_from(ActionRun).where(ActionRun.status == "succeeded")
        )
    return {**{status: n for status, n in rows}, "actions_succeeded": int(done or 0)}


@pytest.mark.slow
def test_accepted_events_survive_a_redis_restart(
    api: Any, processes: Processes, receiver: Receiver
) -> None:
    """Events accepted while no worker runs; Redis then loses everything (a restart
    without persistence); the relay re-sends the jobs and a new worker processes them all."""
    rules = (
        "name: relay\nevents: [deploy.*]\nactions:\n"
        "  - type: webhook\n"
        f"    params: {{url: '{receiver.url}', payload: {{id: '{{{{ id }}}}'}}}}\n"
    )
    assert (
        api.post("/api/v1/events/rules", json={"text": rules}, role="operator").status_code == 200
    )
    batches = [
        [
            {"specversion": "1.0", "id": f"d-{b}-{i}", "source": "ci", "type": "deploy.done"}
            for i in range(4)
        ]
        for b in range(3)
    ]
    for batch in batches:
        assert api.post("/api/v1/events", json=batch, role="operator").status_code == 202
    assert jobs.rq_queue("alerts").count == 1  # later batches ride along with the waiting job

    jobs.get_redis().flushdb()  # Redis restarted without persistence
    assert jobs.rq_queue("alerts").count == 0
    assert jobs.resend_lost(older_than=0) == 1
    processes.start("worker")
    wait_until(lambda: counts() == {"processed": 12, "actions_succeeded": 12}, timeout=60)
    assert sorted(b["id"] for b in receiver.bodies) == sorted(
        e["id"] for batch in batches for e in batch
    )


@pytest.mark.slow
def test_alert_over_http_flows_through_worker_outbox_and_webhook(
    live_server: str,
    processes: Processes,
    tokens: dict[str, str],
    receiver: Receiver,
    alertmanager_payload: dict[str, Any],
) -> None:
    processes.start("scheduler")
    processes.start("worker")

    def cursor_ready() -> bool:
        with session_scope(readonly=True) as session:
            return session.get(outbox.SubscriberCursor, "events.ingest") is not None

    wait_until(cursor_ready, timeout=30)  # the dispatcher delivers from here on
    headers = {"Authorization": f"Bearer {tokens['operator']}"}
    rules = f"""
- name: page
  events: [alertmanager.alert.firing]
  conditions: {{labels.severity: critical}}
  actions:
    - type: incident
      params: {{key: "{{{{ data.fingerprint }}}}", title: "{{{{ data.annotations.summary }}}}"}}
- name: notify
  events: [events.incident.opened]
  actions:
    - type: webhook
      params: {{url: "{receiver.url}", payload: {{text: "opened: {{{{ data.title }}}}"}}}}
"""
    loaded = httpx.post(
        f"{live_server}/api/v1/events/rules",
        content=rules,
        headers={**headers, "Content-Type": "application/yaml"},
    )
    assert loaded.status_code == 200, loaded.text
    body = json.dumps(alertmanager_payload)
    url = f"{live_server}/api/v1/events/alertmanager"
    answer = httpx.post(url, content=body, headers={**headers, "Content-Type": "application/json"})
    assert answer.status_code == 202 and answer.json()["accepted"] == 3
    wait_until(lambda: receiver.bodies, timeout=60)
    assert receiver.bodies == [{"text": "opened: Cache disk on oca-ams-017 is 97% full"}]

    json_headers = {**headers, "Content-Type": "application/json"}
    redelivered = httpx.post(url, content=body, headers=json_headers)
    assert redelivered.json()["duplicates"] == 3
    resolved = copy.deepcopy(alertmanager_payload)
    resolved["alerts"] = [{**resolved["alerts"][0], "status": "resolved"}]
    httpx.post(url, json=resolved, headers=headers)
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Incident)) == 1
    shown = httpx.get(f"{live_server}/api/v1/events", params={"type": "events.incident.opened"},
                      headers={"Authorization": f"Bearer {tokens['viewer']}"}).json()  # fmt: skip
    assert shown["count"] == 1 and shown["items"][0]["source"] == "popcorn/event_incident"
    assert shown["items"][0]["hops"] == 1
