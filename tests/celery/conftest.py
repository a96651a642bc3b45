"""Fixtures of the Celery tests: a Redis server of our own, and workers started through the harness."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from shared import celery_app, embedded, settings
from shared.bench.adapters import celery as celery_adapter
from shared.bench.adapters.celery import WorkerOptions
from shared.bench.workers import WorkerProcess, worker_env

from ..conftest import require_service
from ..support import ROOT, Proc, wait_until

T = TypeVar("T")

WORKER_ENV = {"PYTHONDONTWRITEBYTECODE": ""}
"""Extra environment of the workers the tests start: they may cache bytecode even where the caller's
environment forbids it (this machine sets PYTHONDONTWRITEBYTECODE=1), since compiling Celery, kombu and
SQLAlchemy afresh costs each of the twenty-odd workers about 3 s of CPU (about 1 s from the cache)."""


class RedisServer:
    """A `redis-server` of our own on a free port, without persistence; stopping it stops only it."""

    def __init__(self, log_path: Path, port: int | None = None) -> None:
        self.port = port or embedded.free_port()
        self.log_path = log_path
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = Proc(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            dict(os.environ),
            self.log_path,
            cwd=ROOT,
        )
        wait_until(lambda: redis.Redis(port=self.port, socket_timeout=1).ping(), 15, message="redis-server")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(10)
            self.proc = None


@pytest.fixture(scope="session")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis server for tests that shorten the visibility timeout or stop the server.

    A worker with a 5 s visibility timeout sweeps the *whole* unacked index of its Redis database,
    so on the machine's shared Redis it would hand out other programs' in-flight messages again.
    """
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed, and CI=true requires it")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis") / "redis.log").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _dispose_kombu_engines(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close this process's kombu SQL engines before the test database is dropped.

    kombu caches one engine per URL at class level; left alone, its pooled connections to a dropped
    database are reset at interpreter exit and log `AdminShutdown` tracebacks.
    """
    if "database_url" in request.fixturenames:
        request.getfixturevalue("database_url")  # set up first, so torn down after this fixture
    yield
    from kombu.transport import sqlalchemy as kombu_sql

    for engine, _ in list(kombu_sql.Channel._engines.values()):
        engine.dispose()
    kombu_sql.Channel._engines.clear()


@pytest.fixture
def all_brokers() -> tuple[str, ...]:
    """Every broker; skips (or fails under CI) when the machine's Redis or RabbitMQ is absent."""
    require_service("Redis", ("127.0.0.1", 6379))
    require_service("RabbitMQ", ("127.0.0.1", 5672))
    return celery_app.BROKERS


def warm_imports() -> None:
    """Import, in the main thread, what the cases of `concurrently` import lazily.

    Several threads compiling modules at once (this machine sets PYTHONDONTWRITEBYTECODE, so every import
    compiles) corrupts CPython 3.11.7's AST recursion counter, and a later `ast.parse` (pytest's assertion
    rewriting at session end) fails with "AST constructor recursion depth mismatch" (fixed in 3.11.8).
    """
    import secrets  # noqa: F401 - redis-py's connection pool imports it lazily

    import celery.app.control  # noqa: F401
    import celery.backends.database  # noqa: F401
    import celery.events  # noqa: F401 - the control's event dispatcher
    import celery.result  # noqa: F401
    import celery.worker  # noqa: F401
    import kombu.pidbox  # noqa: F401
    import kombu.simple  # noqa: F401
    import kombu.transport.pyamqp  # noqa: F401
    import kombu.transport.redis  # noqa: F401
    import kombu.transport.sqlalchemy  # noqa: F401
    import sqlalchemy.dialects.mysql  # noqa: F401 - kombu's tables name MySQL and SQLite options
    import sqlalchemy.dialects.sqlite  # noqa: F401

    env = {"DATABASE_URL": "postgresql://warm@127.0.0.1:1/warm"}
    for broker in celery_app.BROKERS:
        app = celery_app.make_app(broker, result_backend=True, s=settings.load(env))
        app.loader, app.amqp.router, app.control, app.tasks  # noqa: B018 - lazy imports
        app.amqp.create_task_message  # noqa: B018
        app.connection_for_write().transport  # noqa: B018 - imports the transport, connects nothing


def concurrently(fn: Callable[..., T], cases: list[Any]) -> list[T]:
    """Run `fn(case)` for every case at once (each case starts its own processes); raise the first error."""
    warm_imports()
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        futures = [pool.submit(fn, case) for case in cases]
        return [f.result() for f in futures]


@contextlib.contextmanager
def running_worker(
    database_url: str, options: WorkerOptions, spool_dir: Path, log_path: Path, **env: str
) -> Iterator[WorkerProcess]:
    """A started and ready worker, warm-stopped afterwards."""
    worker = WorkerProcess(options.argv(), worker_env(database_url, spool_dir, **env), log_path)
    try:
        worker.wait_ready(database_url, timeout=90)
        yield worker
    finally:
        worker.stop(20)


def pool_children(worker: WorkerProcess) -> list[int]:
    """The PIDs of a prefork worker's pool children, the processes that run its tasks: the grandchildren
    of bench-celery-worker, under `celery worker` (as the harness finds them, `Adapter.victims`)."""
    return celery_adapter.ADAPTER.victims(worker.pid)


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.time_ns()}"
