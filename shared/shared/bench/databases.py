"""Which PostgreSQL a benchmark command runs on, and scratch databases beside it (docs/benchmark.md,
"Which PostgreSQL").

Every command of `python -m shared.bench` uses `DATABASE_URL` when it is set, else an embedded cluster of
its own, so that its figures do not depend on a server it did not configure. `scratch_database` makes a
migrated database on the same server for one part of a run and drops it afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from shared import db, embedded, settings

log = logging.getLogger(__name__)


@dataclass
class Target:
    """The database a command runs on, and the cluster it started for it (None: `DATABASE_URL`)."""

    url: str
    cluster: embedded.EmbeddedCluster | None

    @property
    def origin(self) -> str:
        return "embedded (started by the harness)" if self.cluster else "DATABASE_URL"


def _upgrade(url: str, queue_url: str) -> None:
    """Migrate both lineages. Alembic is imported here, on first use: this module is imported by every
    process that imports the adapters (the open-loop sender processes too), and Alembic's import is half
    of theirs (seconds on a loaded host)."""
    from shared import migrate

    migrate.upgrade(url, queue_url)


@contextlib.contextmanager
def target(data_dir: Path, *, keep: bool = True) -> Iterator[Target]:
    """`DATABASE_URL` when set, else an embedded cluster in `data_dir` (kept afterwards when `keep`, so
    its rows stay inspectable; destroyed otherwise); migrated either way, and `DATABASE_URL` exported so
    that every process the command starts uses it."""
    cluster = None
    if os.environ.get(settings.ENV_DATABASE_URL):
        url = settings.load().database_url
    else:
        cluster = embedded.EmbeddedCluster(data_dir)
        cluster.start()
        url = cluster.url
        os.environ[settings.ENV_DATABASE_URL] = url
    try:
        _upgrade(url, settings.load().queue_database_url)
        yield Target(url, cluster)
    finally:
        if cluster is not None:
            if keep:
                cluster.stop()
            else:
                cluster.destroy()


@contextlib.contextmanager
def scratch_database(url: str, prefix: str = "bench_scratch") -> Iterator[str | None]:
    """A new migrated database on `url`'s server, dropped afterwards; None when the role may not create
    databases (the caller then keeps using `url`, and a warning says so)."""
    name = f"{prefix}_{os.getpid()}_{time.time_ns() % 10**12}"
    with db.connect(url, role="harness", autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            log.warning("this role may not create databases: the runs share one database (docs/celery.md)")
            yield None
            return
    try:
        fresh = settings.with_database(url, name)
        _upgrade(fresh, fresh)
        yield fresh
    finally:
        with db.connect(url, role="harness", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def throwaway(prefix: str) -> Iterator[tuple[str, str]]:
    """A migrated database that goes away afterwards: a new one on `DATABASE_URL`'s server when that is
    set, else an embedded cluster of its own in a temporary folder. Yields its URL and where it is."""
    raw = os.environ.get(settings.ENV_DATABASE_URL)
    if raw:
        server = settings.with_database(
            settings.normalize_postgres_url(raw, settings.ENV_DATABASE_URL), "postgres"
        )
        with scratch_database(server, prefix) as url:
            if url is None:
                raise settings.ConfigError(
                    "this role may not create databases; the benchmark needs a database of its own"
                )
            yield url, f"a fresh database on {settings.redact(server)}"
        return
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        cluster = embedded.EmbeddedCluster(Path(tmp) / "pg")
        cluster.start()
        try:
            _upgrade(cluster.url, cluster.url)
            yield cluster.url, "an embedded PostgreSQL of its own"
        finally:
            cluster.destroy()
