"""Storage behaviour users rely on: round trips, resampling, last-write-wins, atomic batches,
retention and compaction."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from popcorn import jobs
from popcorn.db import session_scope
from popcorn.errors import InvalidInput, NotFound
from popcorn.signals import service, store
from popcorn.signals.models import Series
from popcorn.signals.promql import SelectorError, parse_selector

T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp())


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


def ingest(series: list[dict]) -> service.IngestResult:
    with session_scope() as session:
        return service.ingest_json(session=session, payload={"series": series})


def query(selector: str, start: float, end: float, step: object = None, agg: str = "mean"):
    with session_scope(readonly=True) as session:
        return service.query(
            session=session, selector=selector, start=start, end=end, step=step, agg=agg
        )


def test_round_trip_resamples_with_nan_gaps() -> None:
    # 15 s scrapes for 10 minutes, with minutes 3 and 4 missing
    ts = [T0 + 15 * i for i in range(40) if not 12 <= i < 20]
    vals = [float(i % 4) for i in range(40) if not 12 <= i < 20]
    ingest(
        [
            {
                "metric": "edge_rps",
                "labels": {"site": "ams1", "host": "a"},
                "timestamps": ts,
                "values": vals,
            }
        ]
    )

    res = query('edge_rps{site="ams1"}', T0, T0 + 600, step="1m")
    got = res.values[0]
    assert len(got) == 11  # `end` is inclusive, as in Prometheus: a point at T0 + 600
    assert res.timestamps[0][-1] == T0 + 600 and np.isnan(got[-1])
    assert np.isnan(got[3]) and np.isnan(got[4])
    assert got[0] == pytest.approx(1.5)  # mean of 0, 1, 2, 3
    assert query("edge_rps", T0, T0 + 600, step="1m", agg="max").values[0][0] == 3
    assert query("edge_rps", T0, T0 + 600, step="1m", agg="sum").values[0][0] == 6
    assert query("edge_rps", T0, T0 + 600, step="1m", agg="last").values[0][1] == 3
    assert query("edge_rps", T0, T0 + 600, step="1m", agg="count").values[0][5] == 4

    raw = query("edge_rps", T0, T0 + 600)
    assert raw.timestamps[0].tolist() == [float(t) for t in ts]
    assert raw.values[0].tolist() == vals
    with session_scope(readonly=True) as session:
        (series,) = session.scalars(select(Series)).all()
        assert (series.metric, series.site, series.sample_count) == ("edge_rps", "ams1", 32)
        assert series.first_at == datetime.fromtimestamp(T0, UTC)
        assert series.last_at == datetime.fromtimestamp(ts[-1], UTC)


def test_unsorted_and_repeated_timestamps_keep_the_last_value() -> None:
    result = ingest([{"metric": "m", "samples": [[T0 + 60, 2], [T0, 1], [T0 + 60, 5]]}])
    assert (result.samples, result.duplicates) == (2, 1)
    raw = query("m", T0, T0 + 120)
    assert raw.values[0].tolist() == [1.0, 5.0]

    ingest([{"metric": "m", "samples": [[T0, 7]]}])  # a later batch replaces the sample
    assert query("m", T0, T0 + 120).values[0].tolist() == [7.0, 5.0]
    assert service.compact(grace_seconds=0)["duplicates_removed"] == 1
    assert query("m", T0, T0 + 120).values[0].tolist() == [7.0, 5.0]
    with session_scope(readonly=True) as session:
        assert session.scalars(select(Series.sample_count)).one() == 2
    assert len(list(store.root().rglob("*.parquet"))) == 1


def test_a_bad_sample_rejects_the_whole_batch() -> None:
    batch = [
        {"metric": "good", "timestamps": [T0, T0 + 60], "values": [1, 2]},
        {"metric": "bad", "labels": {"x": "1"}, "timestamps": [T0, T0 + 60], "values": [1, "x"]},
    ]
    with pytest.raises(InvalidInput, match=r"series\[1\]: values\[1\] = 'x' is not a number"):
        ingest(batch)
    with session_scope(readonly=True) as session:
        assert session.scalars(select(Series)).all() == []
    assert not list(store.root().rglob("*.parquet"))


def test_files_of_a_rolled_back_transaction_are_removed() -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        service.ingest_json(
            session=session, payload={"series": [{"metric": "m", "samples": [[T0, 1.0]]}]}
        )
        assert list(store.root().rglob("*.parquet"))  # visible inside the transaction
        raise RuntimeError("the caller's later step failed")
    assert not list(store.root().rglob("*.parquet"))
    with pytest.raises(NotFound):
        query("m", T0 - 60, T0 + 60)


def test_selectors_follow_prometheus_matching() -> None:
    def series(metric: str, **labels: str) -> dict:
        return {"metric": metric, "labels": labels, "samples": [[T0, 1.0]]}

    ingest(
        [
            series("http_errors", site="ams1", code="500"),
            series("http_errors", site="ams1", code="404"),
            series("http_errors", site="lhr2", code="503"),
            series("http_errors", code="500"),
            series("http_latency", site="ams1"),
        ]
    )

    def names(sel: str) -> list[str]:
        with session_scope(readonly=True) as session:
            return [
                service.series_name(s) for s in service.find_series(session=session, selector=sel)
            ]

    assert names('http_errors{code=~"5.."}') == [
        'http_errors{code="500",site="ams1"}',
        'http_errors{code="503",site="lhr2"}',
        'http_errors{code="500"}',
    ]
    assert names('http_errors{site!="ams1"}') == [
        'http_errors{code="503",site="lhr2"}',
        'http_errors{code="500"}',
    ]
    assert names('http_errors{site=""}') == ['http_errors{code="500"}']
    assert names('{__name__=~"http_.*", site="ams1", code!~"4.*"}') == [
        'http_errors{code="500",site="ams1"}',
        'http_latency{site="ams1"}',
    ]
    assert names('{site=~"ams.*"}') == names('{site="ams1"}')
    with pytest.raises(SelectorError, match="needs at least one matcher"):
        parse_selector('{site=""}')
    with pytest.raises(SelectorError, match=r"expected ',' or '}' at position 25"):
        parse_selector('http_errors{site="ams1" code="1"}')
    with pytest.raises(SelectorError, match="invalid regular expression"):
        parse_selector('m{a=~"("}')
    with pytest.raises(NotFound, match="no series match"):
        query('http_errors{site="nowhere"}', T0, T0 + 60)
    with pytest.raises(NotFound, match="no samples"):
        query("http_errors", T0 + 3600, T0 + 7200)
    with pytest.raises(InvalidInput, match="end: must not be before start"):
        query("http_errors", T0, T0 - 60)
    assert query("http_errors", T0, T0).values[0].size == 1  # an instant, as in Prometheus


def test_a_batch_spanning_midnight_writes_one_file_per_day() -> None:
    midnight = int(datetime(2026, 3, 3, tzinfo=UTC).timestamp())
    result = ingest(
        [
            {
                "metric": "m",
                "timestamps": [midnight - 60, midnight, midnight + 60],
                "values": [1, 2, 3],
            }
        ]
    )
    assert result.files == 2
    with session_scope(readonly=True) as session:
        assert [d.isoformat() for d in store.partitions(session)] == ["2026-03-02", "2026-03-03"]
    assert query("m", midnight - 120, midnight + 120).values[0].tolist() == [1, 2, 3]


def test_retention_drops_old_days_and_fixes_metadata() -> None:
    now = datetime.now(UTC)
    old = int((now - timedelta(days=40)).timestamp())
    recent = int((now - timedelta(hours=1)).timestamp())
    ingest(
        [
            {"metric": "only_old", "samples": [[old, 1.0], [old + 60, 2.0]]},
            {"metric": "mixed", "samples": [[old, 1.0], [recent, 2.0], [recent + 60, 3.0]]},
        ]
    )
    with session_scope() as session:
        assert service.set_retention(session=session, days=30) == {"retention_days": 30}
        summary = service.apply_retention(session=session)
    assert summary["series_removed"] == 1 and summary["samples_removed"] == 3
    assert len(summary["dropped_days"]) == 1
    with session_scope(readonly=True) as session:
        (mixed,) = session.scalars(select(Series)).all()
        assert mixed.metric == "mixed" and mixed.sample_count == 2
        assert mixed.first_at == datetime.fromtimestamp(recent, UTC)
        names = list(session.scalars(select(jobs.Schedule.name)))
        assert service.RETENTION_SCHEDULE in names
    assert query("mixed", old - 60, recent + 120).values[0].tolist() == [2.0, 3.0]
    with session_scope() as session, pytest.raises(InvalidInput, match="retention_days"):
        service.set_retention(session=session, days=0)


def test_retention_of_a_day_written_twice_keeps_the_count_true() -> None:
    now = datetime.now(UTC)
    old = int((now - timedelta(days=40)).timestamp())
    recent = int((now - timedelta(hours=1)).timestamp())
    batch = [{"metric": "resent", "samples": [[old, 1.0], [old + 60, 2.0], [recent, 3.0]]}]
    ingest(batch)
    ingest(batch)  # a sender retried: the old day now holds two objects of the same samples
    with session_scope() as session:
        service.set_retention(session=session, days=30)
        summary = service.apply_retention(session=session)
    assert summary["samples_removed"] == 2
    with session_scope(readonly=True) as session:
        (series,) = session.scalars(select(Series)).all()
        left = store.read([series.fingerprint], (old - 60) * 1000, (recent + 60) * 1000)
        assert series.sample_count == left.ts.size == 1


def test_resample_aggregations() -> None:
    ts = np.array([0, 10, 20, 70, 200], dtype=np.int64) * 1000
    vals = np.array([1.0, 5.0, 3.0, 4.0, 9.0])
    for agg, want in {
        "mean": [3.0, 4.0, np.nan, 9.0],
        "max": [5.0, 4.0, np.nan, 9.0],
        "min": [1.0, 4.0, np.nan, 9.0],
        "sum": [9.0, 4.0, np.nan, 9.0],
        "last": [3.0, 4.0, np.nan, 9.0],
        "count": [3.0, 1.0, np.nan, 1.0],
    }.items():
        got = service.resample(ts, vals, 0, 60_000, 4, agg)
        np.testing.assert_array_equal(got, np.array(want), err_msg=agg)
