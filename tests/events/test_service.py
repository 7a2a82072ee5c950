"""Events service: durable ingest with dedupe, versioned rules, processing and inline actions."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from popcorn import jobs, outbox
from popcorn.audit import records_for
from popcorn.db import session_scope, utcnow
from popcorn.errors import InvalidInput, NotFound
from popcorn.events import actions, queries, rulebook, service
from popcorn.events import settings as event_settings
from popcorn.events.formats import Event, parse_alertmanager
from popcorn.events.models import ActionRun, EventRecord, Incident, MatchRecord
from popcorn.listing import parse_list_params

DISK_RULES = """
- name: disk-runbook
  events: [alertmanager.alert.firing]
  conditions:
    labels.alertname: CacheDiskFull
    labels.severity: critical
  actions:
    - type: runbook
      params:
        runbook: disk-cleanup
        inputs: {device: "{{ labels.instance.split(':')[0] }}", mount: "{{ labels.mountpoint }}"}
- name: disk-incident
  events: ["alertmanager.alert.*"]
  conditions: {labels.alertname: CacheDiskFull}
  actions:
    - type: incident
      params:
        key: "disk/{{ labels.instance }}"
        title: "{{ data.annotations.summary }}"
        severity: "{{ labels.severity }}"
"""


class FakeExecution:
    def __init__(self, ident: int) -> None:
        self.id = ident
        self.status = "running"


@pytest.fixture
def runbooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """A stand-in for remediation.api.start_runbook that records its calls."""
    from popcorn.remediation import api as real

    calls: list[dict[str, Any]] = []

    def start_runbook(
        *,
        session: Any,
        runbook: str,
        inputs: dict[str, Any],
        target: dict[str, Any] | None = None,
        trigger: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> FakeExecution:
        if runbook == "no-such-runbook":
            raise NotFound(f"no runbook {runbook!r}")
        calls.append({"runbook": runbook, "inputs": inputs, "target": target, "trigger": trigger})
        return FakeExecution(len(calls))

    monkeypatch.setattr(real, "start_runbook", start_runbook)
    yield calls


def load(text: str, file: str = "rules.yaml", prune: bool = False) -> dict[str, Any]:
    with session_scope() as session:
        return rulebook.store_rules(session=session, files=[(file, text)], prune=prune).as_dict()


def ingest(events: list[Event], origin: str = "api") -> list[dict[str, Any]]:
    with session_scope() as session:
        return service.ingest(session=session, events=events, origin=origin).items


def run_jobs(task: str | None = None, rounds: int = 20) -> int:
    """Run every due job in this process, as a worker would, until none is left."""
    ran = 0
    for _ in range(rounds):
        with session_scope() as session:
            stmt = select(jobs.JobRecord).where(jobs.JobRecord.status.in_(["pending", "scheduled"]))
            if task:
                stmt = stmt.where(jobs.JobRecord.task == task)
            ids = []
            for record in session.scalars(stmt.order_by(jobs.JobRecord.id)):
                record.status, record.run_at = "pending", utcnow()
                ids.append(record.id)
        if not ids:
            return ran
        for job_id in ids:
            jobs.execute(job_id)
            ran += 1
    return ran


def event(ident: str, type: str = "test.thing", **kwargs: Any) -> Event:
    return Event(
        id=ident,
        type=type,
        source=kwargs.pop("source", "tests"),
        time=kwargs.pop("time", utcnow()),
        labels=kwargs.pop("labels", {}),
        data=kwargs.pop("data", {}),
        **kwargs,
    )


def detail(pk: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return queries.event_detail(session=session, row=queries.get_event(session=session, ref=pk))


# --- ingest -------------------------------------------------------------------------------


CATCH_ALL = "- {name: all, events: ['*'], actions: [{type: emit, params: {type: seen}}]}\n"


def test_ingest_stores_events_and_their_processing_job_together() -> None:
    load(CATCH_ALL)
    items = ingest([event("a"), event("b")])
    assert [i["status"] for i in items] == ["accepted", "accepted"]
    with session_scope(readonly=True) as session:
        stored = session.scalars(select(EventRecord).order_by(EventRecord.id)).all()
        assert [(e.event_id, e.status) for e in stored] == [("a", "pending"), ("b", "pending")]
        (job,) = session.scalars(select(jobs.JobRecord)).all()
        assert job.task == "events.process" and job.queue == "alerts"
        assert job.arguments == {"event_ids": [items[0]["id"], items[1]["id"]], "queue": "alerts"}


def test_events_no_rule_can_match_are_settled_without_a_job() -> None:
    load("- {name: deploys, events: [deploy.*], conditions: {labels.env: prod}}\n")
    items = ingest([event("a"), event("b", type="deploy.done", labels={"env": "dev"})])
    ingest([event("c", type="deploy.done", labels={"env": "prod"})])
    with session_scope(readonly=True) as session:
        rows = session.scalars(select(EventRecord).order_by(EventRecord.id)).all()
        assert [(e.event_id, e.status) for e in rows] == [
            ("a", "processed"),
            ("b", "processed"),
            ("c", "pending"),
        ]
        assert rows[0].processed_at is not None and items[0]["status"] == "accepted"
        (job,) = session.scalars(select(jobs.JobRecord)).all()
        assert job.arguments == {"event_ids": [rows[2].id], "queue": "alerts"}


def test_while_a_processing_job_waits_new_events_ride_along(runbooks: list[Any]) -> None:
    load("- {name: r, events: [test.thing], actions: [{type: runbook, params: {runbook: rb}}]}\n")
    for n in range(5):
        ingest([event(f"b{n}")])
    with session_scope(readonly=True) as session:
        (waiting,) = session.scalars(select(jobs.JobRecord.id))
    jobs.execute(waiting)
    assert len(runbooks) == 5
    with session_scope(readonly=True) as session:
        result = jobs.get_job(session=session, job_id=waiting).result
    assert result == {"processed": 5, "matches": 5, "actions": 5, "failed": 0, "swept": 4}

    # a job that a worker has claimed may have swept already: the next event gets its own
    ingest([event("c1")])
    with session_scope() as session:
        claimed = session.scalars(
            select(jobs.JobRecord).where(jobs.JobRecord.status == "pending")
        ).one()
        claimed.status = "running"
    ingest([event("c2")])
    with session_scope(readonly=True) as session:
        fresh = session.scalars(
            select(jobs.JobRecord).where(jobs.JobRecord.status == "pending")
        ).one()
    assert fresh.id != claimed.id and fresh.arguments["event_ids"] == [
        i["id"] for i in detail_ids("c2")
    ]


def detail_ids(event_id: str) -> list[dict[str, Any]]:
    with session_scope(readonly=True) as session:
        return [
            {"id": r.id}
            for r in session.scalars(select(EventRecord).where(EventRecord.event_id == event_id))
        ]


def test_a_drain_past_its_budget_hands_over_to_a_new_job(runbooks: list[Any]) -> None:
    load("- {name: r, events: [test.thing], actions: [{type: runbook, params: {runbook: rb}}]}\n")
    ingest([event(f"x{n}") for n in range(3)])
    with session_scope() as session:
        session.execute(update(jobs.JobRecord).values(status="running"))
    totals = service.drain([], chunk=1, budget_seconds=0)
    assert totals["processed"] == 1
    with session_scope(readonly=True) as session:
        (handover,) = session.scalars(
            select(jobs.JobRecord).where(jobs.JobRecord.status == "pending")
        )
    assert handover.arguments == {"event_ids": [], "queue": "alerts"}
    jobs.execute(handover.id)
    assert len(runbooks) == 3


def test_rolled_back_ingest_leaves_no_event_and_no_job() -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        service.ingest(session=session, events=[event("gone")])
        raise RuntimeError("the request failed after ingest")
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(EventRecord)) == 0
        assert session.scalar(select(func.count()).select_from(jobs.JobRecord)) == 0


def test_duplicates_are_reported_and_not_processed_again(runbooks: list[Any]) -> None:
    load(CATCH_ALL)
    first = ingest([event("x"), event("x"), event("x", source="elsewhere")])
    assert [i["status"] for i in first] == ["accepted", "duplicate", "accepted"]
    assert first[1]["id"] == first[0]["id"]
    again = ingest([event("x")])
    assert again[0]["status"] == "duplicate" and again[0]["id"] == first[0]["id"]
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(EventRecord)) == 2
        assert session.scalar(select(func.count()).select_from(jobs.JobRecord)) == 1


def test_alertmanager_redelivery_is_deduplicated(alertmanager_payload: dict[str, Any]) -> None:
    events = parse_alertmanager(alertmanager_payload)
    assert [i["status"] for i in ingest(events, "alertmanager")] == ["accepted"] * 3
    assert [i["status"] for i in ingest(parse_alertmanager(alertmanager_payload))] == [
        "duplicate"
    ] * 3


def test_too_long_ids_are_refused_with_the_field() -> None:
    with pytest.raises(InvalidInput, match="id: too long"), session_scope() as session:
        service.ingest(session=session, events=[event("x" * 201)])


# --- rules and versions ---------------------------------------------------------------------


def test_rule_versions_change_only_when_the_text_changes() -> None:
    assert load(DISK_RULES)["created"] == 2
    again = load(DISK_RULES)
    assert again["unchanged"] == 2 and again["created"] == again["updated"] == 0
    changed = load(DISK_RULES.replace("severity: critical", "severity: [critical, warning]"))
    assert changed["updated"] == 1 and changed["unchanged"] == 1
    with session_scope(readonly=True) as session:
        shown = rulebook.show_rule(session=session, name="disk-runbook")
        assert shown["active_version"] == 2
        assert [v["version"] for v in shown["versions"]] == [2, 1]
        assert "[critical, warning]" in shown["source"]
        assert shown["file"] == "rules.yaml:2"
        assert len(records_for(session, "event_rule", "disk-runbook")) == 2


def test_a_rule_that_does_not_parse_is_rejected_and_the_old_version_stays(
    runbooks: list[Any], alertmanager_payload: dict[str, Any]
) -> None:
    load(DISK_RULES)
    broken = DISK_RULES.replace("labels.severity: critical", "labels.severity: {gte: 3}")
    with pytest.raises(InvalidInput) as caught:
        load(broken + "\n- name: new-rule\n  events: [x]\n")
    assert caught.value.details["line"] == 6
    assert "unknown operator" in caught.value.details["reason"]
    with session_scope(readonly=True) as session:
        assert {r["name"]: r["active_version"] for r in rulebook.list_rules(session=session)} == {
            "disk-runbook": 1,
            "disk-incident": 1,
        }
    ingest(parse_alertmanager(alertmanager_payload))
    run_jobs()
    assert [c["runbook"] for c in runbooks] == ["disk-cleanup"]  # v1 still acts


def test_each_rule_is_stored_as_its_own_yaml() -> None:
    text = """# storage rules
