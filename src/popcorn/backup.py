"""`popcorn backup` / `popcorn restore`: the database plus every stored object in one tar.

The archive holds `manifest.json` (what is inside, with sizes and SHA-256 digests), the
database (`database.sqlite3`, taken with SQLite's online backup API while the platform
runs, or `database.dump` from `pg_dump --format=custom`), every object of the store under
`objects/<key>`, and the generated secret key if the installation uses one (sealed secrets
in the database cannot be read without it, so the archive is as sensitive as the home).
Queues in Redis are not kept: jobs are recorded in the database. Neither is Metaflow's own
datastore (`metaflow/` in an S3 store, `<home>/metaflow` otherwise): it is Metaflow's record
of its runs, while the models Popcorn serves are stored objects (`ml/models/`) and kept.

A restore goes into an empty installation only (no database tables, no objects), so it
never mixes two installations; it checks every digest before it writes anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from popcorn.config import PRIVATE_FILE, SECRET_FILE_NAME, ensure_home, get_settings
from popcorn.db import current_revisions, dispose_engines, get_engine
from popcorn.errors import Conflict, InvalidInput
from popcorn.storage import get_store

FORMAT = "popcorn-backup"
VERSION = 1
SQLITE_MEMBER = "database.sqlite3"
PG_MEMBER = "database.dump"
SECRET_MEMBER = "secret_key"
OBJECTS = "objects/"
SKIPPED_PREFIXES = ("metaflow/",)  # written by Metaflow itself, under its own key rules

Progress = Callable[[int, int, str], None]


def _no_progress(done: int, total: int, what: str) -> None:
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _database_kind(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise InvalidInput(f"backup supports SQLite and PostgreSQL databases, not {url.split(':')[0]}")


def _pg_command(program: str, url: str) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore; the password goes in the environment."""
    path = shutil.which(program)
    if path is None:
        raise InvalidInput(
            f"{program} is not installed: install the PostgreSQL client (Debian package "
            "postgresql-client) to back up or restore a PostgreSQL database"
        )
    parsed = make_url(url)
    args = [path, "--no-owner", "--no-privileges"]
    if parsed.host:
        args.append(f"--host={parsed.host}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    args.append(f"--dbname={parsed.database}")
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise InvalidInput(f"{Path(args[0]).name}: {last}")


def _dump_database(url: str, folder: Path) -> tuple[str, Path]:
    kind = _database_kind(url)
    if kind == "sqlite":
        target = folder / SQLITE_MEMBER
        source = sqlite3.connect(make_url(url).database or "")
        try:
            copy = sqlite3.connect(target)
            with copy:
                source.backup(copy)  # a consistent snapshot while writers carry on
            copy.close()
        finally:
            source.close()
        return kind, target
    target = folder / PG_MEMBER
    args, env = _pg_command("pg_dump", url)
    _run([*args, "--format=custom", f"--file={target}"], env)
    return kind, target


def _add_file(archive: tarfile.TarFile, name: str, path: Path) -> None:
    info = archive.gettarinfo(str(path), arcname=name)
    info.mode, info.uid, info.gid, info.uname, info.gname = PRIVATE_FILE, 0, 0, "", ""
    with path.open("rb") as handle:
        archive.addfile(info, handle)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), PRIVATE_FILE
    info.mtime = int(datetime.now(UTC).timestamp())
    archive.addfile(info, io.BytesIO(data))


def backup(dest: Path, progress: Progress = _no_progress) -> dict[str, Any]:
    """Write the archive to `dest` (a new file); returns the manifest."""
    if dest.exists():
        raise Conflict(f"{dest} exists: choose a new file name", details={"path": str(dest)})
    if not dest.parent.is_dir():
        raise InvalidInput(f"{dest.parent} is not a directory", details={"path": str(dest)})
    settings = get_settings()
    url = settings.effective_database_url
    store = get_store()
    objects = [o for o in store.list() if not o.key.startswith(SKIPPED_PREFIXES)]
    total = len(objects) + 1
    secret_path = settings.home / SECRET_FILE_NAME
    with tempfile.TemporaryDirectory(prefix=".popcorn-backup-", dir=dest.parent) as tmp:
        folder = Path(tmp)
        progress(0, total, "database")
        kind, dump = _dump_database(url, folder)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": datetime.now(UTC).isoformat(),
            "database": {
                "kind": kind,
                "member": dump.name,
                "size": dump.stat().st_size,
                "sha256": _sha256(dump),
                "revisions": sorted(current_revisions()),
            },
            "store": store.location,
            "secret_key": not settings.secret_key and secret_path.is_file(),
            "objects": [],
        }
        staging = folder / "archive.tar"
        with tarfile.open(staging, "w") as archive:
            _add_file(archive, dump.name, dump)
            progress(1, total, "objects")
            for done, obj in enumerate(objects, start=2):
                data = store.get(obj.key)
                digest = hashlib.sha256(data).hexdigest()
                manifest["objects"].append({"key": obj.key, "size": len(data), "sha256": digest})
                _add_bytes(archive, OBJECTS + obj.key, data)
                progress(done, total, obj.key)
            if manifest["secret_key"]:
                _add_file(archive, SECRET_MEMBER, secret_path)
            _add_bytes(archive, "manifest.json", json.dumps(manifest, indent=1).encode())
        os.chmod(staging, PRIVATE_FILE)
        os.replace(staging, dest)
    return summary(manifest, dest)


