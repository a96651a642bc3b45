"""The end of a run: every job finished, or completions stopped moving (docs/benchmark.md, "Completion").

An adapter that can tell from its own tables (`Adapter.busy`, `Adapter.completed`) is polled first, recording or not, so
that the paired runs of the recording overhead end on the same signal: a cheap poll every 20 ms until
nothing is left to run, its completed count once a second for progress. The records, loaded by the
workers every 0.25 s, are then awaited; for the other adapters they are the only signal. A
run whose count stops moving for `stall` seconds ends, and its missing jobs count as lost. A run that
keeps no records takes its drain span from the adapter's own table (`Adapter.drain_span`).

Counting a run's finish records reads every one of them (40 to 50 ms at 20,000 to 34,000 jobs, on the
harness's connection): polled every 0.1 s through a whole drain, it took a quarter of a core from the
workers of a queue that keeps no count of its own (docs/benchmarks.md, "Why the peers' sized drains are
slower than their probes"). So the records are counted again after half the time the rest of the run would
take at the rate so far (`records_poll_interval`): every 0.1 s near the end, at most once a second before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shared.bench import adapters
from shared.bench.spec import Case
from shared.bench.store import Store

QUEUE_POLL_SECONDS = 0.02
RECORDS_POLL_SECONDS = 0.1
RECORDS_POLL_MAX_SECONDS = 1.0


def records_poll_interval(done: int, n: int, elapsed: float) -> float:
    """Seconds until the records of a run are counted again: half the time the `n - done` jobs left would
    take at the rate seen over `elapsed` seconds, within [RECORDS_POLL_SECONDS, RECORDS_POLL_MAX_SECONDS]
    (the shortest while nothing has finished yet: no rate to go by)."""
    if done <= 0 or elapsed <= 0:
        return RECORDS_POLL_SECONDS
    left = max(0, n - done) * elapsed / done
    return min(RECORDS_POLL_MAX_SECONDS, max(RECORDS_POLL_SECONDS, left / 2))


class _Stall:
    """Whether a count has moved within the last `seconds`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.reset()

    def reset(self) -> None:
        self.last, self.changed = -1, time.monotonic()

    def moving(self, count: int) -> bool:
        if count != self.last:
            self.last, self.changed = count, time.monotonic()
        return time.monotonic() - self.changed <= self.seconds


def completed_in_queue(db: Store, case: Case, queue: str) -> int | None:
    """The adapter's own count of completed jobs in `queue`, or None when it keeps none."""
    adapter = adapters.get(case.adapter)
    if not adapter.counts_completions:
        return None
    return db.call(lambda conn: adapter.completed(conn, queue))


def wait_for_end(
    db: Store,
    run_id: int,
    case: Case,
    n: int,
    queue: str,
    baseline: int | None,
    stall: float,
    should_stop: Callable[[], bool],
) -> dict[str, Any]:
    """Wait until every one of the `n` jobs sent finished, or completions stall for `stall` seconds.

    `baseline` is the adapter's count of completed jobs in `queue` before the run sent anything (the
    queue serves every run of its worker group). KeyboardInterrupt when `should_stop()`.
    """
    adapter = adapters.get(case.adapter)
    started = time.time()
    observed_done_at = None
    done = -1
    stalled = _Stall(stall)
    if baseline is not None:
        count_at = 0.0
        while True:
            if should_stop():
                raise KeyboardInterrupt
            busy = db.call(lambda conn: adapter.busy(conn, queue))
            if not busy or time.monotonic() >= count_at:
                done = db.call(lambda conn: adapter.completed(conn, queue)) - baseline
                count_at = time.monotonic() + 1.0
                if not busy and done >= n:
                    observed_done_at = time.time()
                    break
            if not stalled.moving(done):
                break
            time.sleep(QUEUE_POLL_SECONDS)
    if case.recording and (observed_done_at is not None or baseline is None):
        stalled.reset()
        counting_since = time.monotonic()
        while True:
            if should_stop():
                raise KeyboardInterrupt
            done = int(db.one("events_finished", {"run_id": run_id}) or 0)
            if done >= n:
                observed_done_at = observed_done_at or time.time()
                break
            if not stalled.moving(done):
                break
            time.sleep(records_poll_interval(done, n, time.monotonic() - counting_since))
    span = None
    if not case.recording and observed_done_at is not None:
        # no records to time the drain by: the adapter's own table does (outside the measured window)
        span = db.call(lambda conn: adapter.drain_span(conn, queue))
    return {
        "queue_span": span,
        "wait_seconds": round(time.time() - started, 3),
        "stalled": done < n,
        "observed_done_at": observed_done_at,
        "done_when_waiting_ended": done,
    }
