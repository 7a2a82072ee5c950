"""A device that joins adopts every queued test it could run, read from the queue a page at
a time: the same tests as a read of the whole queue would give it, however many pages."""

from __future__ import annotations

from typing import Any

import pytest
from lab_kit import FakeAgent, device
from sqlalchemy import select

API = "/api/v1/devicelab"


def _lab(api: Any) -> None:
    """Two tagged devices; tests needing tag a, tag b or nothing; three runs, one of them on
    a device set the newcomer will not match."""
    for name, tags in (("tv0", ["a", "b"]), ("tv1", ["b"])):
        spec = device(name, "tv-a", tags=tags, slots=2)
        assert api.post(f"{API}/devices", json=spec, role="operator").status_code == 201
    requires: list[dict[str, Any]] = [{"tags": ["a"]}, {"tags": ["b"]}, {}]
    catalog = [
        {
            "name": f"case.{n:03d}",
            "suite": "deep",
            "requires": requires[n % 3],
            "expected_duration_s": 10 + (n % 4) * 10,  # ties, so the page order needs ids
        }
        for n in range(25)
    ]
    assert api.post(f"{API}/tests", json={"tests": catalog}, role="operator").status_code == 200
    suite = {"name": "deep", "query": "suite:deep"}
    assert api.post(f"{API}/suites", json=suite, role="operator").status_code in (200, 201)
    for build, devices in (("9.0", "family:tv-a"), ("9.1", "tag:b"), ("9.0", "family:tv-a")):
        started = api.post(
            f"{API}/runs",
            json={"build": {"app_version": build}, "suite": "deep", "devices": devices},
            role="operator",
        )
        assert started.status_code == 201, started.json


def _whole_queue(session: Any, found: Any) -> set[int]:
    """What adopting over the whole queue at once gives the device (the rule, row by row)."""
    from popcorn.devicelab import placement, service
    from popcorn.devicelab import query as q
    from popcorn.devicelab.models import LabExecution, LabRun, LabTest

    rows = session.execute(
        select(LabExecution.id, LabExecution.candidates, LabRun.devices, LabTest.requires)
        .join(LabRun, LabRun.id == LabExecution.run_id)
        .join(LabTest, LabTest.id == LabExecution.test_id)
        .where(
            LabExecution.status == "queued",
            LabExecution.family == found.family,
            LabRun.status == "running",
        )
    ).all()
    record, caps = service.device_record(found), service.capability_record(found)
    return {
        ident
        for ident, candidates, devices, requires in rows
        if found.id not in candidates
        and q.matches(q.parse(devices, q.DEVICE_FIELDS), record)
        and placement.capable(requires, caps)
    }


def test_adopt_reads_the_queue_in_pages_and_takes_what_the_whole_queue_gives(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from popcorn.db import session_scope
    from popcorn.devicelab import scheduling
    from popcorn.devicelab.models import LabDevice, LabExecution

    _lab(api)
    monkeypatch.setattr(scheduling, "ADOPT_PAGE", 3)
    spec = device("tv2", "tv-a", tags=["a"], slots=2)
    assert api.post(f"{API}/devices", json=spec, role="operator").status_code == 201
    with session_scope() as session:
        found = session.scalar(select(LabDevice).where(LabDevice.name == "tv2"))
        assert found is not None
        expected = _whole_queue(session, found)
        # More than a page of tests to adopt, in more than one build, and some it must not.
        assert len(expected) > 3 * scheduling.ADOPT_PAGE
        before = dict(session.execute(select(LabExecution.id, LabExecution.candidates)).all())
        adopted = scheduling.adopt(session=session, device=found)
        assert adopted == len(expected)
    with session_scope(readonly=True) as session:
        after = dict(session.execute(select(LabExecution.id, LabExecution.candidates)).all())
        counts = dict(session.execute(select(LabExecution.id, LabExecution.candidate_count)).all())
    assert {i for i in after if found.id in after[i]} == expected
    for ident, candidates in after.items():  # others' candidates untouched, counts kept
        extra = [found.id] if ident in expected else []
        assert candidates == [*before[ident], *extra]
        assert counts[ident] == len(candidates)
    with session_scope() as session:
        again = session.get(LabDevice, found.id)
        assert again is not None
        assert scheduling.adopt(session=session, device=again) == 0


def test_a_registering_agent_adopts_across_pages(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from popcorn.db import session_scope
    from popcorn.devicelab import scheduling
    from popcorn.devicelab.models import LabDevice, LabExecution

    _lab(api)
    monkeypatch.setattr(scheduling, "ADOPT_PAGE", 2)
    FakeAgent(api, device("tv3", "tv-a", tags=["b"], slots=2))
    with session_scope(readonly=True) as session:
        found = session.scalar(select(LabDevice).where(LabDevice.name == "tv3"))
        assert found is not None
        rows = session.execute(
            select(LabExecution.candidates).where(LabExecution.status == "queued")
        ).all()
        assert _whole_queue(session, found) == set()  # everything it could run, it has
    mine = [c for (c,) in rows if found.id in c]
    assert len(mine) > 2 * scheduling.ADOPT_PAGE
