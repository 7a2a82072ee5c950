"""The CLI's conventions, `popcorn up` as a supervisor, and the Python client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from click.testing import CliRunner
from popcorn_testing import Processes, free_port, wait_until

from popcorn.cli import cli
from popcorn.client import Client, PopcornAPIError
from popcorn.commands import register

register(cli)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_token_lifecycle_from_the_cli() -> None:
    created = run("token", "create", "--name", "ops", "--role", "operator", "--json")
    assert created.exit_code == 0
    data = json.loads(created.stdout)
    assert data["token"].startswith("pop_") and data["role"] == "operator"
    listed = json.loads(run("token", "list", "--json").stdout)["items"]
    assert [t["name"] for t in listed] == ["ops"]
    assert "token" not in listed[0]
    assert run("token", "revoke", "ops").exit_code == 0
    again = run("token", "revoke", "ops")
    assert again.exit_code == 1
    assert "already revoked" in again.output
    assert "Traceback" not in again.output


def test_bad_input_is_one_line_and_non_zero() -> None:
    duplicate = run("token", "create", "--name", "a", "--role", "viewer")
    assert duplicate.exit_code == 0
    again = run("token", "create", "--name", "a", "--role", "viewer")
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1].startswith("Error: a token named 'a'")
    bad_name = run("token", "create", "--name", "has space", "--role", "viewer")
    assert bad_name.exit_code == 1 and "name" in bad_name.output
    missing = run("jobs", "show", "999")
    assert missing.exit_code == 1 and "no job 999" in missing.output


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from popcorn.config import reset_settings

    monkeypatch.setenv("POPCORN_SECRET_KEY", "very-secret-value")
    monkeypatch.setenv("POPCORN_DATABASE_URL", "postgresql://app:hunter2@db:5432/popcorn")
    reset_settings()
    try:
        shown = json.loads(run("config", "show", "--json").stdout)
    finally:
        monkeypatch.undo()
        reset_settings()
    assert shown["secret_key"] == "********"
    assert "hunter2" not in json.dumps(shown)
    assert shown["database_url"] == "postgresql+psycopg://app:****@db:5432/popcorn"


def test_settings_from_popcorn_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from popcorn.config import Settings

    (tmp_path / "popcorn.toml").write_text('[popcorn]\njob_retries = 7\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("POPCORN_CONFIG", str(tmp_path / "popcorn.toml"))
    monkeypatch.setenv("POPCORN_LOG_LEVEL", "ERROR")
    settings = Settings()
    assert settings.job_retries == 7
    assert settings.log_level == "ERROR"  # the environment wins over the file


def test_settings_arguments_win_and_variables_are_read_in_any_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from popcorn.config import Settings

    (tmp_path / "popcorn.toml").write_text("[popcorn]\njob_retries = 7\njob_timeout = 5\n")
    monkeypatch.setenv("POPCORN_CONFIG", str(tmp_path / "popcorn.toml"))
    monkeypatch.setenv("popcorn_job_timeout", "9")
    assert Settings().job_timeout == 9 and Settings().job_retries == 7
    assert Settings(job_timeout=3).job_timeout == 3
    monkeypatch.setenv("POPCORN_JOB_LOST_AFTER", "1")  # below its minimum: refused, not used
    with pytest.raises(ValueError, match="job_lost_after"):
        Settings()


def test_generated_secret_is_kept(tmp_path: Path) -> None:
    from popcorn.config import Settings

    settings = Settings(home=tmp_path)
    first = settings.effective_secret_key
    assert Settings(home=tmp_path).effective_secret_key == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_jobs_and_audit_listing_as_json() -> None:
    run("jobs", "submit", "core.echo", "x=1", "--delay", "600")
    jobs = json.loads(run("jobs", "list", "--json").stdout)["items"]
    assert jobs[0]["task"] == "core.echo" and jobs[0]["arguments"] == {"x": 1}
    run("token", "create", "--name", "audited", "--role", "viewer")
    audit = json.loads(run("audit", "--object-type", "token", "--json").stdout)
    assert list(audit) == ["items"]  # one shape for every list
    audit = audit["items"]
    assert audit[0]["action"] == "create" and audit[0]["actor"].startswith("cli:")


def test_client_talks_to_a_live_server(
    live_server: str, tokens: dict[str, str], processes: Processes
) -> None:
    processes.start("worker")
    with Client(live_server, tokens["operator"]) as client:
        assert client.whoami() == {"name": "test-operator", "role": "operator"}
        job = client.submit_job("core.echo", n=42)
        done = client.wait_for_job(job["id"], timeout=30)
        assert done["result"]["echo"] == {"n": 42}
        assert [j["id"] for j in client.jobs()] == [job["id"]]
        with pytest.raises(PopcornAPIError) as err:
            client.post("/api/v1/tokens", {"name": "x", "role": "viewer"})
        assert err.value.status == 403 and err.value.code == "forbidden"
    with Client(live_server, "pop_wrong") as bad, pytest.raises(PopcornAPIError) as err:
        bad.whoami()
    assert err.value.status == 401


def test_client_pages_through_long_lists(live_server: str, tokens: dict[str, str]) -> None:
    run_many = [run("token", "create", "--name", f"n{i}", "--role", "viewer") for i in range(12)]
    assert all(r.exit_code == 0 for r in run_many)
    with Client(live_server, tokens["admin"]) as client:
        records = list(client.paginate("/api/v1/audit", limit=5, object_type="token"))
    assert len(records) == 15  # 3 fixture tokens + 12


def test_up_supervises_and_stops_cleanly(installation: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {**__import__("os").environ, **installation}
    proc = subprocess.Popen(
        [sys.executable, "-m", "popcorn", "up", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=(tmp_path / "up.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ready(url), timeout=60)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4  # api master + its worker, rq worker, scheduler
        worker = next(
            c for c in psutil.Process(proc.pid).children() if "worker" in c.cmdline()[3:4]
        )
        worker.kill()  # the supervisor restarts a child that dies
        wait_until(
            lambda: any(
                "worker" in c.cmdline()[3:4]
                for c in psutil.Process(proc.pid).children()
                if c.pid != worker.pid and c.is_running()
            ),
            timeout=30,
        )
        children = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed half-way: take the whole tree down
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    leftovers = [
        c.cmdline() for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE
    ]
    assert leftovers == []


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_up_restarts_its_embedded_redis(installation: dict[str, str], tmp_path: Path) -> None:
    """kill -9 the embedded Redis: `popcorn up` starts it again and jobs run afterwards."""
    import os

    home = tmp_path / "home"
    env = {**os.environ, **installation, "POPCORN_HOME": str(home)}
    env.pop("POPCORN_REDIS_URL")  # the supervisor owns an embedded Redis of its own
    port = free_port()
    log = tmp_path / "up.log"
    up = ["up", "--port", str(port), "--workers", "1", "--job-workers", "1", "--admin-token"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "popcorn", *up],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    redis_pids: list[int] = []
    try:
        wait_until(lambda: _ready(url), timeout=60)
        token = next(
            line.split(": ", 1)[1]
            for line in log.read_text().splitlines()
            if line.startswith("admin token: ")
        )
        redis_pids.append(_embedded_redis_pid(home))
        psutil.Process(redis_pids[0]).kill()
        wait_until(lambda: _embedded_redis_pid(home) not in (0, redis_pids[0]), timeout=30)
        redis_pids.append(_embedded_redis_pid(home))
        wait_until(lambda: _ready(url), timeout=60)
        with Client(url, token) as client:
            job = client.submit_job("core.echo", after="restart")
            done = client.wait_for_job(job["id"], timeout=60)
        assert done["status"] == "finished" and done["result"]["echo"] == {"after": "restart"}
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()
        for pid in redis_pids:
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()
    assert proc.returncode == 0


def _embedded_redis_pid(home: Path) -> int:
    """The pid in the embedded Redis's pidfile (0 when it cannot be read)."""
    try:
        settings = json.loads((home / "redis.rdb.settings").read_text())
        return int(Path(settings["pidfile"]).read_text().strip() or 0)
    except (OSError, ValueError, KeyError):
        return 0
