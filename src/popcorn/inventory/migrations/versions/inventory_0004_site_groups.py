"""site groups

Functional groupings of sites, nested like regions, and a site's group.

Revision ID: inventory_0004
Revises: inventory_0003
Create Date: 2026-12-05 16:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "inventory_0004"
down_revision: str | Sequence[str] | None = "inventory_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_site_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("created_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["inventory_site_groups.id"],
            name=op.f("fk_inventory_site_groups_parent_id_inventory_site_groups"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_site_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_inventory_site_groups_name")),
        sa.UniqueConstraint("slug", name=op.f("uq_inventory_site_groups_slug")),
    )
    with op.batch_alter_table("inventory_site_groups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inventory_site_groups_parent_id"), ["parent_id"], unique=False
        )
    with op.batch_alter_table("inventory_sites", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_inventory_sites_group_id"), ["group_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_inventory_sites_group_id_inventory_site_groups"),
            "inventory_site_groups",
            ["group_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("inventory_sites", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_inventory_sites_group_id_inventory_site_groups"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_inventory_sites_group_id"))
        batch_op.drop_column("group_id")
    with op.batch_alter_table("inventory_site_groups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inventory_site_groups_parent_id"))
    op.drop_table("inventory_site_groups")
