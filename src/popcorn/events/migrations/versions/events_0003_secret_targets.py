"""events: the destinations each webhook signing secret may sign for

Revision ID: events_0003
Revises: events_0002
Create Date: 2026-12-02 10:00:00

Secrets stored before this revision get an empty list: they sign nothing until
an admin stores them again with their allowed targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "events_0003"
down_revision: str | Sequence[str] | None = "events_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events_secrets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("allowed_targets", popcorn.db.JSONType, nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("events_secrets", schema=None) as batch_op:
        batch_op.drop_column("allowed_targets")
