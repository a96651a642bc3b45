"""The harness's one way to the database: named queries (`sql/queries.sql`) over psycopg.

`Store` is the executor's connection: autocommit, and reconnecting while the server is away (it survives
the PostgreSQL-restart fault). The functions below read experiments and runs for the report and the web
from any psycopg connection, so that every table is written and read through the same queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from shared import db, sqlfile

QUERIES = sqlfile.Queries(Path(__file__).with_name("sql") / "queries.sql")
T = TypeVar("T")


def q(name: str) -> str:
    """The harness query named `name`."""
    return QUERIES[name]


class Store:
    """An autocommit connection for the executor's own queries, reconnected while the server is away."""

    def __init__(self, url: str, role: str = "harness") -> None:
        self.url = url
        self.role = role
        self._conn: psycopg.Connection | None = None

    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.url, role=self.role, autocommit=True)
        return self._conn

    def run(self, name: str, params: dict[str, Any] | None = None, retry_for: float = 30.0) -> psycopg.Cursor:
        """Run the query named `name`, retried on a new connection while the server is away."""
        return self.call(lambda conn: conn.execute(q(name), params), retry_for)

    def one(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """The first column of the first row of query `name` (None when it returns no row)."""
        row = self.run(name, params).fetchone()
        return row[0] if row is not None else None

    def call(self, fn: Callable[[psycopg.Connection], T], retry_for: float = 30.0) -> T:
        """`fn(connection)`, retried on a new connection while the server is away (up to `retry_for` s)."""
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return fn(self.conn())
            except psycopg.OperationalError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def scalar(conn: psycopg.Connection, name: str, params: dict[str, Any] | None = None) -> Any:
    """The first column of the first row of query `name` on `conn` (None when it returns no row)."""
    row = conn.execute(q(name), params).fetchone()
    return row[0] if row is not None else None


def _dicts(cur: psycopg.Cursor) -> list[dict[str, Any]]:
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def experiment(conn: psycopg.Connection, experiment_id: int) -> dict[str, Any] | None:
    """One experiment's row, or None."""
    rows = _dicts(conn.execute(q("experiment_get"), {"id": experiment_id}))
    return rows[0] if rows else None


def experiments(
    conn: psycopg.Connection, *, after: int | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Experiments newest first, with their run counts (keyset pagination: `after` is the last id seen)."""
    return _dicts(conn.execute(q("experiment_list"), {"after": after, "limit": limit}))


def runs(
    conn: psycopg.Connection,
    *,
    experiment_id: int | None = None,
    case_key: str | None = None,
    ids: Sequence[int] | None = None,
    after: int | None = None,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Runs matching every filter given, in id order (or newest first), at most `limit`."""
    params = {
        "experiment_id": experiment_id,
        "case_key": case_key,
        "ids": list(ids) if ids is not None else None,
        "after": after,
        "limit": limit,
        "newest_first": newest_first,
    }
    return _dicts(conn.execute(q("run_list"), params))
