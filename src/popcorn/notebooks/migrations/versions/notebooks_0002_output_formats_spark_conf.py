"""output formats of runs and spark-submit configuration

Definitions gain `output_formats` (html, markdown, pdf besides the notebook) and
`spark_conf` (--conf pairs for spark-submit, e.g. for yarn and k8s:// masters); runs
gain the stored key of each converted format and why a conversion failed.

Revision ID: notebooks_0002
Revises: notebooks_0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "notebooks_0002"
down_revision: str | Sequence[str] | None = "notebooks_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json(name: str, empty: str) -> sa.Column[object]:
    return sa.Column(name, popcorn.db.JSONType, nullable=False, server_default=sa.text(empty))


def upgrade() -> None:
    with op.batch_alter_table("notebooks_definitions", schema=None) as batch_op:
        batch_op.add_column(_json("spark_conf", "'{}'"))
        batch_op.add_column(_json("output_formats", "'[]'"))
    with op.batch_alter_table("notebooks_runs", schema=None) as batch_op:
        batch_op.add_column(_json("format_keys", "'{}'"))
        batch_op.add_column(_json("format_errors", "'{}'"))


def downgrade() -> None:
    with op.batch_alter_table("notebooks_runs", schema=None) as batch_op:
        batch_op.drop_column("format_errors")
        batch_op.drop_column("format_keys")
    with op.batch_alter_table("notebooks_definitions", schema=None) as batch_op:
        batch_op.drop_column("output_formats")
        batch_op.drop_column("spark_conf")
