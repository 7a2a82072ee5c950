"""daily certificate scan schedule

Installs the `certificates.scan` job (expiry warnings, automatic rotation,
CRL refresh) at 06:00 UTC every day, unless a schedule of that name exists.
Change or remove it with `popcorn schedules`.

Revision ID: certificates_0002
Revises: certificates_0001
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "certificates_0002"
down_revision: str | Sequence[str] | None = "certificates_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "certificates.scan"

schedules = sa.table(
    "job_schedules",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("task", sa.String),
    sa.column("arguments", popcorn.db.JSONType),
    sa.column("queue", sa.String),
    sa.column("cron", sa.String),
    sa.column("interval_seconds", sa.Integer),
    sa.column("enabled", sa.Boolean),
    sa.column("next_run_at", popcorn.db.UTCDateTime),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.select(schedules.c.id).where(schedules.c.name == NAME)).first():
        return
    now = dt.datetime.now(dt.UTC)
    first = now.replace(hour=6, minute=0, second=0, microsecond=0)
    if first <= now:
        first += dt.timedelta(days=1)
    op.bulk_insert(
        schedules,
        [
            {
                "name": NAME,
                "task": "certificates.scan",
                "arguments": {"intervals": [30, 15, 7, 1]},
                "queue": "default",
                "cron": "0 6 * * *",
                "interval_seconds": None,
                "enabled": True,
                "next_run_at": first,
            }
        ],
    )


def downgrade() -> None:
    op.execute(schedules.delete().where(schedules.c.name == NAME))
