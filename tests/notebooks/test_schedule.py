"""Schedules: wall-clock time across daylight saving, one run per tick however many ticks
race, no burst of missed ticks; a worker killed mid-run; callables from plugins only."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import nbkit
import psutil
import pytest
from popcorn_testing import Api, Processes, wait_until
from sqlalchemy import select, update

from popcorn import jobs
from popcorn.db import session_scope, utcnow
from popcorn.notebooks import execute, schemas, service
from popcorn.notebooks.models import NotebookDefinition, NotebookRun

BASE = "/api/v1/notebooks"


def test_cron_keeps_wall_clock_time_across_daylight_saving() -> None:
    before = datetime(2026, 10, 31, 14, 0, tzinfo=UTC)  # New York on summer time (UTC-4)
    first = service.next_tick("30 9 * * *", "America/New_York", before)
    second = service.next_tick("30 9 * * *", "America/New_York", first)
    assert first == datetime(2026, 11, 1, 14, 30, tzinfo=UTC)  # 09:30 EST, after the change
    assert second == datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
    spring = service.next_tick(
        "30 9 * * *", "Europe/Amsterdam", datetime(2026, 3, 28, 9, tzinfo=UTC)
    )
    assert spring == datetime(2026, 3, 29, 7, 30, tzinfo=UTC)  # 09:30 CEST


def _runs(definition_id: int) -> list[NotebookRun]:
    with session_scope(readonly=True) as session:
        rows = session.scalars(
            select(NotebookRun).where(NotebookRun.definition_id == definition_id)
        )
        return [session.expunge(r) or r for r in rows]  # type: ignore[func-returns-value]


def test_a_tick_starts_exactly_one_run_and_missed_ticks_are_not_replayed(api: Api) -> None:
    created = api.post(
        f"{BASE}/definitions",
        json={"name": "minutely", "notebook": nbkit.GREETING, "cron": "* * * * *"},
    ).get_json()
    assert created["next_run_at"] is not None
    with session_scope(readonly=True) as session:
        assert (
            session.scalar(
                select(jobs.Schedule.task).where(jobs.Schedule.name == service.TICK_SCHEDULE)
            )
            == service.TICK_TASK
        )
    tick = (utcnow() - timedelta(minutes=10)).replace(second=0, microsecond=0)
    with session_scope() as session:
        session.execute(update(NotebookDefinition).values(next_run_at=tick))

    fired: list[int] = []
    threads = [threading.Thread(target=lambda: fired.append(service.fire_due())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert service.fire_due() == 0
    runs = _runs(created["id"])
    assert len(runs) == 1 and sum(fired) == 1
    assert runs[0].tick == tick and runs[0].trigger == "schedule"
    with session_scope(readonly=True) as session:
        later = session.get(NotebookDefinition, created["id"])
        assert later is not None and later.next_run_at is not None
        assert later.next_run_at > utcnow()  # ten missed minutes are one run, not ten

    # the same tick again (a second scheduler, a replayed job) is refused by the database
    with session_scope() as session:
        session.execute(update(NotebookDefinition).values(next_run_at=tick))
    assert service.fire_due() == 0
    assert len(_runs(created["id"])) == 1


def test_one_tick_at_a_time_and_many_due_schedules_fire_in_batches(api: Api) -> None:
    """A tick that finds another one running returns at once (ticks do not pile up on the
    queue); 150 due schedules fire in batches (of 100), one run each."""
    from popcorn.jobs import get_redis
    from popcorn.notebooks import tasks

    tick = (utcnow() - timedelta(minutes=1)).replace(second=0, microsecond=0)
    with session_scope() as session:
        for n in range(150):
            service.create_definition(
                session=session,
                spec=schemas.DefinitionCreate(
                    # yearly: the next tick is far away even when the clock crosses a
                    # minute while the test runs
                    name=f"m{n:03d}",
                    notebook=nbkit.GREETING,
                    cron="0 3 1 1 *",
                ),
            )
        session.execute(update(NotebookDefinition).values(next_run_at=tick))
    get_redis().set(tasks.TICK_LOCK, "another-worker", ex=60)
    try:
        assert tasks.tick() == {"fired": 0, "lost": 0, "busy": 1}
    finally:
        get_redis().delete(tasks.TICK_LOCK)
    assert tasks.tick()["fired"] == 150
    assert get_redis().get(tasks.TICK_LOCK) is None
    with session_scope(readonly=True) as session:
        ticks = list(session.scalars(select(NotebookRun.tick)))
    assert len(ticks) == 150 and set(ticks) == {tick}
    assert tasks.tick()["fired"] == 0


def test_a_callable_job_runs_an_installed_plugins_function(api: Api, tmp_path: Path) -> None:
    marker = tmp_path / "calls"
    body = {
        "name": "plugin-call",
        "kind": "callable",
        "callable": "popcorn_test_plugins:flaky",
        "parameters": {"marker": str(marker), "fail_times": 0},
    }
    assert api.post(f"{BASE}/definitions", json=body).status_code == 201
    run_id = api.post(f"{BASE}/definitions/plugin-call/runs", json={}).get_json()["id"]
    execute.run_attempt(run_id)
    done = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert done["status"] == "succeeded" and done["outputs"] == {"attempt": 1}
    assert marker.read_text() == "1"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_a_worker_killed_mid_run_fails_the_run_retryably_and_takes_its_kernel(
    api: Api, processes: Processes, tmp_path: Path
) -> None:
    worker = processes.start("worker", "--queue", "default", log=tmp_path / "worker.log")
    body: dict[str, Any] = {"name": "long", "notebook": nbkit.SLOW, "retries": 1, "timeout": 300}
    assert api.post(f"{BASE}/definitions", json=body).status_code == 201
    run_id = api.post(f"{BASE}/definitions/long/runs", json={}).get_json()["id"]

    def kernel() -> int | None:
        with session_scope(readonly=True) as session:
            found = session.get(NotebookRun, run_id)
            return found.kernel_pid if found else None

    pid = wait_until(kernel, timeout=90)
    assert _alive(pid)
    # kill the worker and its work horse, not the kernel: it must go by itself
    tree = [psutil.Process(worker.pid), *psutil.Process(worker.pid).children(recursive=True)]
    for member in tree:
        if member.pid != pid:
            with contextlib.suppress(psutil.NoSuchProcess):  # gone with its parent already
                member.kill()
    worker.wait(timeout=30)
    wait_until(lambda: not _alive(pid), timeout=30)

    assert jobs.reap_lost(lost_after=0) == 1
    assert service.sweep_lost() == 1
    lost = api.get(f"{BASE}/runs/{run_id}").get_json()
    assert lost["status"] == "failed" and lost["retryable"] is True
    assert "worker running it was lost" in lost["error"]


def test_changing_a_schedule_moves_its_next_run_and_is_audited(api: Api) -> None:
    body = {"name": "report", "notebook": nbkit.GREETING, "cron": "0 6 * * *"}
    created = api.post(f"{BASE}/definitions", json=body).get_json()
    bad = api.patch(f"{BASE}/definitions/report", json={"cron": "0 25 * * *"})
    assert bad.status_code == 422
    changed = api.patch(
        f"{BASE}/definitions/report",
        json={"timezone": "Asia/Tokyo", "parameters": {"who": "tokyo"}, "tags": ["b", "a", "b"]},
    ).get_json()
    assert changed["timezone"] == "Asia/Tokyo" and changed["tags"] == ["a", "b"]
    local = datetime.fromisoformat(changed["next_run_at"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (6, 0)
    assert changed["next_run_at"] != created["next_run_at"]
    history = api.get(f"/api/v1/audit?object_type=notebook_definition&object_id={created['id']}")
    assert [r["action"] for r in history.get_json()["items"]] == ["create", "update"]
    paused = api.patch(f"{BASE}/definitions/report", json={"cron": None}).get_json()
    assert paused["cron"] is None and paused["next_run_at"] is None
