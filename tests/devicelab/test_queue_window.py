"""A beat places from a window of the queue read in placement order: it takes what
placement over the whole queue would take, and agents beating at once never share a test."""

from __future__ import annotations

import random
import threading
from typing import Any

from lab_kit import device
from sqlalchemy import func, select, text, update

API = "/api/v1/devicelab"
DEVICES = 6
SLOTS = 2
TAGS = ("a", "b", "c")


def _lab(api: Any, *, tests: int, builds: int, tagged: bool = True) -> None:
    """Devices of one family with tags that make candidate sets of several sizes (or all
    alike), tests of distinct durations needing one tag or none, one run per build."""
    rng = random.Random(11)
    for i in range(DEVICES):
        tags = [t for j, t in enumerate(TAGS) if i % (j + 2) == 0] if tagged else []
        spec = device(f"tv{i}", "tv-a", tags=tags, slots=SLOTS)
        assert api.post(f"{API}/devices", json=spec, role="operator").status_code == 201
    durations = rng.sample(range(10, 10 * tests + 10), tests)
    catalog = [
        {
            "name": f"case.{n:03d}",
            "suite": "deep",
            "requires": {"tags": [TAGS[n % 4]]} if tagged and n % 4 < len(TAGS) else {},
            "expected_duration_s": durations[n],
        }
        for n in range(tests)
    ]
    assert api.post(f"{API}/tests", json={"tests": catalog}, role="operator").status_code == 200
    assert api.post(
        f"{API}/suites", json={"name": "deep", "query": "suite:deep"}, role="operator"
    ).status_code in (200, 201)
    for b in range(builds):
        started = api.post(
            f"{API}/runs",
            json={"build": {"app_version": f"9.{b}"}, "suite": "deep", "devices": "family:tv-a"},
            role="operator",
        )
        assert started.status_code == 201, started.json


def _whole_queue(session: Any, found: Any, slots: int) -> list[int]:
    """What placement takes for a device when it is given every queued execution."""
    from popcorn.devicelab import placement, service
    from popcorn.devicelab.models import LabExecution, LabRun, LabTest

    rows = session.execute(
        select(LabExecution.id, LabExecution.build_id, LabExecution.candidates, LabTest)
        .join(LabRun, LabRun.id == LabExecution.run_id)
        .join(LabTest, LabTest.id == LabExecution.test_id)
        .where(LabExecution.status == "queued", LabRun.status == "running")
        .where(LabExecution.family == found.family)
        .order_by(LabExecution.id)
    ).all()
    placer = placement.Placer()
    for build in sorted({r[1] for r in rows}):
        placer.build_order[build] = build
    placer.running.update(
        session.execute(
            select(LabExecution.build_id, func.count())
            .where(LabExecution.status.in_(service.ACTIVE))
            .group_by(LabExecution.build_id)
        ).all()
    )
    placer.add_all(
        placement.Job(i, b, frozenset(c), t.expected_duration_s)
        for i, b, c, t in rows
        if found.id in c
    )
    taken = [placer.take(found.id) for _ in range(slots)]
    return sorted(job.id for job in taken if job is not None)


def test_a_beat_takes_what_placement_over_the_whole_queue_would(api: Any) -> None:
    from popcorn.db import session_scope
    from popcorn.devicelab import dispatch
    from popcorn.devicelab.models import LabDevice, LabExecution

    _lab(api, tests=40, builds=3)
    changed = {"name": "case.005", "suite": "deep", "expected_duration_s": 5000}
    for beat in range(36):
        if beat == 12:  # the catalog's new duration reorders what is already queued
            updated = api.post(f"{API}/tests", json={"tests": [changed]}, role="operator")
            assert updated.json["updated"] == 1
        with session_scope() as session:
            found = session.scalar(select(LabDevice).where(LabDevice.name == f"tv{beat % DEVICES}"))
            assert found is not None
            expected = _whole_queue(session, found, SLOTS)
            taken = dispatch.take_work(session=session, device=found, slots=SLOTS)
            assert sorted(e.id for e in taken) == expected
            assert all(found.id in e.candidates for e in taken)
            if beat % 3 == 2:  # some finish, so fair share between builds moves
                session.execute(
                    update(LabExecution)
                    .where(LabExecution.id == min(e.id for e in taken))
                    .values(status="passed")
                )
    with session_scope(readonly=True) as session:
        longest = session.scalar(
            select(LabExecution.device_id).where(
                LabExecution.test_name == "case.005", LabExecution.status != "queued"
            )
        )
    assert longest is not None  # the lengthened test was taken early, in some build


