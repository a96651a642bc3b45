"""pgqueue throughput, derived from successive refreshes of pgqueue's cached counts.

pgqueue's client offers counts by state (a cached aggregate that its leader refreshes every few seconds),
not a rate. Each web process keeps the last few minutes of distinct refreshes and reports, per queue,
the growth of `completed` per second between the oldest and newest of them: only workers complete a job.
`discarded` is left out, since an operator's bulk discard would read as throughput (724/s of it once),
and from counts alone it cannot be told from a worker's last failed attempt. A rate
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
    """Jobs completed per second over the window, per queue and in all; None before two refreshes."""
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
            "completed": round(max(b.get("completed", 0) - a.get("completed", 0), 0) / seconds, 2)
        }
    return {
        "window_seconds": round(seconds, 1),
        "per_queue": per_queue,
        "completed_per_second": round(sum(q["completed"] for q in per_queue.values()), 2),
    }


def clear() -> None:
    with _lock:
        _samples.clear()
