"""Named queries loaded from `.sql` files (docs/architecture.md, "SQL").

A file holds one query per `-- name --` header; the text between two headers is the query, which can be
pasted into psql as it is. Whole-line `--` comments are documentation for the reader and are dropped
here, so that a placeholder or a percent sign in prose never reaches psycopg's parameter parser.
pgqueue's queries (`shared/pgqueue/sql/queries.sql`), the benchmark harness's
(`shared/bench/sql/queries.sql`), the recorder's (`shared/sql/spool.sql`) and the workers' heartbeats'
(`shared/sql/heartbeat.sql`) are all read with `Queries`.
"""

from __future__ import annotations

import re
from pathlib import Path

_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$", re.MULTILINE)


def parse(text: str, source: str = "<sql>") -> dict[str, str]:
    """Split `text` into `{name: query}`; the text before the first header is ignored."""
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {source}")
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


class Queries:
    """The named queries of one file, read once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queries = parse(path.read_text(), str(path))

    def __getitem__(self, name: str) -> str:
        """The query named `name` (KeyError names the known ones)."""
        try:
            return self.queries[name]
        except KeyError:
            known = ", ".join(sorted(self.queries))
            raise KeyError(f"no query {name!r} in {self.path}; known: {known}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.queries
