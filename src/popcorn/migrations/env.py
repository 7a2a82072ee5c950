"""Alembic environment: the core plus every domain's branch, on SQLite or PostgreSQL."""

from __future__ import annotations

from alembic import context

from popcorn.db import Base, get_engine
from popcorn.domains import load_models

load_models()
config = context.config
url = config.attributes["database_url"]


def run() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
