"""locations

Rooms, floors and cages nested within a site, and the location of a rack or device.

Revision ID: inventory_0005
Revises: inventory_0004
Create Date: 2026-12-05 16:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "inventory_0005"
down_revision: str | Sequence[str] | None = "inventory_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inventory_locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("created_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["inventory_locations.id"],
            name=op.f("fk_inventory_locations_parent_id_inventory_locations"),
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["inventory_sites.id"],
            name=op.f("fk_inventory_locations_site_id_inventory_sites"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_locations")),
        sa.UniqueConstraint("site_id", "slug", name=op.f("uq_inventory_locations_site_id")),
    )
    with op.batch_alter_table("inventory_locations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inventory_locations_parent_id"), ["parent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_inventory_locations_site_id"), ["site_id"], unique=False
        )
    with op.batch_alter_table("inventory_racks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("location_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_inventory_racks_location_id"), ["location_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_inventory_racks_location_id_inventory_locations"),
            "inventory_locations",
            ["location_id"],
            ["id"],
        )
    with op.batch_alter_table("inventory_devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("location_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            "ix_inventory_devices_location_id",
            ["location_id"],
            unique=False,
            sqlite_where=sa.text("location_id IS NOT NULL"),
            postgresql_where=sa.text("location_id IS NOT NULL"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_inventory_devices_location_id_inventory_locations"),
            "inventory_locations",
            ["location_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("inventory_devices", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_inventory_devices_location_id_inventory_locations"), type_="foreignkey"
        )
        batch_op.drop_index(
            "ix_inventory_devices_location_id",
            sqlite_where=sa.text("location_id IS NOT NULL"),
            postgresql_where=sa.text("location_id IS NOT NULL"),
        )
        batch_op.drop_column("location_id")
    with op.batch_alter_table("inventory_racks", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_inventory_racks_location_id_inventory_locations"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_inventory_racks_location_id"))
        batch_op.drop_column("location_id")
    with op.batch_alter_table("inventory_locations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inventory_locations_site_id"))
        batch_op.drop_index(batch_op.f("ix_inventory_locations_parent_id"))
    op.drop_table("inventory_locations")
