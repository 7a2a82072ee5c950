"""Webhook actions against a real local HTTP server: signing, retries with backoff,
dead letters and replay."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, text, update

from popcorn import jobs
from popcorn.db import session_scope, utcnow
from popcorn.events import actions, queries, rulebook, service, webhook_secrets
from popcorn.events.formats import Event
from popcorn.events.models import ActionRun
from popcorn.listing import parse_list_params


class Hook:
    """A webhook receiver whose answers follow a plan: "ok", "timeout" or an HTTP status."""

    def __init__(self) -> None:
        self.plan: list[str | int] = []
        self.requests: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                step = hook.plan.pop(0) if hook.plan else "ok"
                if step == "timeout":
                    time.sleep(1.0)
                    step = 200
                status = 200 if step == "ok" else int(step)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(json.dumps({"status": status}).encode())
                except OSError:
                    pass  # the caller gave up already

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.close()


def rule(url: str, **params: Any) -> str:
    spec = {"url": url, "timeout": 0.3, **params}
    return (
        "name: hook\nevents: [svc.*]\nactions:\n"
        f"  - {{type: webhook, params: {json.dumps(spec)}}}\n"
    )


def send(rules_text: str, **event: Any) -> int:
    """Load the rule, ingest one event, process it; returns the webhook's action run id."""
    with session_scope() as session:
        rulebook.store_rules(session=session, files=[("hook.yaml", rules_text)])
        (item,) = service.ingest(
            session=session,
            events=[
                Event(
                    id=event.pop("id", "e1"),
                    type="svc.down",
                    source="tests",
                    subject="api",
                    time=utcnow(),
                    labels={"site": "ams1"},
                    **event,
                )
            ],
        ).items
    with session_scope() as session:
        service.process_events(session=session, event_ids=[item["id"]])
        run_id = session.scalar(select(ActionRun.id).where(ActionRun.event_id == item["id"]))
    assert run_id is not None
    return run_id


def run(run_id: int) -> ActionRun:
    with session_scope(readonly=True) as session:
        found = session.get(ActionRun, run_id)
        assert found is not None
        session.expunge(found)
        return found


def attempt(run_id: int) -> jobs.JobRecord:
    """Make the run's delivery job due now and run one attempt, as a worker would."""
    job_id = run(run_id).job_id
    assert job_id is not None
    with session_scope() as session:
        session.execute(
            update(jobs.JobRecord)
            .where(jobs.JobRecord.id == job_id, jobs.JobRecord.status.in_(["scheduled", "pending"]))
            .values(status="pending", run_at=utcnow())
        )
    jobs.execute(job_id)
    with session_scope(readonly=True) as session:
        record = jobs.get_job(session=session, job_id=job_id)
        session.expunge(record)
        return record


def test_webhook_retries_with_backoff_then_succeeds_signed(hook: Hook) -> None:
    with session_scope() as session:
        secret = webhook_secrets.set_secret(
            session=session, name="default", allowed_targets=[hook.url]
        )
    run_id = send(rule(hook.url + "/alerts/{{ labels.site }}", retries=4))
    hook.plan = ["timeout", 500, "ok"]

    first = attempt(run_id)
    assert first.status == "scheduled"
    assert run(run_id).status == "retrying"
    assert run(run_id).error == f"timed out after 0.3s calling {hook.url}/alerts/ams1"
    first_wait = (first.run_at - utcnow()).total_seconds()
    assert 1.0 < first_wait < 3.0

    second = attempt(run_id)
    assert run(run_id).error == f"HTTP 500 from {hook.url}/alerts/ams1"
    assert (second.run_at - utcnow()).total_seconds() > first_wait  # the backoff grows

    third = attempt(run_id)
    done = run(run_id)
    assert third.status == "finished"
    assert done.status == "succeeded" and done.attempts == 3 and done.error == ""
    assert done.response["status_code"] == 200 and done.response["signed"] is True

    assert [r["path"] for r in hook.requests] == ["/alerts/ams1"] * 3
    bodies = {r["body"] for r in hook.requests}
    assert len(bodies) == 1  # the same body every time: receivers dedupe by delivery id
    body = bodies.pop()
    assert json.loads(body)["event"]["id"] == "e1"
    assert json.loads(body)["rule"] == "hook"
    for number, request in enumerate(hook.requests, start=1):
        assert request["headers"]["X-Popcorn-Delivery"] == str(run_id)
        assert request["headers"]["X-Popcorn-Attempt"] == str(number)
        assert actions.verify(secret, body, request["headers"][actions.SIGNATURE_HEADER])
    assert not actions.verify(
        "another secret", body, hook.requests[0]["headers"][actions.SIGNATURE_HEADER]
    )


