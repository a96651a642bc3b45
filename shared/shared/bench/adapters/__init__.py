"""The contenders, registered by name (docs/architecture.md, "Adding a queue").

`get(name)` answers an adapter; `NAMES` lists them in the order reports show them. A new queue is one
module beside these that defines an `Adapter` (`base.py`) and one line in `_ALL` below.
"""

from __future__ import annotations

from shared.bench.adapters import celery, pgqueue, pgqueuer, procrastinate
from shared.bench.adapters.base import Adapter, AdapterUnavailable, Enqueuer, Option, meta

__all__ = ["NAMES", "Adapter", "AdapterUnavailable", "Enqueuer", "Option", "get", "meta"]

_ALL: tuple[Adapter, ...] = (pgqueue.ADAPTER, procrastinate.ADAPTER, pgqueuer.ADAPTER, celery.ADAPTER)
REGISTRY: dict[str, Adapter] = {a.name: a for a in _ALL}
NAMES: tuple[str, ...] = tuple(REGISTRY)


def get(name: str) -> Adapter:
    """The adapter registered as `name`; `KeyError` naming the ones that exist."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown adapter {name!r}; use one of {', '.join(NAMES)}") from None
