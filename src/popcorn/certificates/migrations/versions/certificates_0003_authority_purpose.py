"""authority purpose

Adds `purpose` to certificate authorities: `general` (every existing one) or
`agents`, an authority that issues Bolt agents' mutual-TLS certificates only
through the platform's admin route, never through the general issue path.

Revision ID: certificates_0003
Revises: certificates_0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "certificates_0003"
down_revision: str | Sequence[str] | None = "certificates_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("certificates_authorities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("purpose", sa.String(length=20), server_default="general", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("certificates_authorities", schema=None) as batch_op:
        batch_op.drop_column("purpose")
