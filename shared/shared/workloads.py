"""The workload registry: the job bodies both queues run, identical code for each (docs/architecture.md, "The job contract").

Each workload is `fn(ctx, **params)`. `ctx.deadline` (wall clock, or None) is honoured by the workloads
that wait or loop, so a timed-out attempt stops its thread soon after the queue gave up on it.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from shared.job import Ctx, JobTimeout

Workload = Callable[..., Any]
REGISTRY: dict[str, Workload] = {}


class UnknownTask(LookupError):
    """No workload is registered under this name."""


class InvalidParams(ValueError):
    """The parameters do not fit the workload."""


def workload(name: str) -> Callable[[Workload], Workload]:
    """Register `fn` under `name` (the Celery task is `bench.<name>`, the pgqueue task `<name>`)."""

    def register(fn: Workload) -> Workload:
        REGISTRY[name] = fn
        return fn

    return register


def get(name: str) -> Workload:
    """The workload registered under `name`, or `UnknownTask` naming the ones that exist. A name not yet
    registered loads the user's workload modules first (`load_user_modules`), so that every worker that
    runs jobs through `shared.contract.execute` finds them."""
    try:
        return REGISTRY[name]
    except KeyError:
        pass
    try:
        load_user_modules()
    except WorkloadModuleError as exc:
        raise UnknownTask(f"unknown task {name!r}: {exc}") from None
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownTask(f"unknown task {name!r}; registered tasks: {', '.join(sorted(REGISTRY))}") from None


class WorkloadModuleError(ImportError):
    """A workload module named by the user does not import, or registers no workload."""


_LOADED: dict[str, tuple[str, ...]] = {}
"""User modules imported so far, and the workloads each registered."""


def module_names(value: str | None = None) -> list[str]:
    """The module names of `value`, else of the environment's `BENCH_WORKLOADS` (comma-separated)."""
    from shared import settings

    raw = os.environ.get(settings.ENV_WORKLOADS, "") if value is None else value
    return [m.strip() for m in raw.split(",") if m.strip()]


def load_user_modules(names: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Import the user's workload modules (default: `BENCH_WORKLOADS`), each registering workloads with
    the `workload` decorator; returns module -> the workloads it registered. Raises `WorkloadModuleError`,
    one line, for a module that does not import or registers nothing. Each module is imported once."""
    for name in module_names() if names is None else names:
        if name in _LOADED:
            continue
        before = set(REGISTRY)
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's module is reported the same way
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise WorkloadModuleError(
                f"the workload module {name!r} does not import: {type(exc).__name__}: {first}"
            ) from None
        added = tuple(sorted(set(REGISTRY) - before))
        if not added:
            raise WorkloadModuleError(
                f"the workload module {name!r} registers no workload; decorate each job body with "
                "@shared.workloads.workload('name')"
            )
        _LOADED[name] = added
    return {m: _LOADED[m] for m in (module_names() if names is None else names)}


def module_of(name: str) -> str | None:
    """The user module that registered workload `name`, or None for a built-in one (or one not loaded)."""
    return next((m for m, names in _LOADED.items() if name in names), None)


def user_workloads() -> list[str]:
    """The workloads the user's modules registered so far, in the order they were loaded."""
    return [w for names in _LOADED.values() for w in names]


def import_root(name: str) -> Path | None:
    """The folder that must be on `sys.path` for module `name` (already imported) to import elsewhere."""
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None)
    if not origin:
        return None
    path = Path(origin).resolve().parent
    if Path(origin).name == "__init__.py":
        path = path.parent
    for _ in range(name.count(".")):
        path = path.parent
    return path


def _check_deadline(ctx: Ctx) -> None:
    if ctx.deadline is not None and time.time() >= ctx.deadline:
        raise JobTimeout(f"deadline passed at attempt {ctx.attempt}")


def _ms(params_ms: Any, name: str) -> float:
    try:
        ms = float(params_ms)
    except (TypeError, ValueError):
        raise InvalidParams(f"{name}: ms must be a number, got {params_ms!r}") from None
    if not 0 <= ms <= 3_600_000:
        raise InvalidParams(f"{name}: ms must be between 0 and 3600000, got {ms}")
    return ms


@workload("noop")
def noop(ctx: Ctx) -> None:
    """Does nothing: measures the queue's own overhead."""
    return None


@workload("sleep")
def sleep(ctx: Ctx, ms: float = 10, honour_deadline: bool = True) -> None:
    """I/O-bound: waits `ms` milliseconds, in slices so that it stops at `ctx.deadline`.

    `honour_deadline=False` models a body that cannot be interrupted (the timeout tests use it).
    """
    end = time.time() + _ms(ms, "sleep") / 1000.0
    while True:
        if honour_deadline:
            _check_deadline(ctx)
        left = end - time.time()
        if left <= 0:
            return None
        time.sleep(min(left, 0.05))


@workload("cpu")
def cpu(ctx: Ctx, ms: float = 10) -> int:
    """CPU-bound: burns `ms` milliseconds of this thread's CPU time (it holds the GIL)."""
    budget = _ms(ms, "cpu") / 1000.0
    start = time.thread_time()
    acc = 0
    n = 0
    while time.thread_time() - start < budget:
        for i in range(1000):
            acc = (acc * 31 + i) % 1_000_003
        n += 1
        if n % 64 == 0:
            _check_deadline(ctx)
    return acc


_db = threading.local()


def _app_connection():
    conn = getattr(_db, "conn", None)
    if conn is None or conn.closed:
        from shared import db, settings

        conn = db.connect(settings.load().database_url, role="workload", autocommit=True)
        _db.conn = conn
    return conn


@workload("db_write")
def db_write(ctx: Ctx, payload: str = "x") -> None:
    """Inserts one row into `public.workload_writes` through the app's own connection."""
    conn = _app_connection()
    try:
        conn.execute(
            "INSERT INTO workload_writes (worker_id, attempt, payload) VALUES (%s, %s, %s)",
            (ctx.worker_id, ctx.attempt, str(payload)[:200]),
        )
    except Exception:
        _db.conn = None
        raise


@workload("mixed")
def mixed(ctx: Ctx, seq: int | None = None, ms: float = 5) -> Any:
    """A mix by sequence number: noop, sleep(ms), cpu(ms) and db_write in turn."""
    choice = (seq if seq is not None else ctx.seq or 0) % 4
    if choice == 0:
        return noop(ctx)
    if choice == 1:
        return sleep(ctx, ms=ms)
    if choice == 2:
        return cpu(ctx, ms=ms)
    return db_write(ctx)


class FirstAttemptFailure(RuntimeError):
    """Raised on purpose by `fail_then_succeed` on its first attempt."""


@workload("fail_then_succeed")
def fail_then_succeed(ctx: Ctx, fail_attempts: int = 1) -> None:
    """Raises on its first `fail_attempts` attempts, then succeeds: exercises both queues' retries."""
    if ctx.attempt <= int(fail_attempts):
        raise FirstAttemptFailure(f"failing on purpose at attempt {ctx.attempt} of {int(fail_attempts) + 1}")
    return None


@workload("always_fail")
def always_fail(ctx: Ctx, message: str = "failing on purpose") -> None:
    """Always raises: exercises discard after the maximum number of attempts."""
    raise RuntimeError(message)
