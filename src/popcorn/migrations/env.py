"""Alembic environment: the core plus every domain's branch, on SQLite or PostgreSQL."""

from __future__ import annotations

from alembic import context

from popcorn.db import Base, compared_with_models, get_engine
from popcorn.domains import load_models

load_models()
config = context.config
url = config.attributes["database_url"]
# scripts/makemigration.py sets this so a domain's revision holds only its own tables.
only_prefix = config.attributes.get("only_prefix")


def run() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:

        def include_object(
            obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
        ) -> bool:
            if not compared_with_models(obj, type_):
                return False
            if only_prefix is None or type_ != "table" or name is None:
                return True
            return name.startswith(only_prefix)

        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
