"""SQLAlchemy 2 engines (psycopg 3) for the two logical connections, and readiness checks.

`DATABASE_URL` serves the app tables (schema `public`), `QUEUE_DATABASE_URL` the queue tables
(schema `queue`); by default both name the same physical database.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from shared import settings as settings_mod

if TYPE_CHECKING:  # pragma: no cover - types only
    from sqlalchemy.engine import Engine

QUEUE_SCHEMA = "queue"


class DatabaseError(Exception):
    """The database cannot be used: unreachable or not migrated. The message says what to do."""


def application_name(role: str) -> str:
    """The `application_name` a process sets, so the harness can find its PostgreSQL backends."""
    return f"bench-{role}"[:63]


def make_engine(url: str, *, role: str = "app", pool_size: int = 5, **kwargs) -> Engine:
    """A SQLAlchemy engine on psycopg 3 for a normalized PostgreSQL URL."""
    # imported here: the queue workers use only `connect`, and SQLAlchemy was most of their start-up
    import sqlalchemy as sa

    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("application_name", application_name(role))
    connect_args.setdefault("connect_timeout", 5)
    return sa.create_engine(
        settings_mod.sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=kwargs.pop("max_overflow", 10),
        pool_pre_ping=True,
        connect_args=connect_args,
        **kwargs,
    )


@functools.cache
def app_engine(role: str = "app") -> Engine:
    """The process-wide engine for the app tables (`DATABASE_URL`)."""
    return make_engine(settings_mod.load().database_url, role=role)


@functools.cache
def queue_engine(role: str = "queue") -> Engine:
    """The process-wide engine for the queue tables (`QUEUE_DATABASE_URL`)."""
    return make_engine(settings_mod.load().queue_database_url, role=role)


def connect(url: str, *, role: str = "app", autocommit: bool = False, **kwargs) -> psycopg.Connection:
    """A plain psycopg 3 connection, for the hot paths that skip SQLAlchemy. `options` (server settings,
    `-c name=value ...`) are added to any the URL carries."""
    conninfo = settings_mod.psycopg_url(url)
    if kwargs.get("options"):
        given = conninfo_to_dict(conninfo).get("options")
        if given:
            kwargs["options"] = f"{given} {kwargs['options']}"
    return psycopg.connect(
        conninfo,
        autocommit=autocommit,
        application_name=application_name(role),
        connect_timeout=kwargs.pop("connect_timeout", 5),
        **kwargs,
    )


def describe_connect_error(url: str, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"cannot connect to PostgreSQL at {settings_mod.redact(url)}: {first}. "
        "Is it running? Check DATABASE_URL, or run `make db-up` for the embedded one."
    )


def check_ready(url: str | None = None, *, queue_url: str | None = None) -> None:
    """Raise `DatabaseError` with one clear line if the database is unreachable or not migrated."""
    s = settings_mod.load() if url is None or queue_url is None else None
    url = url or s.database_url  # type: ignore[union-attr]
    queue_url = queue_url or s.queue_database_url  # type: ignore[union-attr]
    # one connection per database (by default both lineages share one: a worker's start-up pays one)
    checks: dict[str, list[tuple[str, str]]] = {}
    checks.setdefault(url, []).append(("public.alembic_version", "app"))
    checks.setdefault(queue_url, []).append(("queue.alembic_version", "queue"))
    for u, tables in checks.items():
        try:
            with connect(u, role="check", connect_timeout=3) as conn:
                missing = [(t, lineage) for t, lineage in tables if not _migrated(conn, t)]
        except psycopg.OperationalError as exc:
            raise DatabaseError(describe_connect_error(u, exc)) from None
        if missing:
            table, lineage = missing[0]
            raise DatabaseError(
                f"the database at {settings_mod.redact(u)} has not been migrated ({lineage} lineage, "
                f"{table} missing); run `make migrate`"
            )


def _migrated(conn: psycopg.Connection, table: str) -> bool:
    """A lineage is migrated when its version table exists and holds a revision."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    if not (row and row[0]):
        return False
    schema, name = table.split(".")
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, name))
    version = conn.execute(query).fetchone()
    return bool(version and version[0])


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes", "on"}
