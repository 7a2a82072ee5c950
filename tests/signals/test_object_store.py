"""The sample store on both object-store backends (a local directory and S3 through moto):
what one machine ingests another reads, a rolled-back batch is never seen, and compaction of
one day runs on one machine at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from sqlalchemy import select

from popcorn import jobs
from popcorn.config import reset_settings
from popcorn.db import session_scope
from popcorn.errors import NotFound
from popcorn.signals import service, store
from popcorn.signals.models import SampleFile
from popcorn.storage import get_store

T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp())
DAY = date(2026, 3, 2)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(name, "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        bucket = f"samples-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        monkeypatch.setenv("POPCORN_STORAGE_URL", f"s3://{bucket}/popcorn")
        monkeypatch.setenv("POPCORN_STORAGE_ENDPOINT_URL", endpoint)
    reset_settings()
    yield request.param
    for obj in get_store().list(f"{store.PREFIX}/"):
        get_store().delete(obj.key)
    monkeypatch.undo()
    reset_settings()


def objects() -> list[str]:
    return [o.key for o in get_store().list(f"{store.PREFIX}/")]


def ingest(samples: list[list[float]], metric: str = "m") -> service.IngestResult:
    with session_scope() as session:
        return service.ingest_json(
            session=session, payload={"series": [{"metric": metric, "samples": samples}]}
        )


def values(metric: str = "m") -> list[float]:
    with session_scope(readonly=True) as session:
        res = service.query(session=session, selector=metric, start=T0, end=T0 + 3600)
    return res.values[0].tolist()


def test_ingest_and_read_through_the_store(backend: str) -> None:
    ingest([[T0, 1.0], [T0 + 60, 2.0]])
    ingest([[T0 + 60, 5.0], [T0 + 120, 3.0]])  # the later batch replaces T0 + 60
    assert values() == [1.0, 5.0, 3.0]
    keys = objects()
    assert len(keys) == 2 and all(k.startswith(f"{store.PREFIX}/day=2026-03-02/") for k in keys)
    if backend == "s3":
        assert not store.root().exists()  # nothing on this machine's disk
    with session_scope(readonly=True) as session:
        stats = service.storage_stats(session=session)
    assert (stats["samples"], stats["partitions"], stats["oldest_day"]) == (3, 1, "2026-03-02")
    assert stats["bytes"] == sum(o.size for o in get_store().list(f"{store.PREFIX}/"))


def test_a_rolled_back_batch_leaves_nothing_visible(backend: str) -> None:
    with pytest.raises(RuntimeError), session_scope() as session:
        service.ingest_json(
            session=session, payload={"series": [{"metric": "m", "samples": [[T0, 1.0]]}]}
        )
        assert len(objects()) == 1  # written, but listed only in this open transaction
        raise RuntimeError("the caller's later step failed")
    assert objects() == []
    with session_scope(readonly=True) as session:
        assert session.scalars(select(SampleFile)).all() == []
        with pytest.raises(NotFound):
            service.query(session=session, selector="m", start=T0 - 60, end=T0 + 60)


def test_an_object_no_transaction_listed_is_never_read_and_is_swept(backend: str) -> None:
    ingest([[T0, 1.0]])
    # a machine died between writing an object and committing its batch
    orphan = store._put_table(
        DAY,
        pa.table(
            {"sid": [store.fingerprint("m", {})], "ts": [T0 * 1000], "value": [9.0]},
            schema=store.SCHEMA,
        ),
        seq=1,
    )
    assert values() == [1.0]
    # a compaction's output is named like an old object until it is listed: while another
    # machine holds the day's lease, the day's unlisted objects are left alone
    assert jobs.acquire_lease("signals.compact:2026-03-02", "other-machine", 60)
    assert service.compact(grace_seconds=0, orphan_grace_seconds=0)["orphans_removed"] == 0
    assert orphan.key in objects()
    jobs.release_lease("signals.compact:2026-03-02", "other-machine")
    assert service.compact(grace_seconds=0, orphan_grace_seconds=0)["orphans_removed"] == 1
    assert orphan.key not in objects() and len(objects()) == 1
    assert values() == [1.0]


def test_compaction_of_a_day_runs_once_at_a_time(backend: str) -> None:
    for i in range(4):
        ingest([[T0 + 60 * i, float(i)], [T0, 10.0 + i]])
    assert len(objects()) == 4

    # another machine holds the day's lease: this one leaves the day alone
    assert jobs.acquire_lease("signals.compact:2026-03-02", "other-machine", 60)
    summary = service.compact(grace_seconds=0)
    assert (summary["days"], summary["busy_days"]) == (0, ["2026-03-02"])
    assert len(objects()) == 4
    jobs.release_lease("signals.compact:2026-03-02", "other-machine")

    # two compactions at once: one merges, the other finds the day busy or already merged
    results: list[dict[int, int] | None] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        results.append(store.compact_day(DAY, grace_seconds=0))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = [r for r in results if r]
    assert len(merged) == 1 and sum(merged[0].values()) == 3  # T0 written four times
    assert len(objects()) == 1
    assert values() == [13.0, 1.0, 2.0, 3.0]


LEGACY = """
import pyarrow as pa, pyarrow.parquet as pq
from alembic import command
from popcorn.config import get_settings
from popcorn.db import alembic_config, upgrade
from popcorn.signals import store

command.upgrade(alembic_config(), "signals_0001")
folder = get_settings().home / "signals" / "samples" / "day=2026-03-02"
folder.mkdir(parents=True)
sid = store.fingerprint("m", {})
for seq, value in ((1, 1.0), (2, 2.0)):
    table = pa.table({"sid": [sid], "ts": [T0_MS], "value": [value]}, schema=store.SCHEMA)
    pq.write_table(table, folder / f"part-{seq:020d}-abc.parquet")
upgrade()
print(store.read([sid], T0_MS, T0_MS + 1).value.tolist())
""".replace("T0_MS", str(T0 * 1000))


def test_samples_written_before_the_object_store_are_adopted(
    tmp_path: Path, installation: dict[str, str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPCORN_")}
    env.update(POPCORN_HOME=str(tmp_path), POPCORN_REDIS_URL=installation["POPCORN_REDIS_URL"])
    done = subprocess.run(
        [sys.executable, "-c", LEGACY], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[2.0]"]  # both files listed, the later one wins
    assert len(list((tmp_path / "objects" / store.PREFIX).rglob("*.parquet"))) == 2
