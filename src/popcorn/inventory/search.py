"""Substring search over devices (`?q=`) that stays fast at 100,000 devices on SQLite.

A `LIKE '%…%'` over several columns scans every row twice per page (the page
and its count). On SQLite the inventory keeps an FTS5 index with the trigram
tokenizer over the searched columns, which answers the same case-insensitive
substring question from an index. It is created by the first write that adds
or changes devices (not by a migration: schema comparison tools would see its
shadow tables as unknown and propose dropping them) and kept in sync by
triggers. Queries shorter than three characters, PostgreSQL, and databases
where the index does not exist yet fall back to `LIKE`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.sql.elements import ColumnElement

from popcorn.inventory import models as m

TABLE = "inventory_device_search"
COLUMNS = ("name", "serial", "asset_tag", "primary_ip4", "description")
_known: dict[str, bool] = {}


def _statements() -> list[str]:
    columns = ", ".join(COLUMNS)
    new = ", ".join(f"new.{c}" for c in COLUMNS)
    old = ", ".join(f"old.{c}" for c in COLUMNS)
    remove = f"INSERT INTO {TABLE}({TABLE}, rowid, {columns}) VALUES ('delete', old.id, {old});"
    add = f"INSERT INTO {TABLE}(rowid, {columns}) VALUES (new.id, {new});"
    return [
        f"CREATE VIRTUAL TABLE {TABLE} USING fts5({columns}, content='inventory_devices', "
        "content_rowid='id', tokenize='trigram case_sensitive 0')",
        f"CREATE TRIGGER {TABLE}_insert AFTER INSERT ON inventory_devices BEGIN {add} END",
        f"CREATE TRIGGER {TABLE}_delete AFTER DELETE ON inventory_devices BEGIN {remove} END",
        f"CREATE TRIGGER {TABLE}_update AFTER UPDATE OF {columns} ON inventory_devices "
        f"BEGIN {remove} {add} END",
        f"INSERT INTO {TABLE}({TABLE}) VALUES ('rebuild')",
    ]


def _key(connection: Connection) -> str:
    return str(connection.engine.url)


def exists(connection: Connection) -> bool:
    if connection.dialect.name != "sqlite":
        return False
    key = _key(connection)
    if not _known.get(key):
        found = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
        ).first()
        _known[key] = found is not None
    return _known[key]


def ensure(connection: Connection) -> None:
    """Create the index (in the caller's transaction) if this SQLite database lacks it."""
    if connection.dialect.name != "sqlite" or exists(connection):
        return
    for statement in _statements():
        connection.exec_driver_sql(statement)
    _known.pop(_key(connection), None)  # known once the transaction has committed


def device_clause(connection: Connection, query: str) -> ColumnElement[bool] | None:
    """A condition on devices for `q`, or None when the caller should use LIKE."""
    words = query.strip()
    if len(words) < 3 or not exists(connection):
        return None
    phrase = '"' + words.replace('"', '""') + '"'
    matches: Any = text(f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH :phrase").bindparams(
        phrase=phrase
    )
    return m.Device.id.in_(matches)
