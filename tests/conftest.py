"""Shared fixtures: which PostgreSQL, a migrated template database, and a fresh database per test.

Which PostgreSQL (docs/architecture.md, "Testing"): `DATABASE_URL` when set, else the server at `LOCAL_PG_ADDR`
(default 127.0.0.1:5432) when it answers, else an embedded cluster this session starts (and stops).
Each test that asks for `database_url` gets a fresh database cloned from a migrated template.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from shared import db, embedded, settings
from shared import migrate as migrate_mod

from .support import ROOT

OUTPUT = ROOT / "test-output"


def _server_url() -> tuple[str, embedded.EmbeddedCluster | None]:
    raw = os.environ.get(settings.ENV_DATABASE_URL)
    if raw:
        return settings.with_database(settings.normalize_postgres_url(raw, "DATABASE_URL"), "postgres"), None
    addr = os.environ.get(settings.ENV_LOCAL_PG_ADDR) or settings.DEFAULT_LOCAL_PG_ADDR
    if settings._port_answers(addr):
        return f"postgresql://postgres@{addr}/postgres", None
    cluster = embedded.EmbeddedCluster(Path(tempfile.mkdtemp(prefix="bench-test-pg-", dir="/tmp")))
    cluster.start()
    return cluster.url, cluster


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server's `postgres` database that the tests may create databases on."""
    url, cluster = _server_url()
    yield url
    if cluster is not None:
        cluster.destroy()


def create_database(server_url: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return settings.with_database(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def template_db(pg_server: str) -> Iterator[str]:
    """A migrated database that fresh test databases are cloned from."""
    name = f"bench_tpl_{uuid.uuid4().hex[:8]}"
    url = create_database(pg_server, name)
    migrate_mod.upgrade(url, url)
    db_engines_dispose()
    yield name
    drop_database(pg_server, name)


def db_engines_dispose() -> None:
    db.app_engine.cache_clear()
    db.queue_engine.cache_clear()


@pytest.fixture
def database_url(pg_server: str, template_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh migrated database for this test; DATABASE_URL points at it for in-process code."""
    name = f"bench_t_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("QUEUE_DATABASE_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    db_engines_dispose()
    yield url
    db_engines_dispose()
    drop_database(pg_server, name)


@pytest.fixture
def empty_database_url(pg_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database with no migrations applied."""
    name = f"bench_e_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name)
    monkeypatch.setenv("DATABASE_URL", url)
    db_engines_dispose()
    yield url
    db_engines_dispose()
    drop_database(pg_server, name)


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder under test-output/ for this test's logs and screenshots."""
    path = OUTPUT / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    monkeypatch.setenv("BENCH_SPOOL_DIR", str(path))
    return path


def require_service(name: str, addr: tuple[str, int]) -> None:
    """Skip with a reason when a broker is absent, except under CI=true, where absence fails."""
    import socket

    try:
        with socket.create_connection(addr, timeout=1):
            return
    except OSError:
        pass
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is not running at {addr[0]}:{addr[1]}, and CI=true requires it")
    pytest.skip(f"{name} is not running at {addr[0]}:{addr[1]}")


@pytest.fixture
def redis_available() -> None:
    require_service("Redis", ("127.0.0.1", 6379))


@pytest.fixture
def rabbitmq_available() -> None:
    require_service("RabbitMQ", ("127.0.0.1", 5672))
