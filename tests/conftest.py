"""Shared fixtures: a fresh installation per test session, clean tables per test.

By default the suite runs on the embedded defaults (SQLite and an embedded
Redis in a temporary POPCORN_HOME). With POPCORN_TEST_DATABASE_URL and
POPCORN_TEST_REDIS_URL set it runs against those servers instead.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

TEST_DB = os.environ.get("POPCORN_TEST_DATABASE_URL")
SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))
# Test folders are packages (so test_api.py may exist in each); their helper modules
# (certhelpers, console_kit, ...) are imported by bare name, so each folder is on the path.
for _folder in sorted(Path(__file__).parent.iterdir()):
    if _folder.is_dir() and (_folder / "__init__.py").exists():
        sys.path.append(str(_folder))

from popcorn_testing import Api, Processes  # noqa: E402

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
        # The test installation's admin lets the platform call its own loopback servers.
        "POPCORN_OUTBOUND_ALLOW": "127.0.0.0/8,::1/128,localhost",
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
    from popcorn.jobs import reset_redis, stop_embedded_redis

    stop_embedded_redis()  # the embedded Redis is a daemon: leave none behind
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
    from popcorn.config import get_settings

    shutil.rmtree(get_settings().home / "objects" / "signals", ignore_errors=True)


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


@pytest.fixture
def api(client: Any, tokens: dict[str, str]) -> Api:
    return Api(client, tokens)


@pytest.fixture
def processes(installation: dict[str, str]) -> Iterator[Processes]:
    procs = Processes(installation)
    yield procs
    procs.stop_all()


@pytest.fixture
def live_server(processes: Processes, tmp_path: Path) -> Iterator[str]:
    """Gunicorn serving the app on a free loopback port."""
    yield processes.serve(tmp_path / "serve.log")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Base URL of a real moto server on a free local port (boto3 talks HTTP to it)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
