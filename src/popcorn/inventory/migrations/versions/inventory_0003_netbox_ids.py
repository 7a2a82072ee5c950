"""netbox ids

Which Popcorn object each imported NetBox record became.

Revision ID: inventory_0003
Revises: inventory_0002
Create Date: 2026-12-05 14:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0003"
down_revision: str | Sequence[str] | None = "inventory_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_netbox_ids",
        sa.Column("netbox_model", sa.String(length=60), nullable=False),
        sa.Column("netbox_id", sa.Integer(), nullable=False),
        sa.Column("object_type", sa.String(length=30), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("netbox_model", "netbox_id", name=op.f("pk_inventory_netbox_ids")),
    )
    op.create_index(
        "ix_inventory_netbox_ids_object",
        "inventory_netbox_ids",
        ["object_type", "object_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_inventory_netbox_ids_object", table_name="inventory_netbox_ids")
    op.drop_table("inventory_netbox_ids")
