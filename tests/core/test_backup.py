"""`popcorn backup` and `popcorn restore` on the embedded defaults: an inventory device,
signal samples and a stored notebook survive the round trip into a new, empty home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

T0 = 1_772_445_600  # 2026-03-02T10:00:00Z

SETUP = textwrap.dedent(
    f"""
    from popcorn.config import get_settings
    from popcorn.db import session_scope, upgrade
    from popcorn.inventory.service import create_object
    from popcorn.notebooks import archive
    from popcorn.signals import service as signals

    upgrade()
    get_settings().effective_secret_key  # sealed secrets need it: the backup keeps it
    with session_scope() as session:
        create_object(session=session, otype="site", data={{"code": "ams1", "name": "AMS 1"}})
        create_object(session=session, otype="manufacturer", data={{"name": "Acme"}})
        create_object(
            session=session,
            otype="device_model",
            data={{"manufacturer": "Acme", "model": "OCA", "slug": "oca"}},
        )
        create_object(
            session=session,
            otype="device",
            data={{"name": "oca-1", "role": "storage-appliance", "model": "oca", "site": "ams1"}},
        )
    for value in (1.0, 2.0):  # two batches: two sample objects
        with session_scope() as session:
            signals.ingest_json(
                session=session,
                payload={{"series": [{{"metric": "edge_rps", "labels": {{"site": "ams1"}},
                          "samples": [[{T0}, value], [{T0 + 60}, value + 10]]}}]}},
            )
    with session_scope() as session:
        archive.save_version(
            session=session,
            path="reports/daily.ipynb",
            notebook={{"cells": [], "metadata": {{"x": 1}}, "nbformat": 4, "nbformat_minor": 5}},
        )
    """
)

CHECK = textwrap.dedent(
    f"""
    import json
    from popcorn.db import session_scope
    from popcorn.inventory.service import get_object
    from popcorn.notebooks import archive
    from popcorn.signals import service as signals

    with session_scope(readonly=True) as session:
        device = get_object(session=session, otype="device", ref="oca-1")
        device = {{"name": device.name, "has_site": device.site_id is not None}}
        res = signals.query(session=session, selector="edge_rps", start={T0}, end={T0 + 60})
        version = archive.latest_version(session=session, path="reports/daily.ipynb")
        notebook = archive.version_content(version)
    print(json.dumps({{"device": device["name"], "site": device["has_site"],
                      "samples": res.values[0].tolist(), "notebook": notebook["metadata"]}}))
    """
)


def popcorn_env(home: Path, installation: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPCORN_")}
    env.update(
        POPCORN_HOME=str(home),
        POPCORN_REDIS_URL=installation["POPCORN_REDIS_URL"],
        POPCORN_LOG_LEVEL="WARNING",
    )
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.mark.slow
def test_backup_and_restore_round_trip(tmp_path: Path, installation: dict[str, str]) -> None:
    source = popcorn_env(tmp_path / "home-a", installation)
    done = run(source, "-c", SETUP)
    assert done.returncode == 0, done.stderr

    archive = tmp_path / "popcorn.tar"
    done = run(source, "-m", "popcorn", "backup", str(archive), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["database"] == "sqlite" and summary["secret_key"] is True
    assert summary["objects"] == 3  # two sample objects and the notebook
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "manifest.json" in names and "database.sqlite3" in names and "secret_key" in names
    assert any(n.startswith("objects/signals/samples/day=2026-03-02/") for n in names)

    done = run(source, "-m", "popcorn", "backup", str(archive))
    assert done.returncode == 1 and "exists" in done.stderr.strip().splitlines()[-1]

    target = popcorn_env(tmp_path / "home-b", installation)
    done = run(target, "-m", "popcorn", "restore", str(archive), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["objects"] == 3
    assert (tmp_path / "home-b" / "secret_key").read_bytes() == (
        tmp_path / "home-a" / "secret_key"
    ).read_bytes()

    done = run(target, "-c", CHECK)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "device": "oca-1",
        "site": True,
        "samples": [2.0, 12.0],  # the later batch won, as before the backup
        "notebook": {"x": 1},
    }

    # a second restore would mix two installations: refused in one line
    done = run(target, "-m", "popcorn", "restore", str(archive))
    assert done.returncode == 1
    assert "restore needs an empty" in done.stderr.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("POPCORN_TEST_DATABASE_URL"),
    reason="needs a PostgreSQL server (runs on the server pass)",
)
def test_round_trip_between_postgresql_databases(
    tmp_path: Path, installation: dict[str, str]
) -> None:
    """pg_dump's archive restored by pg_restore into another, empty database: the same rows."""
    from sqlalchemy import create_engine, text

    server = os.environ["POPCORN_TEST_DATABASE_URL"]
    names = [f"{server.rsplit('/', 1)[1]}_backup_{side}" for side in ("a", "b")]
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        source, target = (
            dict(popcorn_env(tmp_path / f"home-{side}", installation)) for side in ("a", "b")
        )
        source["POPCORN_DATABASE_URL"] = f"{server.rsplit('/', 1)[0]}/{names[0]}"
        target["POPCORN_DATABASE_URL"] = f"{server.rsplit('/', 1)[0]}/{names[1]}"
        done = run(source, "-c", SETUP)
        assert done.returncode == 0, done.stderr
        archive = tmp_path / "pg.tar"
        done = run(source, "-m", "popcorn", "backup", str(archive), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["database"] == "postgresql"

        done = run(target, "-m", "popcorn", "restore", str(archive), "--json")
        assert done.returncode == 0, done.stderr
        done = run(target, "-c", CHECK)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {
            "device": "oca-1",
            "site": True,
            "samples": [2.0, 12.0],
            "notebook": {"x": 1},
        }
        done = run(target, "-m", "popcorn", "restore", str(archive))
        assert done.returncode == 1
        assert "restore needs an empty" in done.stderr.strip().splitlines()[-1]
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, installation: dict[str, str]) -> None:
    env = popcorn_env(tmp_path / "home", installation)
    bogus = tmp_path / "bogus.tar"
    with tarfile.open(bogus, "w") as tar:
        tar.add(__file__, arcname="notes.txt")
    for path, message in ((bogus, "is not a Popcorn backup"), (tmp_path / "none", "no such")):
        done = run(env, "-m", "popcorn", "restore", str(path))
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr


