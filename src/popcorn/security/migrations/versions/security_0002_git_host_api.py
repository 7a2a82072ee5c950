"""git host api for branch protection

A Git account may name its host's API (github or gitlab) to read default-branch
protection; the API URL uses endpoint_url and the token the sealed secret.

Revision ID: security_0002
Revises: security_0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "security_0002"
down_revision: str | Sequence[str] | None = "security_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("security_accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("git_host", sa.String(length=10), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("security_accounts", schema=None) as batch_op:
        batch_op.drop_column("git_host")
