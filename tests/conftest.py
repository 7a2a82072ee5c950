"""Shared fixtures: a fresh installation per test session, clean tables per test.

By default the suite runs on the embedded defaults (SQLite and an embedded
Redis in a temporary POPCORN_HOME). With POPCORN_TEST_DATABASE_URL and
POPCORN_TEST_REDIS_URL set it runs against those servers instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

TEST_DB = os.environ.get("POPCORN_TEST_DATABASE_URL")
SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))
TEST_REDIS = os.environ.get("POPCORN_TEST_REDIS_URL")


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine

    from popcorn.config import normalize_database_url

    engine = create_engine(normalize_database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session", autouse=True)
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Points every Popcorn setting at a throwaway installation for the whole session."""
    home = tmp_path_factory.mktemp("popcorn-home")
    env = {
        "POPCORN_HOME": str(home),
        "POPCORN_LOG_LEVEL": "WARNING",
        "POPCORN_PLUGINS": "popcorn_test_plugins",
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")]),
    }
    if TEST_DB:
        _reset_postgres(TEST_DB)
        env["POPCORN_DATABASE_URL"] = TEST_DB
    if TEST_REDIS:
        env["POPCORN_REDIS_URL"] = TEST_REDIS
    os.environ.update(env)
    from popcorn.config import reset_settings

    reset_settings()
    from popcorn.db import upgrade
    from popcorn.jobs import get_redis

    upgrade()
    redis = get_redis()
    redis.flushdb()
    if not TEST_REDIS:
        from popcorn.jobs import embedded_redis_server

        env["POPCORN_REDIS_URL"] = f"unix://{embedded_redis_server().socket_file}"
    yield env
    from popcorn.db import dispose_engines
    from popcorn.jobs import reset_redis

    reset_redis()
    dispose_engines()


_TABLES: list[str] = []


def _tables() -> list[str]:
    """The installation's tables (children first), read once from the migrated database."""
    if not _TABLES:
        from sqlalchemy import inspect

        from popcorn.db import Base, get_engine
        from popcorn.domains import load_models

        load_models()
        existing = set(inspect(get_engine()).get_table_names())
        _TABLES.extend(t.name for t in reversed(Base.metadata.sorted_tables) if t.name in existing)
    return _TABLES


@pytest.fixture(autouse=True)
def clean_tables() -> Iterator[None]:
    """Every test starts with empty tables and an empty Redis."""
    yield
    from popcorn.db import get_engine
    from popcorn.jobs import get_redis

    engine = get_engine()
    tables = _tables()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))
    get_redis().flushdb()


@pytest.fixture(scope="session")
def app(installation: dict[str, str]) -> Any:
    from popcorn.app import create_app

    application = create_app()
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def tokens() -> dict[str, str]:
    """One token per role: {"viewer": secret, "operator": secret, "admin": secret}."""
    from popcorn.auth import create_token
    from popcorn.db import session_scope

    out = {}
    with session_scope() as session:
        for role in ("viewer", "operator", "admin"):
            _, raw = create_token(session=session, name=f"test-{role}", role=role)
            out[role] = raw
    return out


class Api:
    """Calls the test app with a role's token: api.get("/api/v1/jobs", role="viewer")."""

    def __init__(self, client: Any, tokens: dict[str, str]):
        self.client = client
        self.tokens = tokens

    def _headers(self, role: str | None, extra: dict[str, str] | None) -> dict[str, str]:
        headers = dict(extra or {})
        if role:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        role: str | None = "admin",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        return self.client.open(path, method=method, headers=self._headers(role, headers), **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def api(client: Any, tokens: dict[str, str]) -> Api:
    return Api(client, tokens)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Real child processes (workers, servers) that are always killed at teardown."""

    def __init__(self, env: dict[str, str]):
        self.env = {**os.environ, **env}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "popcorn", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def kill(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL, timeout: float = 30
    ) -> None:
        """Signal a process and all its descendants (rq work horses have their own group)."""
        import psutil

        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for member in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.send_signal(sig)
        proc.wait(timeout=timeout)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    self.kill(proc, signal.SIGTERM, timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill(proc, signal.SIGKILL)


@pytest.fixture
def processes(installation: dict[str, str]) -> Iterator[Processes]:
    procs = Processes(installation)
    yield procs
    procs.stop_all()


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; fail the test with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s")


@pytest.fixture
def live_server(processes: Processes, tmp_path: Path) -> Iterator[str]:
    """Gunicorn serving the app on a free loopback port."""
    import httpx

    port = free_port()
    processes.start("serve", "--port", str(port), "--workers", "1", log=tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=30)
    yield url
