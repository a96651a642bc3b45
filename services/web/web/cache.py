"""A tiny per-process cache for dashboard figures (counts, broker depths).

Counts of big tables are never computed per request: each gunicorn worker keeps the last answer for a
couple of seconds, so 200 requests/s to the overview cost the database a few queries per second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_values: dict[str, tuple[float, Any]] = {}
_inflight: dict[str, threading.Lock] = {}


def cached(key: str, ttl: float, compute: Callable[[], Any]) -> tuple[Any, float]:
    """The value for `key`, recomputed at most once per `ttl` seconds; returns (value, age in s)."""
    now = time.monotonic()
    with _lock:
        hit = _values.get(key)
        if hit and now - hit[0] < ttl:
            return hit[1], now - hit[0]
        lock = _inflight.setdefault(key, threading.Lock())
    # One thread computes; the others wait for it rather than stampeding the database.
    with lock:
        with _lock:
            hit = _values.get(key)
            if hit and time.monotonic() - hit[0] < ttl:
                return hit[1], time.monotonic() - hit[0]
        value = compute()
        with _lock:
            _values[key] = (time.monotonic(), value)
        return value, 0.0


def clear() -> None:
    with _lock:
        _values.clear()
