"""The environment recorded with every run: versions, machine, PostgreSQL durability, Celery configuration."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from typing import Any

import psutil
import psycopg

from shared import celery_app, settings

PACKAGES = ("celery", "kombu", "psycopg", "sqlalchemy", "redis", "amqp", "psutil", "alembic")
PG_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_connections",
    "work_mem",
    "checkpoint_timeout",
    "max_wal_size",
)


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def postgres(conn: psycopg.Connection) -> dict[str, Any]:
    """PostgreSQL's version and durability settings, as the server reports them."""
    out: dict[str, Any] = {}
    for name in PG_SETTINGS:
        try:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            out[name] = row[0] if row else None
        except psycopg.Error:
            out[name] = None
    return out


def celery_configuration(broker: str, configuration: str, s: settings.Settings) -> dict[str, Any]:
    """The exact Celery configuration of a run, URLs redacted."""
    conf = celery_app.config(broker, configuration, s=s)
    return {k: (settings.redact(v) if isinstance(v, str) and "://" in v else v) for k, v in conf.items()}


def capture(conn: psycopg.Connection, *, database_origin: str, mode: str) -> dict[str, Any]:
    """Everything a run's `environment` column holds except its own Celery configuration."""
    vm = psutil.virtual_memory()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "memory_mb": round(vm.total / 2**20),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": {p: _version(p) for p in PACKAGES},
        "pgqueue": _version("shared"),
        "postgres": postgres(conn),
        "database": database_origin,
        "mode": mode,
    }
