"""One engine per database URL, one transaction helper, and the migration runner.

Every domain writes through `session_scope()` so that a change, its audit
record, its domain events and the jobs it enqueues commit or roll back together.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from popcorn.config import PRIVATE_DIR, PRIVATE_FILE, get_settings, make_private

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class JSONDocument(TypeDecorator[Any]):
    """JSON, stored as JSONB on PostgreSQL. The PostgreSQL type is loaded when a PostgreSQL
    engine first uses a column: importing SQLAlchemy's postgresql package (every driver it
    ships) cost each command on the embedded SQLite database about 20 ms for nothing."""

    impl = JSON
    cache_ok = True

    @property
    def python_type(self) -> type[Any]:
        return dict

    @property
    def _document(self) -> JSON:
        impl = self.impl_instance
        assert isinstance(impl, JSON)
        return impl

    @property
    def should_evaluate_none(self) -> bool:
        """As JSON's: None is stored as JSON `null` unless `none_as_null=True`."""
        return not self._document.none_as_null

    @should_evaluate_none.setter
    def should_evaluate_none(self, value: bool) -> None:
        self._document.none_as_null = not value

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=self._document.none_as_null))
        return self._document


JSONType = JSONDocument()


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops the zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_engines: dict[str, Engine] = {}
_makers: dict[tuple[str, bool], sessionmaker[Session]] = {}
_lock = threading.Lock()


def _new_locks_after_fork() -> None:
    """A child forked while another thread held one of these locks would wait on it forever
    (a work horse forked during its worker's heartbeat did, until the job timed out)."""
    global _lock, _schema_lock
    _lock, _schema_lock = threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_new_locks_after_fork)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the lock at BEGIN so concurrent writers queue on busy_timeout
    # instead of failing on a lock upgrade mid-transaction; readers stay deferred
    # so that WAL lets them run beside a writer.
    if conn.get_execution_options().get("popcorn_readonly"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):
            _private_sqlite_file(Path(path.split("?", 1)[0]))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (its WAL and SHM files copy the
    database's permissions), and tighten the files of an older installation."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    for suffix in ("", "-wal", "-shm", "-journal"):
        make_private(path.with_name(path.name + suffix))


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().effective_database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = make_engine(url)
            _engines[url] = engine
            _makers[(url, False)] = sessionmaker(engine, expire_on_commit=False)
            _makers[(url, True)] = sessionmaker(
                engine.execution_options(popcorn_readonly=True), expire_on_commit=False
            )
        return engine


def dispose_engines() -> None:
    """Close pools, e.g. after fork or between tests that switch databases."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _makers.clear()


@contextmanager
def session_scope(url: str | None = None, *, readonly: bool = False) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any exception.

    `readonly=True` is for reads only (API GETs): on SQLite it does not take the
    write lock, so reads run beside a writer.
    """
    url = url or get_settings().effective_database_url
    get_engine(url)
    if _first_run_check and url not in _schema_ready:
        _ensure_schema(url)
    session = _makers[(url, readonly)]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dialect_insert(session: Session, model: Any) -> Any:
    """An INSERT that takes the database's ON CONFLICT clauses (`on_conflict_do_nothing`,
    `on_conflict_do_update`): PostgreSQL's or SQLite's, each dialect imported when used."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model)


def get_setting(session: Session, model: Any, name: str, default: Any) -> Any:
    """One value of a domain's settings table, read afresh (another writer's upsert may have
    changed the row this session holds), or `default` when none is stored."""
    row = session.get(model, name, populate_existing=True)
    return default if row is None or row.value is None else row.value


def put_setting(session: Session, model: Any, name: str, value: Any) -> None:
    """Store one row of a domain's settings table (`name` key, `value`, `updated_at`) as an
    upsert, so two first writers at the same moment never collide on the key."""
    now = utcnow()
    stmt = dialect_insert(session, model).values(name=name, value=value, updated_at=now)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["name"], set_={"value": stmt.excluded.value, "updated_at": now}
        )
    )


def on_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once this session's transaction has committed (never on rollback, nor
    when the savepoint it was registered in is rolled back; releasing one runs nothing)."""
    callbacks: list[tuple[Any, Callable[[], None]]] = session.info.setdefault("on_commit", [])
    callbacks.append((session.get_nested_transaction(), callback))


