"""Alembic environment of the queue lineage: schema queue, version table queue.alembic_version."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from shared import db, models, settings

config = context.config
target_metadata = models.QueueBase.metadata


def run_migrations_online() -> None:
    url = config.attributes.get("url") or settings.load().queue_database_url
    engine = db.make_engine(url, role="migrate", pool_size=1)
    with engine.connect() as connection:
        # The version table lives in the schema, so the schema exists before the first revision.
        connection.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {db.QUEUE_SCHEMA}"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            version_table="alembic_version",
            version_table_schema=db.QUEUE_SCHEMA,
            include_schemas=True,
            include_name=lambda name, type_, parent: type_ != "schema" or name == db.QUEUE_SCHEMA,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
