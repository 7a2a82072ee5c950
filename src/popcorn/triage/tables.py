"""The tables a triage collection gathers, and how each row is normalised before counting.

Shared by the agent-side collectors (which produce the rows) and the platform (which
hashes them). Normalising removes what differs between healthy peers (PIDs, inode
numbers, ephemeral ports, timestamps, sizes that churn, the host's own name) so that
two hosts running the same thing produce the same row key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

EPHEMERAL_PORT = 32768
HOST_TOKEN = "{host}"


@dataclass(frozen=True)
class TableSpec:
    """One table: its columns, which of them identify a row, and what each means."""

    name: str
    description: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the columns that survive normalisation
    transforms: tuple[tuple[str, Callable[[Any], Any]], ...] = ()


def _port(value: Any) -> Any:
    return "ephemeral" if isinstance(value, int) and value >= EPHEMERAL_PORT else value


def _address(value: Any) -> Any:
    """Wildcard and loopback stay; a host's own unicast address becomes 'host'."""
    if not isinstance(value, str):
        return value
    if value in ("0.0.0.0", "::", "*") or value.startswith(("127.", "::1", "::ffff:127.")):
        return value
    return "host"


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "listening_sockets",
            "sockets in LISTEN (TCP) or unconnected (UDP) state, with the owning process",
            ("protocol", "address", "port", "inode", "pid", "process", "exe", "user"),
            ("protocol", "address", "port", "process", "exe", "user"),
            (("port", _port), ("address", _address)),
        ),
        TableSpec(
            "processes",
            "running processes with executable path, its SHA-256, parent and user",
            ("pid", "ppid", "name", "exe", "sha256", "parent", "user", "cmdline"),
            ("name", "exe", "sha256", "parent", "user"),
        ),
        TableSpec(
            "users",
            "local accounts (passwd)",
            ("name", "uid", "gid", "home", "shell"),
            ("name", "uid", "gid", "home", "shell"),
        ),
        TableSpec(
            "groups",
            "local groups (group) with their members",
            ("name", "gid", "members"),
            ("name", "gid", "members"),
        ),
        TableSpec(
            "authorized_keys",
            "SSH authorized_keys entries of every local account",
            ("user", "path", "options", "key_type", "fingerprint", "comment"),
            ("user", "path", "options", "key_type", "fingerprint", "comment"),
        ),
        TableSpec(
            "crontabs",
            "cron entries (/etc/crontab, /etc/cron.d, per-user crontabs)",
            ("source", "user", "schedule", "command"),
            ("source", "user", "schedule", "command"),
        ),
        TableSpec(
            "systemd_timers",
            "systemd timer units and what they start",
            ("path", "unit", "schedule", "activates"),
            ("path", "unit", "schedule", "activates"),
        ),
        TableSpec(
            "kernel_modules",
            "loaded kernel modules",
            ("name", "size", "refcount", "used_by", "state"),
            ("name",),
        ),
        TableSpec(
            "packages",
            "installed packages (dpkg status, the rpm database)",
            ("name", "version", "arch", "status", "manager"),
            ("name", "version", "arch"),
        ),
        TableSpec(
            "suid_files",
            "set-uid and set-gid files under system paths",
            ("path", "mode", "uid", "gid", "size", "sha256"),
            ("path", "mode", "uid", "gid", "sha256"),
        ),
        TableSpec(
            "recent_files",
            "files under system paths modified in the last days",
            ("path", "mtime", "size", "uid", "mode"),
            ("path", "uid", "mode"),
        ),
    )
}

TABLE_NAMES: tuple[str, ...] = tuple(TABLES)
TableName = Literal[
    "listening_sockets", "processes", "users", "groups", "authorized_keys", "crontabs",
    "systemd_timers", "kernel_modules", "packages", "suid_files", "recent_files",
]  # fmt: skip
assert get_args(TableName) == TABLE_NAMES


def _host_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    words = sorted({n for n in names if n and len(n) >= 3}, key=len, reverse=True)
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in words))


class Normaliser:
    """Turns a host's raw rows into stable keys: one per (table, normalised row)."""

    def __init__(self, host_names: Iterable[str] = ()) -> None:
        self._host = _host_pattern(host_names)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str) and self._host is not None:
            return self._host.sub(HOST_TOKEN, value)
        if isinstance(value, list):
            return [self._value(v) for v in value]
        return value

    def normalise(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        spec = TABLES[table]
        out = {column: self._value(row.get(column)) for column in spec.key}
        for column, transform in spec.transforms:
            if column in out:
                out[column] = transform(out[column])
        return out

    def key(self, table: str, row: dict[str, Any]) -> int:
        """A signed 64-bit key for (table, normalised row): what baselines count."""
        return row_key(table, self.normalise(table, row))


def row_key(table: str, normalised: dict[str, Any]) -> int:
    blob = table + "\0" + json.dumps(normalised, sort_keys=True, separators=(",", ":"))
    digest = hashlib.blake2b(blob.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
