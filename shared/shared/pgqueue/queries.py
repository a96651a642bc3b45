"""pgqueue's named queries, loaded once from `sql/queries.sql` (`shared.sqlfile`: one query per
`-- name --` header, pasteable into psql)."""

from __future__ import annotations

from pathlib import Path

from shared import sqlfile

SQL_FILE = Path(__file__).with_name("sql") / "queries.sql"
_FILE = sqlfile.Queries(SQL_FILE)
QUERIES: dict[str, str] = _FILE.queries


HOT_PATH_OPTIONS = "-c enable_seqscan=off -c enable_sort=off"
"""Planner settings of the worker's claim and completion connections (libpq `options`). Their statements
are prepared and run by a generic plan built once, often while the table is still small or its statistics
are an empty table's; with these settings that plan is the ordered claim-index scan and primary-key
lookups it is at any size, never a sequential scan and sort (docs/pgqueue.md, "Statistics")."""


COMPLETER_OPTIONS = f"{HOT_PATH_OPTIONS} -c plan_cache_mode=force_custom_plan"
"""The completer's connection: the hot-path settings, and every statement planned with its values, so that
the ownership check of `complete` is a hash lookup in the batch's keys (PostgreSQL hashes `= ANY` only
over a constant array), not a scan of the batch per row."""

ATTEMPT_KEY = 65536
"""`complete` checks each job's attempt as one key, `id * ATTEMPT_KEY + attempt` (attempt is a smallint)."""


def attempt_keys(ids: list[int], attempts: list[int]) -> list[int]:
    """The keys `complete` checks ownership by, one per (id, attempt) of the batch."""
    return [i * ATTEMPT_KEY + a for i, a in zip(ids, attempts, strict=True)]


def get(name: str) -> str:
    """The query named `name` (KeyError names the known ones)."""
    return _FILE[name]
