"""Installed packages from an RPM database, for hosts that use rpm instead of dpkg.

Two ways, in the collectors' order of preference:

- the `rpm` binary, when it is on the agent's PATH: `rpm --root ROOT --dbpath DBPATH -qa`
  reads every database format rpm knows (sqlite, Berkeley DB, ndb);
- without it, the sqlite rpmdb (`rpmdb.sqlite`, the default since RPM 4.16: Fedora 33+,
  RHEL 9, openSUSE) is read directly: its `Packages` table holds one RPM header blob per
  package, parsed here (index entries of tag, type, offset, count; big-endian).

The database is opened read-only and immutable, so reading it writes nothing (no WAL or
shared-memory file) on the host. Berkeley DB (`Packages`, RHEL 8 and older) and ndb
(`Packages.db`) databases need the `rpm` binary.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

DB_DIRS = ("/var/lib/rpm", "/usr/lib/sysimage/rpm")
SQLITE_NAME = "rpmdb.sqlite"
OTHER_NAMES = ("Packages", "Packages.db")  # Berkeley DB, ndb
QUERY_FORMAT = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n"
MAX_HEADER = 64 * 1024 * 1024

TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH = 1000, 1001, 1002, 1003, 1022
TYPE_INT32, TYPE_STRING, TYPE_I18NSTRING = 4, 6, 9


class RpmDbError(ValueError):
    """An RPM database that cannot be read (format, corruption): reported on the table."""


def find_dbpath(root: Path) -> tuple[str, str] | None:
    """(dbpath as on the host, its format: sqlite, bdb or ndb) of the first database found."""
    for dbpath in DB_DIRS:
        directory = root / dbpath.lstrip("/")
        if (directory / SQLITE_NAME).is_file():
            return dbpath, "sqlite"
        for name, kind in zip(OTHER_NAMES, ("bdb", "ndb"), strict=True):
            if (directory / name).is_file():
                return dbpath, kind
    return None


def package_row(name: str, epoch: int | None, version: str, release: str, arch: str | None
                ) -> dict[str, Any]:  # fmt: skip
    """One package in the dpkg rows' shape: the version carries the epoch as dpkg's does."""
    full = f"{version}-{release}" if release else version
    if epoch:
        full = f"{epoch}:{full}"
    return {
        "name": name,
        "version": full,
        "arch": None if arch in (None, "", "(none)") else arch,
        "status": "installed",
        "manager": "rpm",
    }


def parse_query_output(text: str) -> Iterator[dict[str, Any]]:
    """Lines of `rpm -qa --queryformat QUERY_FORMAT`."""
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 5 or not fields[0]:
            continue
        name, epoch, version, release, arch = fields
        yield package_row(name, int(epoch) if epoch.isdecimal() else None, version, release, arch)


def parse_header(blob: bytes) -> dict[int, Any]:
    """The tags of one RPM header blob (as stored in rpmdb: no leading magic)."""
    if len(blob) < 8:
        raise RpmDbError("an RPM header shorter than its preamble")
    count, size = struct.unpack(">II", blob[:8])
    start = 8 + count * 16
    if count > 100_000 or start + size > len(blob) or size > MAX_HEADER:
        raise RpmDbError("an RPM header whose index does not fit its blob")
    data = blob[start : start + size]
    tags: dict[int, Any] = {}
    for i in range(count):
        tag, kind, offset, n = struct.unpack(">IIII", blob[8 + i * 16 : 24 + i * 16])
        if tag not in (TAG_NAME, TAG_VERSION, TAG_RELEASE, TAG_EPOCH, TAG_ARCH):
            continue
        if offset >= len(data):
            raise RpmDbError(f"RPM header tag {tag} points outside its data")
        if kind == TYPE_INT32 and n >= 1 and offset + 4 <= len(data):
            tags[tag] = struct.unpack(">i", data[offset : offset + 4])[0]
        elif kind in (TYPE_STRING, TYPE_I18NSTRING):
            end = data.find(b"\0", offset)
            tags[tag] = data[offset : end if end >= 0 else len(data)].decode(errors="replace")
    return tags


def read_sqlite(path: Path) -> Iterator[dict[str, Any]]:
    """Packages of an rpmdb.sqlite, opened read-only and immutable (nothing written)."""
    uri = f"file:{quote(str(path))}?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise RpmDbError(f"cannot open the rpm database: {exc}") from exc
    try:
        rows = connection.execute("SELECT blob FROM Packages ORDER BY hnum").fetchall()
    except sqlite3.Error as exc:
        raise RpmDbError(f"not an rpm sqlite database: {exc}") from exc
    finally:
        connection.close()
    for (blob,) in rows:
        if not isinstance(blob, bytes):
            continue
        tags = parse_header(blob)
        if TAG_NAME not in tags:
            continue
        epoch = tags.get(TAG_EPOCH)
        yield package_row(
            tags[TAG_NAME],
            epoch if isinstance(epoch, int) else None,
            str(tags.get(TAG_VERSION, "")),
            str(tags.get(TAG_RELEASE, "")),
            tags.get(TAG_ARCH),
        )
