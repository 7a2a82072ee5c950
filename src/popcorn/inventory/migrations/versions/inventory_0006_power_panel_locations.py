"""power panel locations

A power panel names one of its site's locations (NetBox's PowerPanel.location);
the free text it held until now stays, as `location_note`, and a panel whose
text is the slug or name of a location of its site is placed in that location.

Revision ID: inventory_0006
Revises: inventory_0005
Create Date: 2026-12-05 18:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0006"
down_revision: str | Sequence[str] | None = "inventory_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLACE = """
UPDATE inventory_power_panels SET location_id = (
    SELECT l.id FROM inventory_locations l
    WHERE l.site_id = inventory_power_panels.site_id
      AND (l.slug = inventory_power_panels.location_note
           OR l.name = inventory_power_panels.location_note)
    ORDER BY l.id LIMIT 1
)
WHERE location_note <> ''
"""


def upgrade() -> None:
    with op.batch_alter_table("inventory_power_panels", schema=None) as batch_op:
        batch_op.alter_column(
            "location",
            new_column_name="location_note",
            existing_type=sa.String(length=100),
            existing_nullable=False,
        )
        batch_op.add_column(sa.Column("location_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_inventory_power_panels_location_id"), ["location_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_inventory_power_panels_location_id_inventory_locations"),
            "inventory_locations",
            ["location_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.execute(PLACE)


def downgrade() -> None:
    with op.batch_alter_table("inventory_power_panels", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_inventory_power_panels_location_id_inventory_locations"),
            type_="foreignkey",
        )
        batch_op.drop_index(batch_op.f("ix_inventory_power_panels_location_id"))
        batch_op.drop_column("location_id")
        batch_op.alter_column(
            "location_note",
            new_column_name="location",
            existing_type=sa.String(length=100),
            existing_nullable=False,
        )
