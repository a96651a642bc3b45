"""An open-loop sender that is not the bottleneck: a schedule of arrivals spread over K sender processes
(docs/benchmark.md, "The open-loop sender").

Arrival `j` of `n` is due at `start + j / rate`, whatever happened to the ones before it. Sender process
`i` of `K` sends the arrivals `j ≡ i (mod K)`, through a connection it opened before the timed window (an
adapter's enqueuer, an HTTP keep-alive client): its own interpreter, so the senders neither share a GIL
nor compete with the harness's threads. Each arrival is recorded with its due time and the time it left;
the lag is the difference.

One sender thread in the harness fell 1 s behind its schedule at 1,000 jobs/s on a 2-core host, whatever
the queue, so a load sweep measured the sender; K processes of about `PER_PROCESS_RATE` arrivals/s each
share that work out (`processes_for`).

A sender that falls `max_lag` behind stops the run (a sweep: the rate is not offered), and so does a stop
request: every process then sends exactly the arrivals due up to the latest one any process had already
sent, so the arrivals sent are always the first `sent` of the schedule (`Control.admit`). A sender may be
blocking (`send` returns None: one arrival at a time per process, as a queue's client sends) or
concurrent (`send` returns an awaitable: a request leaves on time though earlier ones have not answered,
as an HTTP load needs).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import multiprocessing.connection
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from shared.bench.openloop_control import Control

__all__ = ["Control", "Result", "Sender", "SenderError", "processes_for", "run", "share", "shutdown"]

PER_PROCESS_RATE = 250.0
"""Arrivals per second one sender process is given (`processes_for`). One job per transaction costs a
client round trip and a commit: on the 2-core host at load 6, one process fell behind at 300 jobs/s of
pgqueue's one-by-one enqueue where four sustained it (docs/benchmark.md, "The open-loop sender")."""
MAX_PROCESSES = 16
"""The most sender processes a run starts, whatever its rate."""
READY_TIMEOUT_SECONDS = 120.0
"""How long the sender processes may take to start and open their connections."""
START_MARGIN_SECONDS = 0.2
"""The first arrival is due this long after every process said it is ready (the start reaches them all)."""
STOP_TIMEOUT_SECONDS = 5.0
"""A sender process that has not ended this long after its run is terminated."""
SLEEP_SLICE_SECONDS = 0.05
"""A sender waiting for its next arrival looks at least this often whether the run was stopped."""
IDLE_SECONDS = 600.0
"""A sender process kept between runs ends by itself after this long without one."""
PROCESS_MODULE = "shared.bench.openloop_process"
"""The module a sender process runs (`python -m`)."""


class SenderError(RuntimeError):
    """A sender process failed (its message says which process and why)."""


class Sender(Protocol):
    """One process's connection, made in that process by an `Opener`.

    Each method may return an awaitable (the process runs an event loop) or None (done at once)."""

    def open(self) -> Awaitable[None] | None:
        """Connect, before the timed window."""

    def send(self, seq: int, due: float) -> Awaitable[Any] | None:
        """Send arrival `seq`, due at `due` (epoch seconds). An awaitable runs concurrently with later
        arrivals, and what it returns is the arrival's `outcome`; None: the send is done."""

    def close(self) -> Awaitable[None] | None:
        """Release the connection, after the process's last arrival."""


Opener = Callable[[], Sender]
"""Makes one process's `Sender`, in that process: a picklable callable (a dataclass of plain values)."""


def processes_for(rate: float, per_process: float = PER_PROCESS_RATE, cap: int = MAX_PROCESSES) -> int:
    """How many sender processes a `rate` (arrivals/s) gets: one per `per_process`, 1 to `cap`."""
    if rate <= 0 or per_process <= 0:
        raise ValueError(f"rate and per_process must be positive, got {rate} and {per_process}")
    return max(1, min(cap, math.ceil(rate / per_process)))


