"""Compaction of a steady sender's many small objects, and the write order it must keep: the
batch that commits last wins, whenever it wrote its objects and whatever was merged meanwhile."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from popcorn import jobs
from popcorn.db import session_scope
from popcorn.signals import service, store
from popcorn.signals.models import SampleFile, Series

T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp())


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def ingest(samples: list[list[float]]) -> service.IngestResult:
    with session_scope() as session:
        return service.ingest_json(
            session=session, payload={"series": [{"metric": "m", "samples": samples}]}
        )


def listed() -> list[tuple[str, int]]:
    with session_scope(readonly=True) as session:
        return [
            (f.key, f.rows) for f in session.scalars(select(SampleFile).order_by(SampleFile.seq))
        ]


def values() -> dict[int, float]:
    with session_scope(readonly=True) as session:
        res = service.query(session=session, selector="m", start=T0, end=T0 + 3600)
        count = session.scalars(select(Series.sample_count)).one()
    got = dict(zip(res.timestamps[0].astype(int).tolist(), res.values[0].tolist(), strict=True))
    assert count == len(got)  # the series' count is what a read returns
    return got


def test_runs_of_small_objects_merge_and_a_large_one_is_left_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store, "SMALL_ROWS", 4)
    for i in range(3):  # a steady sender: one small object per request
        ingest([[T0 + i, float(i)]])
    ingest([[T0 + 10 + i, 10.0] for i in range(5)] + [[T0, 100.0]])  # a file: 6 rows
    for i in range(3):
        ingest([[T0 + 20 + i, 20.0], [T0 + 10, 99.0]])  # replaces one sample of the file
    large = [key for key, rows in listed() if rows >= 4]
    assert len(listed()) == 7 and len(large) == 1
    before = values()

    summary = service.compact(grace_seconds=0)
    after = listed()
    assert len(after) == 3 and [k for k, _ in after][1] == large[0]  # the file kept its object
    assert summary["duplicates_removed"] == 2  # T0 + 10 sent three times in one run
    assert values() == before
    assert before[T0] == 100.0 and before[T0 + 10] == 99.0  # later writes still win

    service.compact(grace_seconds=0)  # nothing left to merge: the day is not rewritten
    assert listed() == after


def test_the_batch_that_commits_last_wins_even_past_a_compaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest([[T0, 1.0], [T0 + 60, 1.0]])
    written, go = threading.Event(), threading.Event()
    write = store.write_sorted

    def write_then_wait(*args: Any, **kwargs: Any) -> int:
        n = write(*args, **kwargs)
        if threading.current_thread().name == "slow":
            written.set()
            assert go.wait(30)
        return n

    monkeypatch.setattr(store, "write_sorted", write_then_wait)
    slow = threading.Thread(target=lambda: ingest([[T0, 3.0], [T0 + 120, 3.0]]), name="slow")
    slow.start()
    assert written.wait(30)  # its object is written (earliest), its batch not committed
    ingest([[T0, 2.0], [T0 + 60, 2.0]])
    service.compact(grace_seconds=0)  # merges the two committed objects
    go.set()
    slow.join(30)

    assert values() == {T0: 3.0, T0 + 60: 2.0, T0 + 120: 3.0}
    service.compact(grace_seconds=0)
    assert values() == {T0: 3.0, T0 + 60: 2.0, T0 + 120: 3.0}


def test_storing_samples_schedules_compaction_every_two_minutes() -> None:
    ingest([[T0, 1.0]])
    with session_scope(readonly=True) as session:
        schedules = {
            s.name: (s.task, s.interval_seconds) for s in session.scalars(select(jobs.Schedule))
        }
    assert schedules["signals.compact"] == ("signals.compact", 120)
    assert schedules["signals.retention"] == ("signals.retention", 3600)
