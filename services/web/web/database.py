"""The web's database access: one engine per logical connection, admin queries under a statement timeout.

Every admin query runs inside `admin_conn()`, a transaction that starts with `SET LOCAL statement_timeout`,
so a slow listing on a table of millions of rows fails fast instead of holding a gunicorn thread. The
engines also carry a session-wide timeout as a backstop for queries outside `admin_conn()` (Flask-Admin's).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from flask import Flask, current_app

from shared import db

DEFAULT_STATEMENT_TIMEOUT_MS = 5000


def init_app(app: Flask) -> None:
    s = app.config["SETTINGS"]
    timeout = int(app.config.setdefault("STATEMENT_TIMEOUT_MS", DEFAULT_STATEMENT_TIMEOUT_MS))
    # Backstop for every statement on the web's connections; admin_conn() sets its own with SET LOCAL.
    options = f"-c statement_timeout={timeout * 2}"
    engines = {
        "app": db.make_engine(
            s.database_url, role="web", pool_size=4, max_overflow=8, connect_args={"options": options}
        ),
    }
    if s.queue_database_url == s.database_url:
        engines["queue"] = engines["app"]
    else:
        engines["queue"] = db.make_engine(
            s.queue_database_url,
            role="web-queue",
            pool_size=4,
            max_overflow=8,
            connect_args={"options": options},
        )
    app.extensions["bench_engines"] = engines


def engine(which: str = "app") -> sa.engine.Engine:
    """The web's engine for `app` (DATABASE_URL) or `queue` (QUEUE_DATABASE_URL)."""
    return current_app.extensions["bench_engines"][which]


@contextmanager
def admin_conn(which: str = "app", timeout_ms: int | None = None) -> Iterator[sa.Connection]:
    """A connection in a transaction whose statements time out (committed on success)."""
    ms = int(timeout_ms or current_app.config["STATEMENT_TIMEOUT_MS"])
    with engine(which).begin() as conn:
        # SET LOCAL takes no bind parameters; set_config(..., true) is its parameterised form.
        conn.execute(sa.text("SELECT set_config('statement_timeout', :v, true)"), {"v": f"{ms}ms"})
        yield conn


def is_timeout(exc: BaseException) -> bool:
    """True when a database error is a statement timeout (SQLSTATE 57014, query_canceled)."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == "57014"


def raw(conn: sa.Connection):
    """The psycopg connection under a SQLAlchemy one (same transaction), for libraries that speak psycopg."""
    return conn.connection.driver_connection