def share(n: int, processes: int, index: int) -> range:
    """The arrivals (their seqs) sender process `index` of `processes` sends: every `processes`-th."""
    if not 0 <= index < processes:
        raise ValueError(f"index must be in 0..{processes - 1}, got {index}")
    return range(index, n, processes)


def due_time(start: float, rate: float, seq: int) -> float:
    """When arrival `seq` is due: evenly spaced at `rate` per second from `start`."""
    return start + seq / rate


@dataclass
class Arrival:
    """One arrival as sent: due, left (`sent_at`), and the concurrent sender's `outcome`."""

    seq: int
    due: float
    sent_at: float
    outcome: Any = None

    @property
    def lag(self) -> float:
        return self.sent_at - self.due


@dataclass
class Result:
    """The merged record of every sender process (the shape of `scenarios.EnqueueResult`, and more)."""

    sent: int
    started_at: float
    finished_at: float
    max_lag_s: float
    fell_behind: bool
    processes: int
    arrivals: list[Arrival] = field(default_factory=list)
    """Sorted by seq: seq `j` is `arrivals[j]` (the sent arrivals are always the schedule's first)."""

    @property
    def seconds(self) -> float:
        return max(self.finished_at - self.started_at, 1e-9)

    def lag_percentile(self, q: float) -> float | None:
        """The q-th percentile (0-100, nearest rank) of the arrivals' lags, in seconds."""
        lags = sorted(max(a.lag, 0.0) for a in self.arrivals)
        if not lags:
            return None
        return lags[min(len(lags) - 1, max(0, math.ceil(q / 100 * len(lags)) - 1))]


