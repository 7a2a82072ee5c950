"""events: GIN index on labels (PostgreSQL), for `label=key:value` searches

Revision ID: events_0002
Revises: events_0001
Create Date: 2026-11-25 15:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "events_0002"
down_revision: str | Sequence[str] | None = "events_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite searches labels with json_extract; only PostgreSQL has a containment index.
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_events_events_labels", "events_events", ["labels"], postgresql_using="gin"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_events_events_labels", table_name="events_events")
