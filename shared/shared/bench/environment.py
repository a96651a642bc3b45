"""The environment recorded with every run: versions, machine, PostgreSQL's settings, the variant's
configuration. The one capture every benchmark command uses."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from typing import Any

import psutil
import psycopg

from shared import settings
from shared.bench import adapters, store
from shared.bench.spec import Case

PACKAGES = ("psycopg", "sqlalchemy", "psutil", "alembic")
"""Packages every contender shares; each adapter adds its own (`Adapter.packages`)."""
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


def version(pkg: str) -> str | None:
    """The installed version of `pkg`, or None."""
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def postgres(conn: psycopg.Connection) -> dict[str, Any]:
    """PostgreSQL's version and durability settings, as the server reports them."""
    out: dict[str, Any] = {}
    for name in PG_SETTINGS:
        try:
            row = conn.execute(store.q("setting"), {"name": name}).fetchone()
            out[name] = row[0] if row else None
        except psycopg.Error:
            out[name] = None
    return out


def packages() -> dict[str, str | None]:
    names = [*PACKAGES, *(p for a in adapters.REGISTRY.values() for p in a.packages)]
    return {p: version(p) for p in dict.fromkeys(names)}


def machine() -> dict[str, Any]:
    """Python, the platform, CPUs, memory and load now."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def capture(conn: psycopg.Connection, *, database_origin: str, mode: str) -> dict[str, Any]:
    """Everything a run's `environment` column holds except its own variant's configuration."""
    return {
        **machine(),
        "packages": packages(),
        "project": version("shared"),
        "postgres": postgres(conn),
        "database": database_origin,
        "mode": mode,
    }


def of_run(base: dict[str, Any], case: Case, s: settings.Settings) -> dict[str, Any]:
    """`base` plus what is particular to one run: its variant's configuration and durability (read from
    its servers), slots and the load now."""
    adapter = adapters.get(case.adapter)
    return {
        **base,
        "configuration": adapter.configuration(case.options, s),
        "durability": adapter.durability(case.options, s),
        "slot_mapping": case.slot_mapping(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
