"""pgqueue throughput, derived from successive refreshes of pgqueue's cached counts.

pgqueue's client offers counts by state (a cached aggregate that its leader refreshes every few seconds),
not a rate. Each web process keeps the last few minutes of distinct refreshes and reports, per queue,
the growth of `completed` (and `discarded`) per second between the oldest and newest of them. A rate
needs two refreshes, so a fresh process shows none at first; the cleaner deleting old completed jobs
can make a window's rate read low (never negative: a drop is reported as 0).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import deque
from typing import Any

WINDOW_SECONDS = 300.0
_lock = threading.Lock()
_samples: deque[tuple[dt.datetime, dict[str, dict[str, int]]]] = deque(maxlen=400)


def observe(refreshed_at: dt.datetime | None, by_queue: dict[str, dict[str, int]]) -> None:
    """Record one refresh of the counts (the same refresh twice is recorded once)."""
    if not isinstance(refreshed_at, dt.datetime):
        return
    with _lock:
        if _samples and _samples[-1][0] >= refreshed_at:
            return
        _samples.append((refreshed_at, by_queue))
        while _samples and (refreshed_at - _samples[0][0]).total_seconds() > WINDOW_SECONDS:
            _samples.popleft()


def rates() -> dict[str, Any] | None:
    """Jobs finished per second over the window, per queue and in all; None before two refreshes."""
    with _lock:
        if len(_samples) < 2:
            return None
        (t0, first), (t1, last) = _samples[0], _samples[-1]
    seconds = (t1 - t0).total_seconds()
    if seconds <= 0:
        return None
    per_queue = {}
    for queue in sorted(set(first) | set(last)):
        a, b = first.get(queue, {}), last.get(queue, {})
        per_queue[queue] = {
            state: round(max(b.get(state, 0) - a.get(state, 0), 0) / seconds, 2)
            for state in ("completed", "discarded")
        }
    return {
        "window_seconds": round(seconds, 1),
        "per_queue": per_queue,
        "completed_per_second": round(sum(q["completed"] for q in per_queue.values()), 2),
    }


def clear() -> None:
    with _lock:
        _samples.clear()
