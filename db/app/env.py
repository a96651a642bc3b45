"""Alembic environment of the app lineage: schema public, version table public.alembic_version."""

from __future__ import annotations

from alembic import context

from shared import db, models, settings

config = context.config
target_metadata = models.Base.metadata


def include_object(obj, name, type_, reflected, compare_to):
    # The app lineage never touches the queue schema, whose tables the queue lineage owns.
    schema = getattr(obj, "schema", None)
    if type_ == "table" and (schema == db.QUEUE_SCHEMA or name == "alembic_version"):
        return False
    return True


def run_migrations_online() -> None:
    url = config.attributes.get("url") or settings.load().database_url
    engine = db.make_engine(url, role="migrate", pool_size=1)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            include_schemas=False,
            version_table="alembic_version",
            version_table_schema="public",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