@event.listens_for(Session, "after_commit")
def _run_commit_callbacks(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the transaction goes on
        return
    callbacks: list[tuple[Any, Callable[[], None]]] = session.info.pop("on_commit", [])
    for _savepoint, callback in callbacks:
        try:
            callback()
        except Exception:  # the commit stands; relays catch up with what a callback missed
            import logging

            logging.getLogger("popcorn.db").warning("after-commit callback failed", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _drop_commit_callbacks(session: Session) -> None:
    undone = session.get_nested_transaction()
    if undone is None:
        session.info.pop("on_commit", None)
        return
    # back to a savepoint: the transaction goes on without what was registered inside it
    callbacks: list[tuple[Any, Callable[[], None]]] = session.info.get("on_commit", [])
    callbacks[:] = [(sp, c) for sp, c in callbacks if not _inside(sp, undone)]


def _inside(transaction: Any, savepoint: Any) -> bool:
    """Is `transaction` (a savepoint, or None for the outer transaction) `savepoint` or one
    begun within it?"""
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False


# The CLI turns this on (`check_schema_on_first_use`): a command run against a
# POPCORN_HOME (or database) that was never migrated must not end in "no such table".
_first_run_check = False
_schema_ready: set[str] = set()
_schema_lock = threading.Lock()


def check_schema_on_first_use() -> None:
    """Before this process's first transaction on a database, make sure it has tables."""
    global _first_run_check
    _first_run_check = True


def _ensure_schema(url: str) -> None:
    """Migrate the embedded database on first use; refuse, in one line, an external one
    that was never migrated (its schema is the operator's to change)."""
    from sqlalchemy import inspect

    from popcorn.errors import Unavailable

    with _schema_lock:
        if url in _schema_ready:
            return
        with get_engine(url).connect() as conn:
            migrated = inspect(conn).has_table("alembic_version")
        if not migrated:
            if get_settings().database_url:
                raise Unavailable(
                    "the database has no Popcorn tables yet: run `popcorn db upgrade` first"
                )
            import sys

            print(
                f"first run: creating the embedded database in {get_settings().home}",
                file=sys.stderr,
            )
            upgrade(url)
        _schema_ready.add(url)


MIGRATION_PACKAGES = ["popcorn.migrations"]

# A table's `info` key listing indexes its migrations make by hand on some databases only
# (a PostgreSQL GIN index, say). They stay out of the model, so that loading it imports no
# database dialect, and comparing the models with a database leaves them out.
MIGRATION_ONLY_INDEXES = "migration_only_indexes"


# A table's `info` key naming tables the code builds beside it at run time (SQLite's FTS5
# search index over devices, with its shadow tables `<name>_data`, `<name>_idx`, ...).
RUNTIME_TABLES = "runtime_tables"


def compared_with_models(obj: Any, type_: str) -> bool:
    """Whether autogenerate should compare this schema object with the models."""
    if type_ == "table":
        if obj.name in Base.metadata.tables:
            return True
        built = [
            name for t in Base.metadata.tables.values() for name in t.info.get(RUNTIME_TABLES, ())
        ]
        return not any(obj.name == name or obj.name.startswith(f"{name}_") for name in built)
    if type_ != "index" or obj.table is None:
        return True
    table = Base.metadata.tables.get(obj.table.name)
    return table is None or obj.name not in table.info.get(MIGRATION_ONLY_INDEXES, ())


def register_migrations(package: str) -> None:
    """Domains add their own Alembic version directory (a branch that depends on the core)."""
    if package not in MIGRATION_PACKAGES:
        MIGRATION_PACKAGES.append(package)


def alembic_config(url: str | None = None) -> Any:
    import importlib

    from alembic.config import Config

    import popcorn.domains

    popcorn.domains.register_migrations()

    cfg = Config()
    cfg.set_main_option("script_location", "popcorn:migrations")
    locations = []
    for package in MIGRATION_PACKAGES:
        module = importlib.import_module(package)
        assert module.__file__ is not None
        locations.append(str(Path(module.__file__).parent / "versions"))
    cfg.set_main_option("version_locations", " ".join(locations))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["database_url"] = url or get_settings().effective_database_url
    return cfg


def upgrade(url: str | None = None) -> None:
    """Apply every pending migration of the core and all domains."""
    from alembic import command

    command.upgrade(alembic_config(url), "heads")


def current_revisions(url: str | None = None) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())
