"""core: machines

Revision ID: core_0002
Revises: core_0001
Create Date: 2026-12-05 15:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "core_0002"
down_revision: str | Sequence[str] | None = "core_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "machines",
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("roles", popcorn.db.JSONType, nullable=False),
        sa.Column("storage", sa.String(length=1000), nullable=False),
        sa.Column("first_seen_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hostname", name=op.f("pk_machines")),
    )


def downgrade() -> None:
    op.drop_table("machines")