def test_agents_beating_at_once_never_get_the_same_test(api: Any) -> None:
    from popcorn.db import session_scope
    from popcorn.devicelab import dispatch
    from popcorn.devicelab.models import LabDevice, LabExecution

    _lab(api, tests=24, builds=2, tagged=False)  # every agent wants the same tests
    errors: list[BaseException] = []
    seen: set[int] = set()
    for _ in range(3):
        taken: dict[str, list[int]] = {f"tv{i}": [] for i in range(DEVICES)}
        barrier = threading.Barrier(DEVICES)

        def beat(name: str, taken: dict[str, list[int]], barrier: threading.Barrier) -> None:
            try:
                barrier.wait(timeout=30)
                with session_scope() as session:
                    found = session.scalar(select(LabDevice).where(LabDevice.name == name))
                    assert found is not None
                    answer = dispatch.poll(session=session, device=found, running=[])
                    taken[name] = [a["execution"] for a in answer["assignments"]]
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=beat, args=(n, taken, barrier)) for n in taken]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        everything = [i for ids in taken.values() for i in ids]
        assert len(everything) == len(set(everything))  # nobody shares a test
        assert not seen & set(everything)  # and nobody takes one that was handed out
        seen |= set(everything)
        # every free agent got work: a beat skips what another beat holds
        assert {name: len(ids) for name, ids in taken.items()} == dict.fromkeys(taken, SLOTS)
        with session_scope() as session:
            holders = dict(
                session.execute(
                    select(LabExecution.id, LabExecution.device_name).where(
                        LabExecution.id.in_(everything)
                    )
                ).all()
            )
            assert holders == {i: name for name, ids in taken.items() for i in ids}
            session.execute(  # all finished: every agent is free again next round
                update(LabExecution)
                .where(LabExecution.status == "assigned")
                .values(status="passed")
            )


def test_a_beat_does_not_take_what_an_unfinished_beat_holds(api: Any) -> None:
    """One beat has claimed its tests and not committed; a second beat meanwhile gets
    other tests, a full share (PostgreSQL skips the locked rows at once; SQLite's second
    writer waits for the first)."""
    from popcorn.db import get_engine, session_scope
    from popcorn.devicelab import dispatch
    from popcorn.devicelab.models import LabDevice

    _lab(api, tests=8, builds=1, tagged=False)
    postgres = get_engine().dialect.name == "postgresql"
    second: dict[str, Any] = {}

    def beat() -> None:
        with session_scope() as session:
            found = session.scalar(select(LabDevice).where(LabDevice.name == "tv1"))
            assert found is not None
            second["ids"] = [
                e.id for e in dispatch.take_work(session=session, device=found, slots=SLOTS)
            ]

    with session_scope() as session:
        found = session.scalar(select(LabDevice).where(LabDevice.name == "tv0"))
        assert found is not None
        first = [e.id for e in dispatch.take_work(session=session, device=found, slots=SLOTS)]
        thread = threading.Thread(target=beat)
        thread.start()
        if postgres:
            thread.join(timeout=60)
            assert "ids" in second  # it did not wait for the first beat to commit
    thread.join(timeout=60)
    assert len(first) == len(second["ids"]) == SLOTS
    assert not set(first) & set(second["ids"])


def test_the_last_two_results_handed_in_at_once_end_the_run(api: Any) -> None:
    """Two agents report a run's last two results in overlapping transactions: whichever
    counts second sees the other's result, so the run ends (it once stayed running)."""
    from popcorn_testing import wait_until

    from popcorn.db import get_engine, session_scope
    from popcorn.devicelab import dispatch
    from popcorn.devicelab.models import LabDevice, LabRun
    from popcorn.devicelab.schemas import AgentResult

    _lab(api, tests=2, builds=1, tagged=False)
    held: dict[str, int] = {}
    for name in ("tv0", "tv1"):
        with session_scope() as session:
            found = session.scalar(select(LabDevice).where(LabDevice.name == name))
            assert found is not None
            held[name] = dispatch.take_work(session=session, device=found, slots=1)[0].id

    def report(session: Any, name: str) -> None:
        found = session.scalar(select(LabDevice).where(LabDevice.name == name))
        result = AgentResult(execution=held[name], status="passed", duration_s=1.0)
        recorded, refused = dispatch.report_results(session=session, device=found, results=[result])
        assert len(recorded) == 1 and not refused

    def second() -> None:
        with session_scope() as session:
            report(session, "tv1")

    engine = get_engine()

    def blocked() -> bool:
        """Whether the second report waits on a lock (a new transaction: fresh statistics)."""
        with engine.connect() as conn:
            return bool(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                ).scalar()
            )

    with session_scope() as session:
        report(session, "tv0")  # counted: tv1's test is still running; not committed yet
        thread = threading.Thread(target=second)
        thread.start()
        if engine.dialect.name == "postgresql":  # let it reach its count (or wait on ours)
            wait_until(lambda: not thread.is_alive() or blocked())
    thread.join(timeout=60)
    assert not thread.is_alive()
    with session_scope(readonly=True) as session:
        assert session.scalars(select(LabRun.status)).all() == ["passed"]
