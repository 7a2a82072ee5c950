"""Back-pressure on remote write: past `signals_remote_write_max_inflight` requests storing
at once on a machine, the next waits a moment for a turn and is then answered 429 with
Retry-After, which Prometheus retries (with `retry_on_http_429`) instead of queueing in
Gunicorn until it times out."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from test_remote_write import HEADERS, T0_MS, UP, WRITE, timeseries, write_request

from popcorn.config import reset_settings
from popcorn.db import session_scope
from popcorn.signals import remote_write, store
from popcorn.signals.models import Series


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    yield
    shutil.rmtree(store.root(), ignore_errors=True)


@pytest.fixture
def max_inflight(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def set_limit(n: int) -> None:
        monkeypatch.setenv("POPCORN_SIGNALS_REMOTE_WRITE_MAX_INFLIGHT", str(n))
        reset_settings()

    yield set_limit
    monkeypatch.delenv("POPCORN_SIGNALS_REMOTE_WRITE_MAX_INFLIGHT", raising=False)
    reset_settings()


class HeldWriter:
    """The first remote write blocks inside its ingest until released; later ones do not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self._first = threading.Lock()
        ingest = remote_write.service.ingest_batch

        def held(**kwargs: Any) -> Any:
            if self._first.acquire(blocking=False):
                self.inside.set()
                assert self.release.wait(30)
            return ingest(**kwargs)

        monkeypatch.setattr(remote_write.service, "ingest_batch", held)

    def start(self, app: Any, tokens: dict[str, str]) -> list[Any]:
        answers: list[Any] = []
        thread = threading.Thread(target=lambda: answers.append(post(app, tokens, 0)))
        thread.start()
        assert self.inside.wait(30)
        self.thread = thread
        return answers


def post(app: Any, tokens: dict[str, str], second: int) -> Any:
    """One request from its own client, as a separate connection would be."""
    body = write_request(timeseries(UP, [(T0_MS + 1000 * second, 1.0)]))
    headers = {**HEADERS, "Authorization": f"Bearer {tokens['operator']}"}
    return app.test_client().post(WRITE, data=body, headers=headers)


def requests_counted(app: Any, outcome: str) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    line = f'popcorn_signals_remote_write_requests_total{{outcome="{outcome}"}} '
    return sum(float(row[len(line) :]) for row in text.splitlines() if row.startswith(line))


def test_past_the_limit_a_write_is_429_with_retry_after_and_stores_nothing(
    app: Any, tokens: dict[str, str], max_inflight: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_inflight(1)
    held = HeldWriter(monkeypatch)
    throttled_before = requests_counted(app, "throttled")
    first = held.start(app, tokens)

    busy = post(app, tokens, 1)
    assert busy.status_code == 429
    assert busy.headers["Retry-After"] == str(remote_write.RETRY_AFTER_SECONDS)
    assert busy.json["error"]["code"] == "overloaded"
    assert busy.json["error"]["details"]["max_inflight"] == 1
    assert requests_counted(app, "throttled") == throttled_before + 1

    held.release.set()
    held.thread.join(30)
    assert first[0].status_code == 204
    assert post(app, tokens, 1).status_code == 204  # the turn is free again: the retry lands
    with session_scope(readonly=True) as session:
        assert session.scalars(select(Series.sample_count)).all() == [2]


def test_a_short_collision_waits_for_its_turn_instead_of_failing(
    app: Any, tokens: dict[str, str], max_inflight: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_inflight(1)
    held = HeldWriter(monkeypatch)
    held.start(app, tokens)
    second: list[Any] = []
    waiting = threading.Thread(target=lambda: second.append(post(app, tokens, 1)))
    waiting.start()
    threading.Timer(remote_write.TURN_WAIT_SECONDS / 4, held.release.set).start()
    waiting.join(30)
    held.thread.join(30)
    assert second[0].status_code == 204


def test_zero_turns_the_limit_off(
    app: Any, tokens: dict[str, str], max_inflight: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    max_inflight(0)
    held = HeldWriter(monkeypatch)
    held.start(app, tokens)
    try:
        assert post(app, tokens, 1).status_code == 204
    finally:
        held.release.set()
        held.thread.join(30)


def test_turns_are_shared_by_every_process_of_the_machine(max_inflight: Any) -> None:
    """A Gunicorn sync worker holds one request, so the count must span processes."""
    max_inflight(1)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from popcorn.signals.remote_write import turn\n"
            "with turn(1) as got:\n"
            "    print(got, flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with remote_write.turn(1, wait_seconds=0.05) as got:
            assert got is False
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    with remote_write.turn(1, wait_seconds=0.05) as got:  # released when the holder ended
        assert got is True


@pytest.mark.slow
def test_gunicorn_workers_answer_429_while_the_machine_s_turns_are_taken(
    processes: Any, tokens: dict[str, str], tmp_path: Any
) -> None:
    """Over real HTTP to `popcorn serve` with two workers: this test process holds the one
    turn, as a worker storing a long request would, and the workers refuse the excess."""
    import httpx

    processes.env["POPCORN_SIGNALS_REMOTE_WRITE_MAX_INFLIGHT"] = "1"
    url = processes.serve(tmp_path / "serve.log", workers=2, timeout=60)
    headers = {**HEADERS, "Authorization": f"Bearer {tokens['operator']}"}

    def send(second: int) -> httpx.Response:
        body = write_request(timeseries(UP, [(T0_MS + 1000 * second, 1.0)]))
        return httpx.post(url + WRITE, content=body, headers=headers, timeout=30)

    with remote_write.turn(1) as held:
        assert held
        refused = [send(i) for i in range(2)]
    assert [r.status_code for r in refused] == [429, 429]
    assert all(r.headers["Retry-After"] == "1" for r in refused)
    assert send(0).status_code == 204  # the sender's retry, once the turn is free
    with session_scope(readonly=True) as session:
        assert session.scalars(select(Series.sample_count)).all() == [1]