# ---- the harness's side ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Process:
    """A sender process the harness started, and its end of their socket pair."""

    popen: subprocess.Popen[bytes]
    conn: multiprocessing.connection.Connection
    idle_since: float = 0.0

    @property
    def pid(self) -> int:
        return self.popen.pid

    @classmethod
    def start(cls) -> _Process:
        mine, theirs = socket.socketpair()
        with theirs:
            popen = subprocess.Popen(
                [sys.executable, "-m", PROCESS_MODULE, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        return cls(popen, multiprocessing.connection.Connection(mine.detach()))

    def usable(self) -> bool:
        return self.popen.poll() is None and time.monotonic() - self.idle_since < IDLE_SECONDS / 2


class _Pool:
    """The sender processes between runs: a run takes idle ones and starts the rest; those of a run that
    went well wait for the next (a process imports the adapters once: seconds on a loaded host), the others
    are stopped. All are stopped by PID at the harness's exit (`shutdown`), and an idle one ends by itself
    after `IDLE_SECONDS`."""

    def __init__(self) -> None:
        self.idle: list[_Process] = []
        self.lock = threading.Lock()
        self.registered = False

    def take(self, k: int) -> list[_Process]:
        with self.lock:
            usable = [p for p in self.idle if p.usable()]
            stale = [p for p in self.idle if p not in usable]
            taken, self.idle = usable[:k], usable[k:]
            if not self.registered:
                atexit.register(self.shutdown)
                self.registered = True
        _end(stale)
        out = list(taken)
        try:
            while len(out) < k:
                out.append(_Process.start())
        except BaseException:
            _end(out)
            raise
        return out

    def give_back(self, procs: Sequence[_Process]) -> None:
        now = time.monotonic()
        for p in procs:
            p.idle_since = now
        with self.lock:
            self.idle.extend(procs)

    def shutdown(self) -> None:
        """Stop every idle sender process (by PID)."""
        with self.lock:
            procs, self.idle = self.idle, []
        _end(procs)


_POOL = _Pool()


def shutdown() -> None:
    """Stop the sender processes kept between runs (also done at the harness's exit)."""
    _POOL.shutdown()


def idle_pids() -> list[int]:
    """The PIDs of the sender processes kept between runs."""
    with _POOL.lock:
        return [p.pid for p in _POOL.idle]


def run(
    opener: Opener,
    n: int,
    rate: float,
    *,
    processes: int | None = None,
    max_lag: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> Result:
    """Send `n` arrivals at `rate` per second over `processes` sender processes (default:
    `processes_for(rate)`; never more than `n`), each with a `Sender` from `opener`; stop early once one
    runs `max_lag` seconds behind (`fell_behind`) or `should_stop()`. After a run that went well its
    processes wait for the next run; after any other, each is stopped (by PID) before this returns or
    raises. A process's failure raises its error (or `SenderError`)."""
    if n <= 0:
        now = time.time()
        return Result(0, now, now, 0.0, False, 0)
    k = max(1, min(processes or processes_for(rate), n))
    control = Control.new(k, max_lag)
    procs: list[_Process] = []
    ok = False
    try:
        procs = _POOL.take(k)
        for i, p in enumerate(procs):
            p.conn.send((list(sys.path), pickle.dumps((i, k, opener, n, rate, control))))
        ready = _collect(procs, "ready", time.monotonic() + ready_timeout, should_stop)
        if ready is None:
            for p in procs:
                p.conn.send(None)
            now = time.time()
            return Result(0, now, now, 0.0, False, k)
        start = time.time() + START_MARGIN_SECONDS
        for p in procs:
            p.conn.send(start)
        shares = _collect(procs, "done", None, should_stop, on_stop=control.stop)
        assert shares is not None
        behind = control.behind
        ok = True
    finally:
        control.stop()
        if ok:
            _POOL.give_back(procs)
        else:
            _end(procs)
        control.remove()
    arrivals = sorted((a for s in shares for a in s.arrivals), key=lambda a: a.seq)
    return Result(
        sent=len(arrivals),
        started_at=start,
        finished_at=max(s.finished_at for s in shares),
        max_lag_s=max(0.0, *(s.max_lag_s for s in shares)),
        fell_behind=behind,
        processes=k,
        arrivals=arrivals,
    )


def _collect(
    procs: Sequence[_Process],
    kind: str,
    deadline: float | None,
    should_stop: Callable[[], bool],
    on_stop: Callable[[], None] | None = None,
) -> list[Any] | None:
    """Every process's `kind` message, in process order; None when `should_stop()` before they all came
    and there is no `on_stop` (else `on_stop` is called once and the messages still awaited). Raises a
    process's error, or `SenderError` when one exits without a word or the deadline passes."""
    got: dict[int, Any] = {}
    stopped = False
    conns = [p.conn for p in procs]
    while len(got) < len(conns):
        if should_stop() and not stopped:
            if on_stop is None:
                return None
            on_stop()
            stopped = True
        if deadline is not None and time.monotonic() > deadline:
            raise SenderError(f"the sender processes were not {kind} in time ({len(got)} of {len(conns)})")
        waiting = [c for i, c in enumerate(conns) if i not in got]
        for ready in multiprocessing.connection.wait(waiting, timeout=SLEEP_SLICE_SECONDS * 4):
            c = cast(multiprocessing.connection.Connection, ready)
            i = conns.index(c)
            try:
                what, payload = c.recv()
            except (EOFError, OSError):
                code = procs[i].popen.wait(5)
                raise SenderError(
                    f"sender process {i} (pid {procs[i].pid}) exited with code {code} before it was {kind}"
                ) from None
            if what == "error":
                raise cast(BaseException, payload)
            got[i] = payload
    return [got[i] for i in range(len(conns))]


def _end(procs: Sequence[_Process]) -> None:
    """Stop sender processes: close their sockets (an idle one ends at once, one still sending ends on the
    broken pipe), wait, then terminate (and kill) by PID whatever did not end."""
    for p in procs:
        with contextlib.suppress(OSError):
            p.conn.send(None)
        p.conn.close()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.popen.wait(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.popen.poll() is None:
            p.popen.terminate()
            try:
                p.popen.wait(2)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(2)
