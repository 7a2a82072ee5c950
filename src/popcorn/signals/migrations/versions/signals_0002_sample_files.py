"""signals: the list of sample objects readers may see

Samples written before this revision are Parquet files under `<home>/signals/samples`; they
are copied into the object store and listed, so they stay readable (the files are left in
place: delete that folder once the upgrade is done).

Revision ID: signals_0002
Revises: signals_0001
Create Date: 2026-12-05 14:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op

import popcorn.db

revision: str = "signals_0002"
down_revision: str | Sequence[str] | None = "signals_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signals_sample_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", popcorn.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals_sample_files")),
        sa.UniqueConstraint("key", name=op.f("uq_signals_sample_files_key")),
    )
    op.create_index(
        "ix_signals_sample_files_day_seq", "signals_sample_files", ["day", "seq"], unique=False
    )
    _adopt_local_files()


def _adopt_local_files() -> None:
    import pyarrow.parquet as pq

    from popcorn.config import get_settings
    from popcorn.storage import get_store

    base = get_settings().home.resolve() / "signals" / "samples"
    if not base.is_dir():
        return
    files = sa.table(
        "signals_sample_files",
        sa.column("day", sa.Date()),
        sa.column("seq", sa.BigInteger()),
        sa.column("key", sa.String()),
        sa.column("rows", sa.BigInteger()),
        sa.column("bytes", sa.BigInteger()),
        sa.column("created_at", popcorn.db.UTCDateTime(timezone=True)),
    )
    store = get_store()
    rows = []
    for path in sorted(base.glob("day=*/part-*.parquet")):
        try:
            day = date.fromisoformat(path.parent.name.removeprefix("day="))
            seq = int(path.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        key = f"signals/samples/{path.parent.name}/{path.name}"
        data = path.read_bytes()
        store.put(key, data)
        rows.append(
            {
                "day": day,
                "seq": seq,
                "key": key,
                "rows": pq.ParquetFile(path).metadata.num_rows,
                "bytes": len(data),
                "created_at": popcorn.db.utcnow(),
            }
        )
    if rows:
        op.bulk_insert(files, rows)


def downgrade() -> None:
    op.drop_index("ix_signals_sample_files_day_seq", table_name="signals_sample_files")
    op.drop_table("signals_sample_files")
