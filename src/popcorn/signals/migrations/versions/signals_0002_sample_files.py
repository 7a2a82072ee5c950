"""signals: the list of sample objects readers may see

Revision ID: signals_0002
Revises: signals_0001
Create Date: 2026-12-05 14:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "signals_0002"
down_revision: str | Sequence[str] | None = "signals_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signals_sample_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals_sample_files")),
        sa.UniqueConstraint("key", name=op.f("uq_signals_sample_files_key")),
    )
    op.create_index(
        "ix_signals_sample_files_day_seq", "signals_sample_files", ["day", "seq"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_signals_sample_files_day_seq", table_name="signals_sample_files")
    op.drop_table("signals_sample_files")