def summary(manifest: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        "path": str(path),
        "created_at": manifest["created_at"],
        "database": manifest["database"]["kind"],
        "revisions": manifest["database"]["revisions"],
        "objects": len(manifest["objects"]),
        "object_bytes": sum(o["size"] for o in manifest["objects"]),
        "secret_key": manifest["secret_key"],
    }


@contextmanager
def _open(src: Path) -> Iterator[tuple[tarfile.TarFile, dict[str, Any]]]:
    if not src.is_file():
        raise InvalidInput(f"{src}: no such file", details={"path": str(src)})
    try:
        archive = tarfile.open(src, "r")  # noqa: SIM115 (closed below, after the checks)
    except tarfile.TarError as exc:
        raise InvalidInput(f"{src} is not a Popcorn backup: {exc}") from None
    with archive:
        try:
            member = archive.extractfile("manifest.json")
            manifest = json.loads(member.read()) if member else None
        except (KeyError, ValueError):
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InvalidInput(f"{src} is not a Popcorn backup (no manifest)")
        if manifest.get("version") != VERSION:
            raise InvalidInput(f"{src}: backup format {manifest.get('version')} is not supported")
        yield archive, manifest


def _member_bytes(archive: tarfile.TarFile, name: str, sha256: str | None) -> bytes:
    handle = archive.extractfile(name)
    if handle is None:
        raise InvalidInput(f"the backup lacks {name}")
    data = handle.read()
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidInput(f"the backup is damaged: {name} does not match its digest")
    return data


def _check_empty(secret: bytes | None) -> None:
    store = get_store()
    if any(not o.key.startswith(SKIPPED_PREFIXES) for o in store.list()):
        raise Conflict(f"restore needs an empty object store; {store.location} holds objects")
    tables = inspect(get_engine()).get_table_names()
    if tables:
        raise Conflict(f"restore needs an empty database; it has {len(tables)} tables")
    path = get_settings().home / SECRET_FILE_NAME
    if secret is not None and path.exists() and path.read_bytes().strip() != secret.strip():
        raise Conflict(f"{path} holds another key; move it away to restore the backup's key")


def restore(src: Path, progress: Progress = _no_progress) -> dict[str, Any]:
    """Load an archive into this (empty) installation; returns what was restored."""
    settings = get_settings()
    url = settings.effective_database_url
    with _open(src) as (archive, manifest):
        db = manifest["database"]
        kind = _database_kind(url)
        if db["kind"] != kind:
            raise InvalidInput(
                f"the backup holds a {db['kind']} database; this installation uses {kind}"
            )
        secret = _member_bytes(archive, SECRET_MEMBER, None) if manifest["secret_key"] else None
        _check_empty(secret)
        objects: list[dict[str, Any]] = manifest["objects"]
        total = len(objects) + 1
        dump = _member_bytes(archive, db["member"], db["sha256"])
        for entry in objects:  # every digest before anything is written
            _member_bytes(archive, OBJECTS + entry["key"], entry["sha256"])
        progress(0, total, "database")
        ensure_home(settings.home)
        dispose_engines()
        with tempfile.TemporaryDirectory(prefix=".popcorn-restore-", dir=settings.home) as tmp:
            path = Path(tmp) / db["member"]
            path.write_bytes(dump)
            if kind == "sqlite":
                target = Path(make_url(url).database or "")
                source = sqlite3.connect(path)
                copy = sqlite3.connect(target)
                try:
                    with copy:
                        source.backup(copy)
                finally:
                    copy.close()
                    source.close()
                os.chmod(target, PRIVATE_FILE)
            else:
                args, env = _pg_command("pg_restore", url)
                _run([*args, "--exit-on-error", str(path)], env)
        store = get_store()
        for done, entry in enumerate(objects, start=1):
            store.put(entry["key"], _member_bytes(archive, OBJECTS + entry["key"], None))
            progress(done, total, entry["key"])
        key_path = settings.home / SECRET_FILE_NAME
        if secret is not None and not key_path.exists():
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            try:
                os.write(fd, secret)
            finally:
                os.close(fd)
    dispose_engines()
    return summary(manifest, src)
