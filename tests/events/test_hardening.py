"""Regression tests for the attacks and crashes of issue #12 that reach the events domain.

Each test replays the attack (a catastrophic regex, a webhook aimed at the metadata
service, a rule signing with a secret meant for someone else, a viewer reading
webhook replies, a drainer job that never starts) and shows it refused or recovered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from events.test_actions import Hook, attempt, rule, run, send
from popcorn import jobs
from popcorn.db import session_scope, utcnow
from popcorn.events import actions, rulebook, service, webhook_secrets
from popcorn.events.formats import Event
from popcorn.events.models import EventRecord, Setting
from popcorn.events.rules import MAX_PATTERN_LENGTH, RuleSet, RuleSyntaxError, parse_rules


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.close()


# --- #7 ReDoS: rule regexes run on RE2 ------------------------------------------------------


def _labelled(value: str) -> Event:
    return Event(id="e", type="t", source="s", time=utcnow(), labels={"path": value})


def test_a_catastrophic_rule_regex_matches_in_milliseconds() -> None:
    rules = RuleSet(
        parse_rules("name: r\nevents: [t]\nconditions: {labels.path: {regex: '(a+)+$'}}")
    )
    attack = _labelled("a" * 50_000 + "b")  # 21.7 s with a backtracking engine
    started = time.perf_counter()
    assert rules.match(attack) == []
    assert rules.explain(attack)[0].matched is False
    assert time.perf_counter() - started < 0.5
    assert [m.rule.name for m in rules.match(_labelled("aaaa"))] == ["r"]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [(r"(a)\1", "backreferences"), ("(?=admin)", "lookaround"), ("(?<!x)y", "lookaround")],
)
def test_regexes_re2_cannot_run_are_refused_at_load_naming_rule_and_line(
    pattern: str, why: str
) -> None:
    text = f"name: slow-rule\nevents: [t]\nconditions:\n  labels.path: {{regex: '{pattern}'}}\n"
    with pytest.raises(RuleSyntaxError) as info:
        parse_rules(text, "rules.yaml")
    assert info.value.line == 4 and info.value.rule == "slow-rule"
    assert str(info.value).startswith("rules.yaml:4: rule 'slow-rule'")
    assert "RE2" in info.value.reason and why in info.value.reason


def test_rule_patterns_have_a_bounded_length() -> None:
    long = "a" * (MAX_PATTERN_LENGTH + 1)
    for op in ("regex", "glob"):
        with pytest.raises(RuleSyntaxError, match="longer than"):
            parse_rules(f"name: r\nevents: [t]\nconditions: {{labels.p: {{{op}: '{long}'}}}}")


def test_storing_a_backreference_rule_is_a_422_naming_the_rule() -> None:
    text = "name: bad\nevents: [t]\nconditions: {labels.p: {regex: '(x)\\1'}}\n"
    with pytest.raises(Exception) as info, session_scope() as session:
        rulebook.store_rules(session=session, files=[("r.yaml", text)])
    assert getattr(info.value, "status", None) == 422
    assert info.value.details["rule"] == "bad" and info.value.details["line"] == 3  # type: ignore[attr-defined]


# --- #4 SSRF in webhook actions ----------------------------------------------------------


def test_a_webhook_to_the_metadata_service_fails_once_without_retries() -> None:
    run_id = send(rule("http://169.254.169.254/latest/meta-data/iam", retries=5))
    record = attempt(run_id)
    failed = run(run_id)
    assert failed.status == "failed" and failed.attempts == 1
    assert failed.error.startswith("refused: webhook: outbound calls to 169.254.169.254")
    assert record.status == "finished" and record.attempts == 1  # no retry storm


@pytest.mark.parametrize(
    "header", ["Host", "Authorization", "Transfer-Encoding", "X-Forwarded-For", "X-Popcorn-X"]
)
def test_rules_cannot_set_hop_by_hop_or_identity_headers(header: str) -> None:
    with pytest.raises(actions.ActionError, match="may not set this header"):
        actions._webhook_params({"url": "http://127.0.0.1/", "headers": {header: "x"}})


def test_only_post_put_and_patch_are_sent() -> None:
    for method in ("GET", "DELETE", "CONNECT"):
        with pytest.raises(actions.ActionError, match="POST, PUT or PATCH"):
            actions._webhook_params({"url": "http://127.0.0.1/", "method": method})


def test_viewers_do_not_read_webhook_replies_or_header_values(api: Any, hook: Hook) -> None:
    run_id = send(rule(hook.url, headers={"X-Api-Key": "tok-123"}))
    attempt(run_id)
    as_viewer = api.get(f"/api/v1/events/actions/{run_id}", role="viewer").get_json()
    assert as_viewer["params"]["headers"] == {"X-Api-Key": "(hidden)"}
    assert "status_code" not in as_viewer["response"]
    listed = api.get("/api/v1/events/actions", role="viewer").get_json()["items"][0]
    assert "tok-123" not in str(listed) and "status_code" not in str(listed["response"])
    as_operator = api.get(f"/api/v1/events/actions/{run_id}", role="operator").get_json()
    assert as_operator["params"]["headers"] == {"X-Api-Key": "tok-123"}
    assert as_operator["response"]["status_code"] == 200
    assert len(as_operator["response"]["body"]) <= actions.MAX_STORED_REPLY


# --- #5 webhook signing oracle ----------------------------------------------------------


def test_a_rule_cannot_sign_for_a_destination_the_admin_did_not_bind(hook: Hook) -> None:
    with session_scope() as session:
        webhook_secrets.set_secret(
            session=session, name="payments", allowed_targets=[hook.url + "/payments"]
        )
    run_id = send(rule(hook.url + "/attacker", secret="payments", payload={"pay": 10**6}))
    attempt(run_id)
    refused = run(run_id)
    assert refused.status == "failed" and "may not sign" in refused.error
    assert hook.requests == []  # nothing was signed, nothing was sent

    allowed = send(rule(hook.url + "/payments/hook", secret="payments"), id="e2")
    attempt(allowed)
    assert run(allowed).status == "succeeded"
    assert actions.SIGNATURE_HEADER in hook.requests[-1]["headers"]


def test_the_default_secret_does_not_sign_outside_its_targets(hook: Hook) -> None:
    with session_scope() as session:
        webhook_secrets.set_secret(
            session=session, name="default", allowed_targets=["hooks.example.net"]
        )
    run_id = send(rule(hook.url))
    attempt(run_id)
    assert run(run_id).status == "succeeded" and run(run_id).response["signed"] is False
    assert actions.SIGNATURE_HEADER not in hook.requests[-1]["headers"]


def test_secret_targets_are_prefixes_at_a_path_boundary() -> None:
    targets = webhook_secrets.normalize_targets(["https://hooks.example.net/popcorn", "h.example"])
    assert webhook_secrets.allows(targets, "https://hooks.example.net/popcorn/alerts")
    assert webhook_secrets.allows(targets, "http://h.example:8080/x")
    for url in (
        "https://hooks.example.net/popcorn-evil",
        "https://hooks.example.net.evil.com/popcorn",
        "https://hooks.example.net@evil.com/popcorn",
        "http://hooks.example.net/popcorn",
        "https://evil.com/?u=https://hooks.example.net/popcorn",
    ):
        assert not webhook_secrets.allows(targets, url), url
    with pytest.raises(Exception, match="allowed_targets"):
        webhook_secrets.normalize_targets(["ftp://x/"])


def test_only_admins_bind_secrets(api: Any) -> None:
    body = {"allowed_targets": ["https://hooks.example.net/"]}
    assert api.put("/api/v1/events/secrets/s", json=body, role="operator").status_code == 403
    answer = api.put("/api/v1/events/secrets/s", json=body, role="admin").get_json()
    assert answer["allowed_targets"] == ["https://hooks.example.net/"]
    assert api.put("/api/v1/events/secrets/s", json={}, role="admin").status_code == 422


# --- #2/#8 a drainer that never starts must not wedge alert processing -------------------


def _age(seconds: float) -> None:
    """Pretend everything stored so far happened `seconds` ago."""
    past = utcnow() - timedelta(seconds=seconds)
    with session_scope() as session:
        session.execute(update(jobs.JobRecord).values(created_at=past, run_at=past))
        session.execute(update(EventRecord).values(received_at=past))
        session.execute(update(Setting).values(updated_at=past))


CATCH_ALL = "- {name: all, events: ['*'], actions: [{type: emit, params: {type: seen}}]}\n"


def _ingest(ident: str) -> int:
    with session_scope() as session:
        (item,) = service.ingest(
            session=session,
            events=[Event(id=ident, type="alert.firing", source="am", time=utcnow())],
            origin="alertmanager",
        ).items
    return int(item["id"])


def _status(pk: int) -> str:
    with session_scope(readonly=True) as session:
        row = session.get(EventRecord, pk)
        assert row is not None
        return row.status


def test_alerts_are_processed_on_the_alerts_queue() -> None:
    with session_scope() as session:
        rulebook.store_rules(session=session, files=[("r.yaml", CATCH_ALL)])
    _ingest("a1")
    with session_scope(readonly=True) as session:
        (job,) = session.scalars(select(jobs.JobRecord))
    assert job.task == service.PROCESS_TASK and job.queue == "alerts"


def test_a_stuck_drainer_no_longer_blocks_new_events() -> None:
    with session_scope() as session:
        rulebook.store_rules(session=session, files=[("r.yaml", CATCH_ALL)])
    first = _ingest("stuck-1")
    with session_scope(readonly=True) as session:
        (stuck,) = session.scalars(select(jobs.JobRecord.id))
    # The worker that took this job from Redis died before marking it running: it stays
    # `pending` and no worker will ever run it.
    _age(service.STALE_SECONDS + 5)
    second = _ingest("stuck-2")
    with session_scope(readonly=True) as session:
        waiting = list(
            session.scalars(
                select(jobs.JobRecord.id).where(
                    jobs.JobRecord.status == "pending", jobs.JobRecord.id != stuck
                )
            )
        )
    assert len(waiting) == 1  # a fresh drainer, not blocked by the stale marker
    jobs.execute(waiting[0])  # a worker runs
    assert _status(first) == "processed" and _status(second) == "processed"


def test_the_sweep_processes_events_whose_drainer_was_lost() -> None:
    with session_scope() as session:
        rulebook.store_rules(session=session, files=[("r.yaml", CATCH_ALL)])
    lost = _ingest("lost-1")
    with session_scope(readonly=True) as session:
        schedule = session.scalars(
            select(jobs.Schedule).where(jobs.Schedule.name == service.SWEEP_SCHEDULE)
        ).one()
    assert schedule.queue == "alerts"
    assert schedule.interval_seconds is not None
    assert schedule.interval_seconds + service.STALE_SECONDS <= 90  # the bound on the delay
    assert service.sweep()["processed"] == 0  # fresh events are the drainer's to take
    _age(service.STALE_SECONDS + 5)
    with session_scope() as session:  # the schedule is due: the scheduler tick enqueues it
        session.execute(update(jobs.Schedule).values(next_run_at=utcnow()))
    assert jobs.run_due_schedules() >= 1
    with session_scope(readonly=True) as session:
        (sweep_job,) = session.scalars(
            select(jobs.JobRecord.id).where(jobs.JobRecord.task == service.SWEEP_TASK)
        )
    jobs.execute(sweep_job)
    assert _status(lost) == "processed"
