"""The libraries the pages are built on that other parts of the project provide.

`shared.pgqueue` (the queue's client) and `shared.bench` (experiments and reports) are imported lazily,
so a page whose library is missing says so plainly instead of failing the whole app.
"""

from __future__ import annotations

from types import ModuleType

MISSING_PGQUEUE = "pgqueue's client (shared.pgqueue) is not installed in this build, so its pages are empty."
MISSING_BENCH = (
    "The benchmark library (shared.bench) is not installed in this build, so runs cannot be started."
)


def pgqueue() -> ModuleType | None:
    try:
        from shared import pgqueue as mod
    except ImportError:
        return None
    return mod


def experiments() -> ModuleType | None:
    try:
        from shared.bench import experiments as mod
    except ImportError:
        return None
    return mod


def report() -> ModuleType | None:
    try:
        from shared.bench import report as mod
    except ImportError:
        return None
    return mod
