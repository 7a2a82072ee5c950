"""signals: series, analyses, chunks, settings

Revision ID: signals_0001
Revises:
Create Date: 2026-11-25 14:29:13.131751
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "signals_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("signals",)
depends_on: str | Sequence[str] | None = "core_0001"


def upgrade() -> None:
    op.create_table(
        "signals_analyses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("alert_time", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=1000), nullable=True),
        sa.Column("selector", sa.String(length=1000), nullable=True),
        sa.Column("scope", popcorn.db.JSONType, nullable=False),
        sa.Column("window_minutes", sa.Integer(), nullable=False),
        sa.Column("step_seconds", sa.Integer(), nullable=False),
        sa.Column("params", popcorn.db.JSONType, nullable=False),
        sa.Column("signal_count", sa.Integer(), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("partial", popcorn.db.JSONType, nullable=True),
        sa.Column("result", popcorn.db.JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", popcorn.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals_analyses")),
    )

    with op.batch_alter_table("signals_analyses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signals_analyses_status"), ["status"], unique=False)

    op.create_table(
        "signals_series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("labels", popcorn.db.JSONType, nullable=False),
        sa.Column("site", sa.String(length=200), nullable=True),
        sa.Column("device", sa.String(length=200), nullable=True),
        sa.Column("first_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sample_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals_series")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_signals_series_fingerprint")),
    )

    with op.batch_alter_table("signals_series", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signals_series_last_at"), ["last_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_signals_series_metric"), ["metric"], unique=False)
        batch_op.create_index("ix_signals_series_scope", ["site", "device"], unique=False)

    op.create_table(
        "signals_settings",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("value", popcorn.db.JSONType, nullable=False),
        sa.Column("updated_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_signals_settings")),
    )

    op.create_table(
        "signals_analysis_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("analysis_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("bounds", popcorn.db.JSONType, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("result", popcorn.db.JSONType, nullable=True),
        sa.Column("finished_at", popcorn.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["analysis_id"],
            ["signals_analyses.id"],
            name=op.f("fk_signals_analysis_chunks_analysis_id_signals_analyses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals_analysis_chunks")),
        sa.UniqueConstraint(
            "analysis_id", "index", name=op.f("uq_signals_analysis_chunks_analysis_id")
        ),
    )

    with op.batch_alter_table("signals_analysis_chunks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signals_analysis_chunks_analysis_id"), ["analysis_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("signals_analysis_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signals_analysis_chunks_analysis_id"))

    op.drop_table("signals_analysis_chunks")

    op.drop_table("signals_settings")

    with op.batch_alter_table("signals_series", schema=None) as batch_op:
        batch_op.drop_index("ix_signals_series_scope")
        batch_op.drop_index(batch_op.f("ix_signals_series_metric"))
        batch_op.drop_index(batch_op.f("ix_signals_series_last_at"))

    op.drop_table("signals_series")

    with op.batch_alter_table("signals_analyses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signals_analyses_status"))

    op.drop_table("signals_analyses")