def test_backup_of_the_running_installation(tmp_path: Path) -> None:
    """The suite's own installation: SQLite by default, PostgreSQL (through pg_dump) when
    the suite runs on a server; a restore onto it is refused, it is not empty."""
    from popcorn import backup
    from popcorn.errors import Conflict
    from popcorn.storage import get_store

    get_store().put("reports/weekly.html", b"<p>week 49</p>")
    seen: list[str] = []
    summary = backup.backup(tmp_path / "b.tar", lambda done, total, what: seen.append(what))
    assert summary["objects"] >= 1 and seen[0] == "database" and "reports/weekly.html" in seen
    with tarfile.open(tmp_path / "b.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        member = tar.extractfile(manifest["database"]["member"]).read()
    if summary["database"] == "postgresql":
        assert member.startswith(b"PGDMP")  # pg_dump's custom format
    else:
        assert member.startswith(b"SQLite format 3")
    with pytest.raises(Conflict, match="restore needs an empty"):
        backup.restore(tmp_path / "b.tar")
    get_store().delete("reports/weekly.html")


def test_backup_reads_an_s3_store(
    tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from popcorn import backup
    from popcorn.config import reset_settings
    from popcorn.storage import get_store

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="backup-source")
    monkeypatch.setenv("POPCORN_STORAGE_URL", "s3://backup-source/popcorn")
    monkeypatch.setenv("POPCORN_STORAGE_ENDPOINT_URL", moto_endpoint)
    reset_settings()
    try:
        get_store().put("ml/models/demand/v1.pkl", b"model bytes")
        # Metaflow's own datastore (its keys follow its rules, e.g. `_parameters`) is left out
        s3.put_object(Bucket="backup-source", Key="popcorn/metaflow/F/1/_parameters/x", Body=b"")
        summary = backup.backup(tmp_path / "s3.tar")
        with tarfile.open(tmp_path / "s3.tar") as tar:
            names = tar.getnames()
        assert summary["objects"] == 1 and "objects/ml/models/demand/v1.pkl" in names
    finally:
        monkeypatch.undo()
        reset_settings()
