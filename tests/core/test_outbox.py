"""Domain events: written with the change, delivered at least once and in order, resumed
after crashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from popcorn_testing import Processes, wait_until
from sqlalchemy.orm import Session

from popcorn import outbox
from popcorn.db import session_scope
from popcorn.outbox import DeadLetter, DomainEvent, SubscriberCursor


@pytest.fixture
def received() -> Any:
    """A subscriber that records deliveries and can be told to fail."""
    state: dict[str, Any] = {"events": [], "fail_on": set(), "failures": 0}

    def handler(event: DomainEvent, session: Session) -> None:
        if event.payload.get("n") in state["fail_on"]:
            state["failures"] += 1
            raise RuntimeError("subscriber down")
        state["events"].append((event.object_id, event.payload["n"]))

    outbox.subscribe("test.recorder", "device.*")(handler)
    with session_scope() as session:  # start the cursor before any event
        outbox._cursor(session, "test.recorder")
    yield state
    outbox.unsubscribe("test.recorder")


def emit_many(items: list[tuple[str, int]], event_type: str = "device.changed") -> None:
    with session_scope() as session:
        for object_id, n in items:
            outbox.emit(session, event_type, "device", object_id, {"n": n})


def test_events_are_delivered_in_order_per_object(received: Any) -> None:
    emit_many([("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)])
    emit_many([("x", 0)], event_type="site.changed")  # not matched by "device.*"
    outbox.dispatch_once()
    assert received["events"] == [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]
    outbox.dispatch_once()
    assert len(received["events"]) == 5  # nothing twice once acknowledged


def test_rolled_back_change_emits_nothing(received: Any) -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        outbox.emit(session, "device.changed", "device", "a", {"n": 1})
        raise RuntimeError("boom")
    outbox.dispatch_once()
    assert received["events"] == []


def test_failing_subscriber_keeps_order_and_retries(received: Any) -> None:
    emit_many([("a", 1), ("a", 2), ("a", 3)])
    received["fail_on"] = {2}
    outbox.dispatch_once()
    # at least once: a failed batch is retried event by event, so repeats are allowed
    assert list(dict.fromkeys(received["events"])) == [("a", 1)]
    with session_scope(readonly=True) as session:
        cursor = session.get(SubscriberCursor, "test.recorder")
        assert (
            cursor is not None and cursor.attempts == 1 and "subscriber down" in cursor.last_error
        )
        assert cursor.retry_at is not None
    received["fail_on"] = set()
    with session_scope() as session:
        cursor = session.get(SubscriberCursor, "test.recorder")
        assert cursor is not None
        cursor.retry_at = None  # skip the backoff wait
    outbox.dispatch_once()
    assert list(dict.fromkeys(received["events"])) == [("a", 1), ("a", 2), ("a", 3)]


def test_poison_event_goes_to_dead_letters_after_max_attempts(received: Any) -> None:
    emit_many([("a", 1), ("a", 2)])
    received["fail_on"] = {1}
    for _ in range(outbox.MAX_ATTEMPTS):
        with session_scope() as session:
            cursor = session.get(SubscriberCursor, "test.recorder")
            if cursor is not None:
                cursor.retry_at = None
        outbox.dispatch_once()
    outbox.dispatch_once()  # the dead-lettered event no longer blocks the next one
    assert set(received["events"]) == {("a", 2)}
    with session_scope(readonly=True) as session:
        dead = session.query(DeadLetter).one()
        assert dead.subscriber == "test.recorder"
        dead_id = dead.id
    received["fail_on"] = set()
    with session_scope() as session:
        outbox.replay_dead_letter(session=session, dead_letter_id=dead_id)
    assert ("a", 1) in received["events"]


def test_subscriber_writes_commit_with_the_cursor(received: Any) -> None:
    """A crash inside delivery rolls back the subscriber's writes and the cursor together."""
    from popcorn.audit import AuditRecord, record_change

    def writer(event: DomainEvent, session: Session) -> None:
        record_change(session, "seen", "device", event.object_id)
        if event.payload["n"] == 2:
            raise RuntimeError("crash mid-batch")

    outbox.subscribe("test.writer", "device.*")(writer)
    try:
        with session_scope() as session:
            outbox._cursor(session, "test.writer")
        emit_many([("a", 1), ("a", 2)])
        outbox.deliver(outbox.REGISTRY.subscribers["test.writer"])
        with session_scope(readonly=True) as session:
            assert session.query(AuditRecord).filter_by(action="seen").count() == 1
            cursor = session.get(SubscriberCursor, "test.writer")
            assert cursor is not None and cursor.attempts == 1
    finally:
        outbox.unsubscribe("test.writer")


def test_scheduler_process_delivers_and_resumes_after_being_killed(
    processes: Processes, tmp_path: Path
) -> None:
    log = tmp_path / "delivered.log"
    scheduler = processes.start("scheduler")
    wait_until(lambda: _cursor_exists("test.file-log"), timeout=30)
    with session_scope() as session:
        for n in range(50):
            outbox.emit(session, "test.event", "thing", str(n % 5), {"n": n, "log": str(log)})
    wait_until(lambda: log.exists() and len(log.read_text().splitlines()) >= 10, timeout=30)
    processes.kill(scheduler)
    with session_scope() as session:
        for n in range(50, 80):
            outbox.emit(session, "test.event", "thing", str(n % 5), {"n": n, "log": str(log)})
    processes.start("scheduler")
    wait_until(
        lambda: len({line.split()[2] for line in log.read_text().splitlines()}) == 80, timeout=60
    )
    lines = [line.split() for line in log.read_text().splitlines()]
    for obj in map(str, range(5)):
        seq = [int(n) for _, o, n in lines if o == obj]
        deduped = list(dict.fromkeys(seq))
        assert deduped == sorted(deduped)  # in order per object, duplicates allowed


def _cursor_exists(name: str) -> bool:
    with session_scope(readonly=True) as session:
        return session.get(SubscriberCursor, name) is not None
