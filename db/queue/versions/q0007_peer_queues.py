"""The peer queues' tables: procrastinate's in the schema `procrastinate`, pgqueuer's in the schema `pgqueuer`

Revision ID: q0007
Revises: q0006
Create Date: 2026-12-06

Each library's own installer writes the SQL, from the installed version: procrastinate's
`SchemaManager.get_schema()` (what `procrastinate schema --apply` runs), applied with the schema
`procrastinate` first on the `search_path` (its documented way to live in another schema), and
pgqueuer's `QueryBuilderEnvironment.build_install_query()` (what `pgq install` runs) for
`db_schema="pgqueuer"`. Writing their DDL out here instead would copy it, and it would drift from the
library the workers run; `uv.lock` pins the versions, so a fresh database gets the same tables every
time. A library upgrade whose tables change needs a new revision that applies the library's own
migration (docs/architecture.md, "The two migration lineages").
"""

from __future__ import annotations

from alembic import op

from shared import peers

revision = "q0007"
down_revision = "q0006"
branch_labels = None
depends_on = None

PROCRASTINATE_SCHEMA = peers.PROCRASTINATE_SCHEMA
PGQUEUER_SCHEMA = peers.PGQUEUER_SCHEMA


def _execute(sql: str) -> None:
    # Through the driver without parameters: the scripts hold `%` and `:` that a bind layer would read.
    cursor = op.get_bind().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def upgrade() -> None:
    from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
    from pgqueuer.domain.settings import DBSettings
    from procrastinate.schema import SchemaManager

    _execute(
        f"CREATE SCHEMA {PROCRASTINATE_SCHEMA}; "
        f"SET LOCAL search_path TO {PROCRASTINATE_SCHEMA}; "
        f"{SchemaManager.get_schema()}; "
        "RESET search_path;"
    )
    _execute(QueryBuilderEnvironment(DBSettings(db_schema=PGQUEUER_SCHEMA)).build_install_query())


def downgrade() -> None:
    _execute(
        f"DROP SCHEMA IF EXISTS {PGQUEUER_SCHEMA} CASCADE; DROP SCHEMA IF EXISTS {PROCRASTINATE_SCHEMA} CASCADE;"
    )
