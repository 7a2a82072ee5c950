"""Writers of the same series at the same moment: two Prometheus HA replicas remote-writing
the same samples, a pull overlapping a file ingest. Whatever the interleaving, a series'
`sample_count`, first and last time must describe exactly what a read returns."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from popcorn.db import session_scope
from popcorn.jobs import Schedule
from popcorn.signals import service, store
from popcorn.signals.models import Series
from popcorn.signals.retention import COMPACT_SCHEDULE, RETENTION_SCHEDULE

T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp())


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def payload(metric: str, seconds: range, value: float) -> dict[str, Any]:
    return {
        "series": [
            {"metric": metric, "labels": {"replica": "any"}, "timestamps": list(seconds)}
            | {"values": [value] * len(seconds)}
        ]
    }


def ingest(body: dict[str, Any]) -> service.IngestResult:
    with session_scope() as session:
        return service.ingest_json(session=session, payload=body)


def side_by_side(
    monkeypatch: pytest.MonkeyPatch, *calls: Callable[[], service.IngestResult]
) -> list[service.IngestResult]:
    """Run the calls in threads that have all written their sample files before any of them
    records its series: the moment two requests of an HA pair are both in flight."""
    barrier = threading.Barrier(len(calls), timeout=30)
    write = store.write_sorted

    def write_then_wait(*args: Any, **kwargs: Any) -> int:
        written = write(*args, **kwargs)
        barrier.wait()
        return written

    monkeypatch.setattr(store, "write_sorted", write_then_wait)
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def truth(metric: str) -> tuple[int, int, int]:
    """(count, first, last) of what a read returns for the metric's one series."""
    with session_scope(readonly=True) as session:
        series = session.scalars(select(Series).where(Series.metric == metric)).one()
        got = store.read([series.fingerprint], 0, (T0 + 86_400) * 1000)
    return int(got.ts.size), int(got.ts.min()) // 1000, int(got.ts.max()) // 1000


def recorded(metric: str) -> tuple[int, int, int]:
    with session_scope(readonly=True) as session:
        series = session.scalars(select(Series).where(Series.metric == metric)).one()
        return (
            series.sample_count,
            int(series.first_at.timestamp()),
            int(series.last_at.timestamp()),
        )


def test_two_replicas_writing_the_same_new_series_count_each_sample_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    same = payload("ha_new", range(T0, T0 + 600, 15), 1.0)
    results = side_by_side(monkeypatch, lambda: ingest(same), lambda: ingest(same))

    assert recorded("ha_new") == truth("ha_new") == (40, T0, T0 + 585)
    assert sorted(r.new_series for r in results) == [0, 1]
    assert sorted(r.replaced for r in results) == [0, 40]


