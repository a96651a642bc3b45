"""How a run's jobs arrive: drain (all at once), steady (open loop at a fixed rate), sweep (one rate of a
load sweep: open loop, stopped once the sender runs `terms.SWEEP_MAX_LAG_SECONDS` behind), burst, fault.

The steady scenario and the sweep are open-loop: job `i` is due at `start + i / rate` whatever happened
to the ones before it, and carries that due time as `scheduled_at`; a sender that falls behind sends late
jobs at once (it never skips them), so the delay shows up as latency instead of being hidden. Their jobs
leave from K sender processes, each with the adapter's enqueuer of its own (`shared.bench.openloop`), so
that the harness's sender is not the bottleneck it measures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared import settings
from shared.bench import adapters, openloop, terms
from shared.bench.adapters import Enqueuer
from shared.bench.spec import Case

BURST_GAP_SECONDS = 1.0


def open_loop_schedule(n: int, rate: float, start: float) -> list[float]:
    """The due times of `n` arrivals at `rate` per second from `start` (evenly spaced)."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return [openloop.due_time(start, rate, i) for i in range(n)]


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
    sender_processes: int = 0
    """How many sender processes sent an open-loop run's jobs (0: the harness's own thread)."""
    lag_p99_s: float | None = None
    """The 99th percentile of how late the open-loop jobs left (None: not open-loop)."""

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
    if case.scenario in ("steady", "sweep"):
        return send_open_loop(case, enq, run_id, should_stop)
    n = case.jobs
    started = time.time()
    sent = 0
    max_lag = 0.0
    if case.scenario == "burst":
        for due, seqs in burst_schedule(n, case.bursts or 1, started):
            if should_stop():
                break
            _sleep_until(due, should_stop)
            max_lag = max(max_lag, time.time() - due)
            sent += _send(case, enq, run_id, seqs, should_stop)
    else:
        sent = _send(case, enq, run_id, range(n), should_stop)
    return EnqueueResult(sent, started, time.time(), max_lag)


def send_open_loop(
    case: Case, enq: Enqueuer, run_id: int, should_stop: Callable[[], bool] = lambda: False
) -> EnqueueResult:
    """A steady or sweep run's jobs, open loop, from K sender processes (`BENCH_SENDER_PROCESSES`, else
    one per `openloop.PER_PROCESS_RATE` jobs/s), each opening the adapter's enqueuer for `enq`'s queue and
    environment; a sweep stops once a sender runs `terms.SWEEP_MAX_LAG_SECONDS` behind."""
    result = openloop.run(
        EnqueuerOpener(case, enq.queue, dict(enq.env), run_id),
        case.jobs,
        case.rate or 1.0,
        processes=settings.sender_processes(),
        max_lag=terms.SWEEP_MAX_LAG_SECONDS if case.scenario == "sweep" else None,
        should_stop=should_stop,
    )
    return EnqueueResult(
        result.sent,
        result.started_at,
        result.finished_at,
        result.max_lag_s,
        result.fell_behind,
        sender_processes=result.processes,
        lag_p99_s=result.lag_percentile(99.0),
    )


@dataclass(frozen=True)
class EnqueuerOpener:
    """Opens the case's enqueuer in a sender process (`openloop.Opener`): the adapter makes it from the
    case, the queue and the environment, as the harness makes its own."""

    case: Case
    queue: str
    env: Mapping[str, str]
    run_id: int

    def __call__(self) -> EnqueuerSender:
        return EnqueuerSender(
            adapters.get(self.case.adapter).enqueuer(self.case, self.queue, self.env), self.run_id
        )


@dataclass
class EnqueuerSender:
    """An enqueuer as an `openloop.Sender`: one job per arrival, stamped with its due time, blocking."""

    enq: Enqueuer
    run_id: int

    def open(self) -> None:
        return None  # the enqueuer connected as it was made

    def send(self, seq: int, due: float) -> None:
        self.enq.send_one(self.run_id, seq, scheduled_at=due)

    def close(self) -> None:
        self.enq.close()


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
