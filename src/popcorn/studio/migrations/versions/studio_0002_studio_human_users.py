"""studio HumanUser entities; task assignees and note addressings are links to them

The names stored in `studio_tasks.assignees` and `studio_notes.addressings_to` become
HumanUser rows (login and name the old string) linked through `studio_links`, in the
order they were listed; downgrade writes the logins back.

Revision ID: studio_0002
Revises: studio_0001
Create Date: 2026-12-05 11:21:55.257153
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "studio_0002"
down_revision: str | Sequence[str] | None = "studio_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, old JSON column, link kind)
MOVED = (("studio_tasks", "assignees", "task_assignee"),
         ("studio_notes", "addressings_to", "note_addressing"))  # fmt: skip
LINKS = sa.table(
    "studio_links",
    sa.column("kind", sa.String),
    sa.column("source_id", sa.BigInteger),
    sa.column("target_type", sa.String),
    sa.column("target_id", sa.BigInteger),
    sa.column("position", sa.Integer),
)
USERS = sa.table(
    "studio_users",
    sa.column("id", sa.Integer),
    sa.column("login", sa.String),
    sa.column("name", sa.String),
    sa.column("email", sa.String),
    sa.column("status", sa.String),
    sa.column("created_at", popcorn.db.UTCDateTime),
    sa.column("updated_at", popcorn.db.UTCDateTime),
    sa.column("created_by", sa.String),
)


def _names(table: str, column: str) -> list[tuple[int, list[str]]]:
    old = sa.table(table, sa.column("id", sa.BigInteger), sa.column(column, popcorn.db.JSONType))
    rows = op.get_bind().execute(sa.select(old.c.id, old.c[column])).all()
    return [(int(i), [str(n) for n in (v or []) if n]) for i, v in rows]


def upgrade() -> None:
    op.create_table(
        "studio_users",
        sa.Column("login", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("retired_at", popcorn.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studio_users")),
        sa.UniqueConstraint("login", name=op.f("uq_studio_users_login")),
    )
    bind = op.get_bind()
    moved = {kind: _names(table, column) for table, column, kind in MOVED}
    logins = sorted({n for rows in moved.values() for _, names in rows for n in names})
    now = datetime.now(UTC)
    if logins:
        bind.execute(
            USERS.insert(),
            [{"login": n[:100], "name": n[:200], "email": "", "status": "act", "created_at": now,
              "updated_at": now, "created_by": "migration"} for n in logins],
        )  # fmt: skip
    ids = dict(bind.execute(sa.select(USERS.c.login, USERS.c.id)).all())
    links: list[dict[str, Any]] = []
    for kind, rows in moved.items():
        for source, names in rows:
            for position, name in enumerate(dict.fromkeys(names)):
                links.append({"kind": kind, "source_id": source, "target_type": "HumanUser",
                              "target_id": ids[name[:100]], "position": position})  # fmt: skip
    if links:
        bind.execute(LINKS.insert(), links)
    for table, column, _ in MOVED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)


def downgrade() -> None:
    bind = op.get_bind()
    for table, column, kind in MOVED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(column, popcorn.db.JSONType, nullable=False, server_default="[]")
            )
        rows = bind.execute(
            sa.select(LINKS.c.source_id, USERS.c.login)
            .join(USERS, USERS.c.id == LINKS.c.target_id)
            .where(LINKS.c.kind == kind, LINKS.c.target_type == "HumanUser")
            .order_by(LINKS.c.source_id, LINKS.c.position)
        ).all()
        names: dict[int, list[str]] = {}
        for source, login in rows:
            names.setdefault(int(source), []).append(login)
        target = sa.table(table, sa.column("id", sa.BigInteger),
                          sa.column(column, popcorn.db.JSONType))  # fmt: skip
        for source, logins in names.items():
            bind.execute(target.update().where(target.c.id == source).values({column: logins}))
        bind.execute(LINKS.delete().where(LINKS.c.kind == kind))
    op.drop_table("studio_users")
