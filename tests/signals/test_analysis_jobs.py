"""Large analyses run as one rq job per chunk plus a merge job, on a real worker, and come
out exactly as the same analysis run in one piece."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from popcorn_testing import Processes, wait_until
from sqlalchemy import select, update

from popcorn import jobs
from popcorn.db import session_scope
from popcorn.signals import service, store
from popcorn.signals.generate import Incident, generate_incident


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


@pytest.fixture(scope="module")
def incident() -> Incident:
    return generate_incident(600, 400, seed=21)


def ingest(incident: Incident) -> None:
    series = []
    ts = incident.timestamps.astype(float)
    for i, name in enumerate(incident.names):
        ok = np.isfinite(incident.values[i])
        series.append(
            {
                "metric": name.split(".")[1].split("#")[0],
                "labels": {"service": name.split(".")[0], "signal": str(i)},
                "timestamps": ts[ok].tolist(),
                "values": incident.values[i][ok].tolist(),
            }
        )
    series.append(
        {
            "metric": "play_errors_rate",
            "timestamps": ts.tolist(),
            "values": incident.trigger.tolist(),
        }
    )
    with session_scope() as session:
        service.ingest_json(session=session, payload={"series": series})


def analyze(incident: Incident, **kwargs: Any) -> int:
    analysis = service.analyze_alert(
        alert_time=incident.alert_time,
        trigger="play_errors_rate",
        selector='{service=~".+"}',
        window_minutes=370,
        after_minutes=30,
        **kwargs,
    )
    return analysis.id


def load(analysis_id: int) -> dict[str, Any]:
    with session_scope(readonly=True) as session:
        return service.analysis_dict(service.get_analysis(session=session, analysis_id=analysis_id))


def ranking(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (f["series_id"], f["verdict"], f["score"], f["change_time"], f["cluster"])
        for f in data["result"]["findings"]
    ]


def test_chunk_jobs_on_a_worker_merge_to_the_inline_ranking(
    processes: Any, incident: Incident
) -> None:
    ingest(incident)
    inline = load(analyze(incident, inline=True))
    assert inline["status"] == "finished" and inline["chunks_total"] == 1

    analysis_id = analyze(incident, inline=False, chunk_size=200)
    queued = load(analysis_id)
    assert queued["status"] == "queued" and queued["chunks_total"] == 3
    processes.start("worker")
    done = wait_until(
        lambda: (d := load(analysis_id))["status"] in ("finished", "failed") and d, timeout=120
    )
    assert done["status"] == "finished", done["error"]
    assert done["chunks_done"] == 3 and done["partial"] is None
    assert ranking(done) == ranking(inline)
    assert done["result"]["clusters"] == inline["result"]["clusters"]
    assert done["result"]["counts"] == inline["result"]["counts"]
    assert done["result"]["n_signals"] == inline["result"]["n_signals"] == 600

    def records_once_ended() -> list[jobs.JobRecord] | None:
        # a job's record ends once its worker stores the outcome, just after the task's
        # own writes (the analysis above)
        with session_scope(readonly=True) as session:
            found = list(
                session.scalars(
                    select(jobs.JobRecord)
                    .where(jobs.JobRecord.task.like("signals.analysis_%"))
                    .order_by(jobs.JobRecord.id)
                )
            )
        return found if all(r.status in jobs.ENDED for r in found) else None

    records = wait_until(records_once_ended)
    assert [r.task for r in records] == ["signals.analysis_chunk"] * 3 + ["signals.analysis_merge"]
    assert all(r.status == "finished" for r in records)
    last_chunk = max(records[:3], key=lambda r: r.ended_at)
    assert last_chunk.progress["done"] == last_chunk.progress["total"] == 3
    assert last_chunk.progress["partial"]["analysis_id"] == analysis_id


def test_a_failed_chunk_job_fails_the_analysis(api: Any, incident: Incident) -> None:
    ingest(incident)
    analysis_id = analyze(incident, inline=False, chunk_size=300)
    with session_scope() as session:
        first = session.scalar(select(jobs.JobRecord.id).order_by(jobs.JobRecord.id))
        session.execute(
            update(jobs.JobRecord)
            .where(jobs.JobRecord.id == first)
            .values(status="failed", error="MemoryError: out of memory\n...")
        )
    res = api.get(f"/api/v1/signals/analyses/{analysis_id}", role="viewer")
    assert res.json["status"] == "failed"
    assert res.json["error"] == (
        f"job {first} (signals.analysis_chunk) failed: MemoryError: out of memory"
    )


def analysis_jobs() -> list[jobs.JobRecord]:
    with session_scope(readonly=True) as session:
        found = list(
            session.scalars(
                select(jobs.JobRecord)
                .where(jobs.JobRecord.task.like("signals.analysis_%"))
                .order_by(jobs.JobRecord.id)
            )
        )
        session.expunge_all()
        return found


def ended(analysis_id: int) -> dict[str, Any] | None:
    """The analysis once it has ended, or once one of its jobs failed (as the API shows it)."""
    with session_scope(readonly=True) as session:
        analysis = service.get_analysis(session=session, analysis_id=analysis_id)
        failure = service.job_failure(session=session, analysis=analysis)
        data = service.analysis_dict(analysis)
    if failure:
        return {**data, "status": "failed", "error": failure}
    return data if data["status"] in ("finished", "failed") else None


def wait_finished(analysis_id: int) -> dict[str, Any]:
    done: dict[str, Any] = wait_until(lambda: ended(analysis_id), timeout=300)
    assert done["status"] == "finished", done["error"]
    return done


@pytest.mark.slow
def test_two_workers_rank_small_chunks_like_one_job(
    processes: Processes, incident: Incident
) -> None:
    ingest(incident)
    inline = load(analyze(incident, inline=True))
    processes.start("worker")
    processes.start("worker")

    whole_id = analyze(incident, inline=False, chunk_size=10**9)
    whole = wait_finished(whole_id)
    assert whole["chunks_total"] == 1
    assert [r.task for r in analysis_jobs()] == ["signals.analysis_chunk"]  # no merge job

    sharded = wait_finished(analyze(incident, inline=False, chunk_size=50))
    assert sharded["chunks_total"] == sharded["chunks_done"] == 12
    assert ranking(sharded) == ranking(whole) == ranking(inline)
    assert sharded["result"]["clusters"] == whole["result"]["clusters"]
    assert sharded["result"]["counts"] == whole["result"]["counts"]

    # a job's record ends once its worker has stored the outcome, just after the task's own
    # writes (a forking worker stores it when the work horse has exited)
    def all_ended() -> list[jobs.JobRecord] | None:
        found = analysis_jobs()[1:]
        return found if all(r.status in jobs.ENDED for r in found) else None

    records = wait_until(all_ended)
    assert sorted(r.task for r in records) == (
        ["signals.analysis_chunk"] * 12 + ["signals.analysis_merge"]
    )
    assert all(r.status == "finished" and r.attempts == 1 for r in records)


@pytest.mark.slow
def test_a_worker_killed_after_saving_its_chunk_loses_and_doubles_nothing(
    processes: Processes, incident: Incident, tmp_path: Path
) -> None:
    """The worker dies between storing a chunk's findings and marking its job finished:
    the reaper runs the job again, the chunk counts once and one merge job ranks it all."""
    import popcorn_test_plugins  # noqa: F401  (the pause points)

    ingest(incident)
    inline = load(analyze(incident, inline=True))
    marker = tmp_path / "paused"
    processes.env["POPCORN_JOB_LOST_AFTER"] = "4"
    processes.env["POPCORN_TEST_PAUSE"] = f"result:{marker}"
    processes.start("scheduler")
    # in-process, paused before rq ends the attempt (a forking worker's horse would have
    # ended it as a success, which the reaper stores without running the job again)
    doomed = processes.start("worker", "--no-fork")
    analysis_id = analyze(incident, inline=False, chunk_size=100)
    wait_until(marker.exists, timeout=120)
    paused_job = next(r for r in analysis_jobs() if r.status == "running")
    processes.kill(doomed)
    processes.start("worker")

    done = wait_finished(analysis_id)
    assert done["chunks_total"] == done["chunks_done"] == 6
    assert ranking(done) == ranking(inline)
    assert done["result"]["counts"] == inline["result"]["counts"]
    wait_until(lambda: all(r.status == "finished" for r in analysis_jobs()), timeout=120)
    records = {r.id: r for r in analysis_jobs()}
    assert records[paused_job.id].attempts == 2  # re-run after its worker was lost
    assert sorted(r.task for r in records.values()) == (
        ["signals.analysis_chunk"] * 6 + ["signals.analysis_merge"]
    )
    assert load(analysis_id)["result"] == done["result"]  # the re-run changed nothing
