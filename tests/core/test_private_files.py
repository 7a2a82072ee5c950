"""Tokens named like ids, and an installation whose files only its owner can read."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from popcorn.config import Settings, ensure_home
from popcorn.db import dispose_engines, make_engine


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_token_named_with_digits_is_revoked_by_name(api: Any) -> None:
    first = api.post("/api/v1/tokens", json={"name": "first", "role": "viewer"}).json
    # A token whose name is another token's id: the name wins.
    named = api.post("/api/v1/tokens", json={"name": str(first["id"]), "role": "viewer"}).json
    revoked = api.delete(f"/api/v1/tokens/{first['id']}")
    assert revoked.status_code == 200
    assert revoked.json["id"] == named["id"]
    digits = api.post("/api/v1/tokens", json={"name": "2024", "role": "viewer"}).json
    assert api.delete("/api/v1/tokens/2024").json["id"] == digits["id"]
    assert api.delete("/api/v1/tokens/first").json["id"] == first["id"]
    assert api.delete(f"/api/v1/tokens/{2**63}").status_code == 404


def test_home_secret_and_database_files_are_private(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, secret_key=None)
    assert settings.effective_secret_key
    assert mode(home) == 0o700
    assert mode(home / "secret_key") == 0o600
    db = home / "popcorn.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        for name in ("popcorn.db", "popcorn.db-wal", "popcorn.db-shm"):
            assert mode(home / name) == 0o600, name
    finally:
        engine.dispose()
        dispose_engines()


def test_an_older_installation_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "old"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    (home / "secret_key").write_text("k" * 40)
    (home / "secret_key").chmod(0o644)
    db = home / "popcorn.db"
    db.touch()
    db.chmod(0o644)
    ensure_home(home)
    assert Settings(home=home, secret_key=None).effective_secret_key == "k" * 40
    make_engine(f"sqlite:///{db}").dispose()
    assert (mode(home), mode(home / "secret_key"), mode(db)) == (0o700, 0o600, 0o600)


def test_the_embedded_redis_keeps_its_files_private(installation: dict[str, str]) -> None:
    from popcorn.config import get_settings
    from popcorn.jobs import get_redis

    if not installation["POPCORN_REDIS_URL"].startswith("unix://"):
        return  # an external Redis keeps its files elsewhere
    get_redis().set("probe", "1")
    get_redis().save()
    home = get_settings().home
    files = [p for p in home.rglob("redis.rdb*") if p.is_file()]
    files += [p for p in home.rglob("*.aof") if p.is_file()]
    assert files
    for path in files:
        assert mode(path) & 0o077 == 0, path