name: first
events: [a.b]
actions:
  - type: emit
    params: {type: "c.d"}
---
- name: second
  events: [x]
  conditions:
    data.note: |
      two
      lines
- {name: third, events: [y]}
"""
    assert load(text)["created"] == 3
    with session_scope(readonly=True) as session:
        sources = {
            name: rulebook.show_rule(session=session, name=name)["source"]
            for name in ("first", "second", "third")
        }
    assert sources["first"].startswith("name: first\n")
    assert sources["second"] == (
        "name: second\nevents: [x]\nconditions:\n  data.note: |\n    two\n    lines\n"
    )
    assert sources["third"] == "{name: third, events: [y]}\n"


def test_duplicate_names_across_files_are_refused() -> None:
    with pytest.raises(InvalidInput, match="duplicate rule name 'r'"), session_scope() as s:
        rulebook.store_rules(
            session=s,
            files=[("a.yaml", "name: r\nevents: [x]\n"), ("b.yaml", "name: r\nevents: [y]\n")],
        )


def test_prune_deactivates_rules_no_longer_defined_and_activate_brings_them_back() -> None:
    load("- {name: keep, events: [x]}\n- {name: drop, events: [x]}\n")
    result = load("- {name: keep, events: [x]}\n", prune=True)
    assert {r["name"]: r["change"] for r in result["rules"]} == {
        "keep": "unchanged",
        "drop": "deactivated",
    }
    with session_scope() as session:
        assert [r["name"] for r in rulebook.list_rules(session=session)] == ["keep"]
        rulebook.activate_rule_version(session=session, name="drop", version=1)
    with session_scope(readonly=True) as session:
        assert [r["name"] for r in rulebook.list_rules(session=session)] == ["drop", "keep"]


def test_compiled_rules_are_cached_until_the_active_versions_change() -> None:
    load("- {name: one, events: [x]}\n")
    with session_scope(readonly=True) as session:
        first = rulebook.active_rules(session=session)
        assert rulebook.active_rules(session=session) is first
    load("- {name: one, events: [x, y]}\n")
    with session_scope(readonly=True) as session:
        second = rulebook.active_rules(session=session)
    assert second is not first
    assert second.ruleset.get("one").events == ("x", "y")  # type: ignore[union-attr]
    assert second.versions == {"one": 2}


# --- processing -----------------------------------------------------------------------------


def test_alert_is_matched_and_its_actions_recorded(
    runbooks: list[Any], alertmanager_payload: dict[str, Any]
) -> None:
    load(DISK_RULES)
    items = ingest(parse_alertmanager(alertmanager_payload), "alertmanager")
    run_jobs()
    first = detail(items[0]["id"])
    by_rule = {m["rule_name"]: m for m in first["matches"]}
    (run,) = by_rule["disk-runbook"]["actions"]
    (call,) = runbooks
    assert call == {
        "runbook": "disk-cleanup",
        "inputs": {"device": "oca-ams-017", "mount": "/cache"},
        "target": None,
        "trigger": {
            "kind": "event",
            "event": items[0]["id"],
            "event_id": items[0]["event_id"],
            "type": "alertmanager.alert.firing",
            "source": "alertmanager",
            "rule": "disk-runbook",
            "action_run": run["id"],
            "hops": 1,
        },
    }
    assert first["status"] == "processed" and first["match_count"] == 2
    assert run["status"] == "succeeded" and run["response"]["execution_id"] == 1
    assert run["params"]["inputs"]["device"] == "oca-ams-017"
    (incident_run,) = by_rule["disk-incident"]["actions"]
    assert incident_run["response"]["change"] == "opened"
    resolved = detail(items[2]["id"])
    assert [m["rule_name"] for m in resolved["matches"]] == ["disk-incident"]
    assert resolved["matches"][0]["actions"][0]["response"]["change"] == "none"


def test_processing_twice_does_nothing_the_second_time(runbooks: list[Any]) -> None:
    load("- {name: r, events: [test.thing], actions: [{type: runbook, params: {runbook: rb}}]}\n")
    (item,) = ingest([event("once")])
    run_jobs()
    with session_scope() as session:
        assert service.process_events(session=session, event_ids=[item["id"]])["processed"] == 0
    assert len(runbooks) == 1
    with session_scope(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(MatchRecord)) == 1


def test_monitor_rules_render_their_actions_without_running_them(runbooks: list[Any]) -> None:
    load(
        "- name: watch\n  events: [test.thing]\n  mode: monitor\n"
        "  actions: [{type: runbook, params: {runbook: 'rb-{{ labels.site }}'}}]\n"
        "- {name: silent, events: [test.thing], mode: 'off'}\n"
    )
    (item,) = ingest([event("m", labels={"site": "ams1"})])
    run_jobs()
    (match,) = detail(item["id"])["matches"]
    assert match["rule_name"] == "watch" and match["acted"] is False
    (run,) = match["actions"]
    assert run["status"] == "skipped" and run["params"] == {"runbook": "rb-ams1"}
    assert runbooks == []


def test_a_failing_template_fails_its_action_only(runbooks: list[Any]) -> None:
    load(
        "- name: r\n  events: [test.thing]\n  actions:\n"
        "    - {type: runbook, params: {runbook: 'rb-{{ labels.missing }}'}}\n"
        "    - {type: runbook, params: {runbook: fine}}\n"
    )
    (item,) = ingest([event("t")])
    run_jobs()
    runs = detail(item["id"])["matches"][0]["actions"]
    assert [r["status"] for r in runs] == ["failed", "succeeded"]
    assert runs[0]["error"].startswith("template: actions[0].params.runbook: undefined")
    assert runs[0]["params"] is None
    assert [c["runbook"] for c in runbooks] == ["fine"]


def test_runbook_action_fails_clearly_without_remediation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "popcorn.remediation.api", None)
    load("- {name: r, events: [test.thing], actions: [{type: runbook, params: {runbook: x}}]}\n")
    (item,) = ingest([event("nr")])
    run_jobs()
    (run,) = detail(item["id"])["matches"][0]["actions"]
    assert run["status"] == "failed"
    assert "the remediation domain is not installed" in run["error"]


def test_failed_runbook_can_be_replayed_once_fixed(runbooks: list[Any]) -> None:
    load(
        "- {name: r, events: [test.thing],\n"
        "   actions: [{type: runbook, params: {runbook: no-such-runbook}}]}\n"
    )
    (item,) = ingest([event("rp")])
    run_jobs()
    (run,) = detail(item["id"])["matches"][0]["actions"]
    assert run["status"] == "failed" and "no runbook 'no-such-runbook'" in run["error"]
    with session_scope() as session:
        dead = queries.list_action_runs(
            session=session, params=parse_list_params({}), dead_letters=True
        )
        assert [r.id for r in dead.items] == [run["id"]]
        session.execute(
            update(ActionRun).where(ActionRun.id == run["id"]).values(params={"runbook": "fixed"})
        )
    with session_scope() as session:
        replayed = queries.replay_action(session=session, run_id=run["id"])
        assert replayed.status == "succeeded" and replayed.replays == 1
    assert [c["runbook"] for c in runbooks] == ["fixed"]


def test_throttle_is_shared_through_redis() -> None:
    load(
        "- name: r\n  events: [test.thing]\n  throttle: {key: '{{ labels.site }}', window: 1h}\n"
        "  actions: [{type: emit, params: {type: test.out}}]\n"
    )
    ingest([event("1", labels={"site": "a"}), event("2", labels={"site": "a"})])
    ingest([event("3", labels={"site": "b"})])
    run_jobs(task="events.process", rounds=1)
    with session_scope(readonly=True) as session:
        rows = session.execute(select(MatchRecord.suppressed).order_by(MatchRecord.id)).all()
    assert [r[0] for r in rows] == [None, "throttle", None]
    assert jobs.get_redis().exists(rulebook.RATE_PREFIX + "throttle:r:a")


def test_reprocessing_the_same_event_is_not_a_repeat() -> None:
    state = rulebook.RedisRateState()
    state.owner = "17"
    assert state.seen("dedupe:r:k", 60, 0) is False
    assert state.seen("dedupe:r:k", 60, 0) is False  # same event again after a failed attempt
    state.owner = "18"
    assert state.seen("dedupe:r:k", 60, 0) is True
    state.owner = None
    assert state.seen("dedupe:r:k", 60, 0) is True


def test_job_action_enqueues_public_tasks_only() -> None:
    load(
        "- name: r\n  events: [test.thing]\n  actions:\n"
        "    - {type: job, params: {job: core.echo, arguments: {site: '{{ labels.site }}'}}}\n"
        "    - {type: job, params: {job: events.retention}}\n"
        "    - {type: job, params: {job: no.such.task}}\n"
    )
    (item,) = ingest([event("j", labels={"site": "lhr"})])
    run_jobs(task="events.process")
    runs = detail(item["id"])["matches"][0]["actions"]
    assert [r["status"] for r in runs] == ["succeeded", "failed", "failed"]
    assert "internal" in runs[1]["error"] and "no registered task" in runs[2]["error"]
    with session_scope(readonly=True) as session:
        job = jobs.get_job(session=session, job_id=runs[0]["response"]["job_id"])
        assert job.task == "core.echo" and job.arguments == {"site": "lhr"}


def test_emit_chains_stop_at_the_hop_limit() -> None:
    load(
        "- name: echo\n  events: [loop.*]\n  actions:\n"
        "    - {type: emit, params: {type: loop.again, data: {n: '{{ data.n + 1 }}'}}}\n"
    )
    ingest([event("seed", type="loop.start", data={"n": 0})])
    run_jobs()
    with session_scope(readonly=True) as session:
        chain = session.scalars(select(EventRecord).order_by(EventRecord.id)).all()
        assert [e.hops for e in chain] == list(range(actions.MAX_HOPS + 1))
        assert [e.data["n"] for e in chain] == list(range(actions.MAX_HOPS + 1))
        assert chain[1].source == "popcorn/rules/echo" and chain[1].origin == "emit"
        last_run = session.scalars(select(ActionRun).order_by(ActionRun.id.desc())).first()
        assert last_run is not None and last_run.status == "failed"
        assert last_run.error.startswith("hop limit")


def test_incidents_open_update_resolve_and_reopen() -> None:
    load(
        "- name: inc\n  events: ['svc.*']\n  actions:\n"
        "    - type: incident\n      params: {key: '{{ subject }}', title: '{{ subject }} is down',"
        " severity: \"{{ labels.sev | default('') }}\"}\n"
    )
    ingest([event("1", type="svc.down", subject="api", labels={"sev": "warning"})])
    ingest([event("2", type="svc.down", subject="api", labels={"sev": "critical"})])
    ingest([event("3", type="svc.down", subject="db", labels={"sev": "warning"})])
    ingest([event("4", type="svc.up", subject="api", data={"status": "resolved"})])
    run_jobs()
    ingest([event("5", type="svc.down", subject="api", labels={"sev": "warning"})])
    run_jobs()
    with session_scope(readonly=True) as session:
        rows = session.scalars(select(Incident).order_by(Incident.id)).all()
        assert [(i.key, i.status, i.event_count, i.severity) for i in rows] == [
            ("api", "resolved", 3, "critical"),
            ("db", "open", 1, "warning"),
            ("api", "open", 1, "warning"),
        ]
        shown = queries.incident_detail(session=session, incident=rows[0])
        assert [e["change"] for e in shown["events"]] == ["opened", "updated", "resolved"]
        types = [
            e.type
            for e in session.scalars(select(outbox.OutboxEvent).order_by(outbox.OutboxEvent.id))
        ]
    assert types.count("events.incident.opened") == 3
    assert types.count("events.incident.resolved") == 1


# --- domain events, search, retention ----------------------------------------------------------


def test_domain_events_become_events_that_rules_match() -> None:
    outbox.unsubscribe("events.ingest")
    import popcorn.events.subscribers  # noqa: F401  (registers events.ingest)

    with session_scope() as session:
        outbox._cursor(session, "events.ingest")  # start at the current end
    load(
        "- name: on-device\n  events: [inventory.device.*]\n"
        "  conditions: {labels.object_id: '42'}\n"
        "  actions: [{type: emit, params: {type: seen.device}}]\n"
    )
    with session_scope() as session:
        outbox.emit(session, "inventory.device.updated", "device", 42, {"status": "failed"})
    while outbox.dispatch_once():
        pass
    run_jobs()
    with session_scope(readonly=True) as session:
        row = session.scalar(
            select(EventRecord).where(EventRecord.type == "inventory.device.updated")
        )
        assert row is not None
        assert row.source == "popcorn/device" and row.subject == "42" and row.origin == "outbox"
        assert row.data == {"status": "failed"} and row.status == "processed"
        queues = session.scalars(
            select(jobs.JobRecord.queue).where(jobs.JobRecord.task == "events.process")
        )
        assert set(queues) == {"default"}  # domain events never delay alerts on "alerts"
        assert row.match_count == 1


def test_search_by_labels_text_and_time(alertmanager_payload: dict[str, Any]) -> None:
    ingest(parse_alertmanager(alertmanager_payload))
    ingest([event("old", time=utcnow() - timedelta(days=2), data={"note": "Disk 100%_full"})])

    def found(**args: Any) -> list[str]:
        with session_scope(readonly=True) as session:
            result = queries.list_events(session=session, params=parse_list_params(args))
            return [r.subject or r.event_id for r in result.items]

    assert found(label="severity:critical") == ["CacheDiskFull", "CacheDiskFull"]
    assert found(label=["severity:critical", "instance:oca-ams-003:9100"]) == ["CacheDiskFull"]
    assert found(q="91% FULL") == ["CacheDiskFull"]
    assert found(q="100%_full") == ["old"]
    assert found(q="100%x") == []
    assert found(time__lt=(utcnow() - timedelta(days=1)).isoformat(), type="test.thing") == ["old"]
    with pytest.raises(InvalidInput, match="expected key:value"):
        found(label="severity")
    with pytest.raises(InvalidInput, match="unknown filter"):
        found(colour="red")


def test_retention_deletes_old_events_with_their_matches(runbooks: list[Any]) -> None:
    load("- {name: r, events: [test.thing], actions: [{type: runbook, params: {runbook: rb}}]}\n")
    ingest([event("old"), event("new")])
    run_jobs()
    with session_scope() as session:
        session.execute(
            update(EventRecord)
            .where(EventRecord.event_id == "old")
            .values(received_at=utcnow() - timedelta(days=30))
        )
        assert session.scalar(
            select(jobs.Schedule.task).where(jobs.Schedule.name == "events.retention")
        )
        assert (
            event_settings.update_settings(session=session, retention_days=7)["retention_days"] == 7
        )
    with session_scope() as session:
        assert event_settings.apply_retention(session=session)["deleted"] == 1
    with session_scope(readonly=True) as session:
        assert [e.event_id for e in session.scalars(select(EventRecord))] == ["new"]
        assert session.scalar(select(func.count()).select_from(MatchRecord)) == 1
        assert session.scalar(select(func.count()).select_from(ActionRun)) == 1


def test_explain_tells_why_rules_match_or_not(alertmanager_payload: dict[str, Any]) -> None:
    load(DISK_RULES)
    events = rulebook.events_from_sample(alertmanager_payload)
    with session_scope(readonly=True) as session:
        results = rulebook.explain(session=session, events=events[1:2])
    (only,) = results
    by_rule = {r["rule"]: r for r in only["rules"]}
    assert by_rule["disk-incident"]["matched"] is True
    assert by_rule["disk-incident"]["actions"][0]["params"]["severity"] == "warning"
    assert by_rule["disk-runbook"]["matched"] is False
    assert "labels.severity" in by_rule["disk-runbook"]["reason"]
    assert "warning" in by_rule["disk-runbook"]["reason"]


def test_redis_outage_during_matching_leaves_events_pending_for_the_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import redis

    load(
        "- name: r\n  events: [test.thing]\n  dedupe: 10m\n"
        "  actions: [{type: emit, params: {type: test.out}}]\n"
    )
    (item,) = ingest([event("r1")])

    class Down:
        def set(self, *_args: Any, **_kwargs: Any) -> None:
            raise redis.ConnectionError("Connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(jobs, "get_redis", lambda: Down())
        with pytest.raises(redis.ConnectionError):
            service.drain([item["id"]])
    assert detail(item["id"])["status"] == "pending"
    assert service.drain([item["id"]])["processed"] == 1
    assert detail(item["id"])["matches"][0]["acted"] is True
