"""Prometheus pulls go only where an admin allowed, and never echo what the server said.

Regression tests for the server-side request forgery of issue #12 (item 4): the URL of
`signals.pull_prometheus` is a job argument anyone with an operator token chooses, and its
job error used to carry the answer's body, readable by viewers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from popcorn import jobs
from popcorn.db import session_scope
from popcorn.errors import Forbidden, Unavailable
from popcorn.signals import service

SECRET = "ami-secret-token-4242"


class _Leaky(BaseHTTPRequestHandler):
    """A server inside the network whose answers must not reach the caller."""

    def do_GET(self) -> None:
        body = f'{{"status": "error", "error": "{SECRET}", "data": "{SECRET}"}}'.encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def leaky() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Leaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _pull(url: str, transport: Any = None) -> None:
    with session_scope() as session:
        service.pull_from_prometheus(
            session=session, url=url, match="up", start=0, end=600, transport=transport
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.20.30.40:9090",
        "http://[fd00:ec2::254]/",
    ],
)
def test_a_pull_to_a_target_nobody_allowed_is_refused_before_any_request(url: str) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "success", "data": []})

    with pytest.raises(Forbidden) as refused:
        _pull(url, transport=httpx.MockTransport(record))
    assert refused.value.code == "outbound_refused"
    assert seen == []


def test_a_server_error_reaches_the_caller_as_a_status_not_as_its_body(leaky: str) -> None:
    with pytest.raises(Unavailable) as failed:
        _pull(leaky)
    assert "500" in failed.value.message
    assert SECRET not in failed.value.message and SECRET not in str(failed.value.details)


def test_the_pull_job_refuses_metadata_and_keeps_bodies_out_of_its_error(
    api: Any, leaky: str
) -> None:
    for url in ("http://169.254.169.254/latest/meta-data/iam/", leaky):
        submitted = api.post(
            "/api/v1/jobs",
            role="operator",
            json={
                "task": "signals.pull_prometheus",
                "arguments": {"url": url, "match": "up", "start": 0, "end": 600},
                "retries": 0,
            },
        )
        assert submitted.status_code in (201, 202), submitted.json
        jobs.execute(submitted.json["id"])
    with session_scope(readonly=True) as session:
        records = list(
            session.scalars(
                select(jobs.JobRecord)
                .where(jobs.JobRecord.task == "signals.pull_prometheus")
                .order_by(jobs.JobRecord.id)
            )
        )
    assert [r.status for r in records] == ["failed", "failed"]
    assert "not allowed" in records[0].error or "refused" in records[0].error
    for record in records:
        assert SECRET not in (record.error or "") and SECRET not in str(record.result)
        shown = api.get(f"/api/v1/jobs/{record.id}", role="viewer").json
        assert SECRET not in str(shown)