def test_webhook_that_keeps_failing_is_dead_lettered_then_replayed(hook: Hook) -> None:
    run_id = send(rule(hook.url, retries=2))
    hook.plan = [503, 503, 503]
    for _ in range(3):
        record = attempt(run_id)
    assert record.status == "finished"  # the job ended; the action is what failed
    dead = run(run_id)
    assert dead.status == "failed" and dead.attempts == 3
    assert dead.error == f"HTTP 503 from {hook.url}"
    with session_scope(readonly=True) as session:
        listed = queries.list_action_runs(
            session=session, params=parse_list_params({}), dead_letters=True
        )
        assert [r.id for r in listed.items] == [run_id]

    with session_scope() as session:
        assert queries.replay_action(session=session, run_id=run_id).status == "pending"
    assert run(run_id).job_id != dead.job_id
    attempt(run_id)
    replayed = run(run_id)
    assert replayed.status == "succeeded" and replayed.replays == 1 and replayed.attempts == 4
    assert len(hook.requests) == 4
    assert hook.requests[-1]["headers"].get(actions.SIGNATURE_HEADER) is None  # no secret set


def test_client_errors_are_not_retried(hook: Hook) -> None:
    run_id = send(rule(hook.url))
    hook.plan = [404]
    attempt(run_id)
    failed = run(run_id)
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.response["status_code"] == 404


def test_named_secret_custom_payload_and_headers(hook: Hook) -> None:
    with session_scope() as session:
        secret = webhook_secrets.set_secret(
            session=session,
            name="storage",
            value="s3cr3t-value-for-storage",
            allowed_targets=[hook.url + "/"],
        )
        stored = session.execute(text("SELECT sealed FROM events_secrets")).scalar_one()
    assert "s3cr3t" not in stored
    run_id = send(
        rule(
            hook.url,
            secret="storage",
            headers={"X-Team": "storage"},
            payload={"text": "{{ subject }} down in {{ labels.site }}", "n": "{{ data.n }}"},
        ),
        data={"n": 3},
    )
    attempt(run_id)
    assert run(run_id).status == "succeeded"
    (request,) = hook.requests
    assert json.loads(request["body"]) == {"text": "api down in ams1", "n": 3}
    assert request["headers"]["X-Team"] == "storage"
    assert actions.verify(secret, request["body"], request["headers"][actions.SIGNATURE_HEADER])


def test_unknown_secret_fails_without_sending(hook: Hook) -> None:
    run_id = send(rule(hook.url, secret="nope"))
    attempt(run_id)
    failed = run(run_id)
    assert failed.status == "failed"
    assert failed.error == "params.secret: no stored secret named 'nope'"
    assert hook.requests == []


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"url": "ftp://example.net/x"}, "params.url: must be an http(s) URL"),
        ({"method": "GET"}, "params.method: must be POST, PUT or PATCH"),
        ({"retries": 50}, "params.retries: must be a whole number from 0 to 12"),
        ({"headers": {"X-Popcorn-Delivery": "1"}}, "params.headers.X-Popcorn-Delivery"),
    ],
)
def test_bad_webhook_parameters_fail_at_once(
    hook: Hook, params: dict[str, Any], error: str
) -> None:
    url = params.pop("url", hook.url)
    run_id = send(rule(url, **params))
    failed = run(run_id)
    assert failed.status == "failed" and failed.job_id is None
    assert failed.error.startswith(error)
