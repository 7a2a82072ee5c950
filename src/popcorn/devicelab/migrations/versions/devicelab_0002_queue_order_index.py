"""devicelab: executions carry their placement rank (candidate count, expected duration)
and an index reads a family's queue per build in that order

Revision ID: devicelab_0002
Revises: devicelab_0001
Create Date: 2026-12-05 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "devicelab_0002"
down_revision: str | Sequence[str] | None = "devicelab_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devicelab_executions") as batch:
        batch.add_column(
            sa.Column("candidate_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("expected_duration_s", sa.Float(), nullable=False, server_default="60")
        )
    postgres = op.get_bind().dialect.name == "postgresql"
    length = "jsonb_array_length" if postgres else "json_array_length"
    op.execute(
        f"UPDATE devicelab_executions SET candidate_count = {length}(candidates), "
        "expected_duration_s = COALESCE((SELECT t.expected_duration_s FROM devicelab_tests t "
        "WHERE t.id = devicelab_executions.test_id), 60)"
    )
    op.create_index(
        "ix_devicelab_executions_queue",
        "devicelab_executions",
        [
            "family",
            "status",
            "build_id",
            "candidate_count",
            sa.text("expected_duration_s DESC"),
            "id",
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_devicelab_executions_queue", table_name="devicelab_executions")
    with op.batch_alter_table("devicelab_executions") as batch:
        batch.drop_column("expected_duration_s")
        batch.drop_column("candidate_count")
