"""How a run's jobs arrive: drain (all at once), steady (open loop at a fixed rate), sweep (one rate of a
load sweep: open loop, stopped once the sender runs `terms.SWEEP_MAX_LAG_SECONDS` behind), burst, fault.

The steady scenario is open-loop: job `i` is due at `start + i / rate` whatever happened to the ones
before it, and carries that due time as `scheduled_at`; a sender that falls behind sends late jobs at
once (it never skips them), so the delay shows up as latency instead of being hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.bench import terms
from shared.bench.adapters import Enqueuer
from shared.bench.spec import Case

BURST_GAP_SECONDS = 1.0


def open_loop_schedule(n: int, rate: float, start: float) -> list[float]:
    """The due times of `n` arrivals at `rate` per second from `start` (evenly spaced)."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return [start + i / rate for i in range(n)]


def burst_schedule(
    n: int, bursts: int, start: float, gap: float = BURST_GAP_SECONDS
) -> list[tuple[float, range]]:
    """`bursts` groups of (nearly) equal size, one every `gap` seconds: (due time, seqs) pairs."""
    bursts = max(1, min(bursts, n))
    size, extra = divmod(n, bursts)
    out, lo = [], 0
    for b in range(bursts):
        hi = lo + size + (1 if b < extra else 0)
        out.append((start + b * gap, range(lo, hi)))
        lo = hi
    return out


@dataclass
class EnqueueResult:
    """What the sender did: how many jobs, over what wall-clock span, how late it ran."""

    sent: int
    started_at: float
    finished_at: float
    max_lag_s: float = 0.0
    fell_behind: bool = False
    """A sweep's sender stopped because it ran `terms.SWEEP_MAX_LAG_SECONDS` behind its schedule."""

    @property
    def seconds(self) -> float:
        return max(self.finished_at - self.started_at, 1e-9)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def _sleep_until(t: float, should_stop: Callable[[], bool]) -> None:
    while True:
        left = t - time.time()
        if left <= 0 or should_stop():
            return
        time.sleep(min(left, 0.05))


def enqueue(
    case: Case, enq: Enqueuer, run_id: int, should_stop: Callable[[], bool] = lambda: False
) -> EnqueueResult:
    """Send every job of one run as the case's scenario and scheduling mode say."""
    n = case.jobs
    started = time.time()
    sent = 0
    max_lag = 0.0
    behind = False
    if case.scenario in ("steady", "sweep"):
        for seq, due in enumerate(open_loop_schedule(n, case.rate or 1.0, started)):
            if should_stop():
                break
            _sleep_until(due, should_stop)
            lag = time.time() - due
            max_lag = max(max_lag, lag)
            if case.scenario == "sweep" and lag > terms.SWEEP_MAX_LAG_SECONDS:
                behind = True
                break
            enq.send_one(run_id, seq, scheduled_at=due)
            sent += 1
    elif case.scenario == "burst":
        for due, seqs in burst_schedule(n, case.bursts or 1, started):
            if should_stop():
                break
            _sleep_until(due, should_stop)
            max_lag = max(max_lag, time.time() - due)
            sent += _send(case, enq, run_id, seqs, should_stop)
    else:
        sent = _send(case, enq, run_id, range(n), should_stop)
    return EnqueueResult(sent, started, time.time(), max_lag, behind)


def _send(case: Case, enq: Enqueuer, run_id: int, seqs: range, should_stop: Callable[[], bool]) -> int:
    if case.scheduling == "bulk":
        enq.send_many(run_id, list(seqs))
        return len(seqs)
    sent = 0
    for seq in seqs:
        if should_stop():
            break
        enq.send_one(run_id, seq)
        sent += 1
    return sent