def test_overlapping_writers_of_an_existing_series_keep_count_and_span_true(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest(payload("ha_old", range(T0, T0 + 300, 15), 0.0))  # 20 samples already stored
    # one writer repeats part of it and goes on; the other starts earlier and overlaps both
    later = payload("ha_old", range(T0 + 150, T0 + 900, 15), 1.0)
    earlier = payload("ha_old", range(T0 - 300, T0 + 600, 15), 2.0)
    side_by_side(monkeypatch, lambda: ingest(later), lambda: ingest(earlier))

    count, first, last = truth("ha_old")
    assert (count, first, last) == (80, T0 - 300, T0 + 885)
    assert recorded("ha_old") == (count, first, last)


def test_many_concurrent_resends_never_count_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = [range(T0 + 60 * i, T0 + 60 * i + 600, 10) for i in range(4)]
    side_by_side(monkeypatch, *(lambda s=s: ingest(payload("resend", s, 1.0)) for s in spans))

    union = sorted(set().union(*spans))
    assert recorded("resend") == truth("resend") == (len(union), union[0], union[-1])


@pytest.mark.slow
def test_an_ha_pair_remote_writing_over_http_counts_each_sample_once(
    processes: Any, tokens: dict[str, str], tmp_path: Any
) -> None:
    """Two Prometheus replicas sending the same 1,000-series batches at once to two Gunicorn
    workers (smaller batches are stored before the other replica looks)."""
    import httpx
    from test_remote_write import HEADERS, T0_MS, WRITE, timeseries, write_request

    url = processes.serve(tmp_path / "serve.log", workers=2, timeout=60)
    headers = {**HEADERS, "Authorization": f"Bearer {tokens['operator']}"}
    hosts = [f"oc-{i}" for i in range(1000)]
    bodies = [
        write_request(
            *(
                timeseries([("__name__", "ha_up"), ("host", h)], [(T0_MS + 15_000 * j, 1.0)])
                for h in hosts
            )
        )
        for j in range(20)
    ]

    together = threading.Barrier(2, timeout=60)

    def replica(statuses: list[int]) -> None:
        with httpx.Client(timeout=60) as client:
            for body in bodies:
                together.wait()  # both replicas send each batch at the same moment
                statuses.append(client.post(url + WRITE, content=body, headers=headers).status_code)

    answers: list[list[int]] = [[], []]
    threads = [threading.Thread(target=replica, args=(a,)) for a in answers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert answers == [[204] * len(bodies)] * 2
    with session_scope(readonly=True) as session:
        counts = session.scalars(select(Series.sample_count).where(Series.metric == "ha_up"))
        assert sorted(counts) == [len(bodies)] * len(hosts)


ROUNDS = 12
HOSTS = [f"host-{i:04d}" for i in range(1500)]


def fresh_series(metric: str, hosts: list[str], second: int) -> dict[str, Any]:
    """One sample at `second` for each host's series of `metric`, in the order given."""
    return {
        "series": [
            {"metric": metric, "labels": {"host": h}, "timestamps": [second], "values": [1.0]}
            for h in hosts
        ]
    }


def test_writers_creating_the_same_new_series_in_opposite_orders_both_succeed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two writers (two remote-write workers, an ingest beside a pull) bring the same new
    series listed in opposite orders, round after round, both in flight at once: neither
    waits for the other in a cycle (PostgreSQL would abort one as a deadlock) nor trips on
    the other's insert, and every series is there once with both writers' samples."""
    barrier = threading.Barrier(2, timeout=60)
    write = store.write_sorted

    def write_then_wait(*args: Any, **kwargs: Any) -> int:
        written = write(*args, **kwargs)
        barrier.wait()  # both have written their files: they record their series together
        return written

    monkeypatch.setattr(store, "write_sorted", write_then_wait)
    created: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def writer(i: int, hosts: list[str]) -> None:
        try:
            for n in range(ROUNDS):
                result = ingest(fresh_series(f"fresh_{n}", hosts, T0 + i))
                created[i].append(result.new_series)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [
        threading.Thread(target=writer, args=(0, HOSTS)),
        threading.Thread(target=writer, args=(1, HOSTS[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert [a + b for a, b in zip(*created, strict=True)] == [len(HOSTS)] * ROUNDS
    with session_scope(readonly=True) as session:
        rows = session.execute(select(Series.metric, Series.labels, Series.sample_count)).all()
        prints = [s.fingerprint for s in session.scalars(select(Series))]
    assert sorted((m, lab["host"]) for m, lab, _ in rows) == sorted(
        (f"fresh_{n}", h) for n in range(ROUNDS) for h in HOSTS
    )
    assert {count for _, _, count in rows} == {2}
    got = store.read(prints, 0, (T0 + 86_400) * 1000)
    assert sorted(np.unique(got.sid, return_counts=True)[1].tolist()) == [2] * len(prints)


def test_the_first_two_writers_of_an_installation_both_succeed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both create series, so both see that the retention and compaction schedules are
    missing and make them: the second waits for the first and keeps its schedules."""
    results = side_by_side(
        monkeypatch,
        lambda: ingest(payload("first_a", range(T0, T0 + 60, 15), 1.0)),
        lambda: ingest(payload("first_b", range(T0, T0 + 60, 15), 1.0)),
    )

    assert [r.new_series for r in results] == [1, 1]
    with session_scope(readonly=True) as session:
        names = session.scalars(select(Schedule.name).order_by(Schedule.name)).all()
    assert names == [COMPACT_SCHEDULE, RETENTION_SCHEDULE]
