"""pgqueue's named queries, loaded once from `sql/queries.sql`.

The file holds one query per `-- name --` header; the text between two headers is the query. Whole-line
`--` comments are documentation for the reader and are dropped here, so that a placeholder or a percent
sign in prose never reaches psycopg's parameter parser.
"""

from __future__ import annotations

import re
from pathlib import Path

SQL_FILE = Path(__file__).with_name("sql") / "queries.sql"
_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$", re.MULTILINE)


def parse(text: str) -> dict[str, str]:
    """Split `text` into `{name: query}`; the text before the first header is ignored."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {SQL_FILE}")
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


QUERIES: dict[str, str] = parse(SQL_FILE.read_text())


HOT_PATH_OPTIONS = "-c enable_seqscan=off -c enable_sort=off"
"""Planner settings of the worker's claim and completion connections (libpq `options`). Their statements
are prepared and run by a generic plan built once, often while the table is still small or its statistics
are an empty table's; with these settings that plan is the ordered claim-index scan and primary-key
lookups it is at any size, never a sequential scan and sort (docs/pgqueue.md, "Statistics")."""


def get(name: str) -> str:
    """The query named `name` (KeyError names the known ones)."""
    try:
        return QUERIES[name]
    except KeyError:
        raise KeyError(f"no query {name!r} in {SQL_FILE}; known: {', '.join(sorted(QUERIES))}") from None
