"""A sender process of the open-loop sender (`shared.bench.openloop`, which starts it as
`python -m shared.bench.openloop_process FD` with its end of a socket pair): it runs one share of a run at a
time, as the harness asks, through a `Sender` it opens before the timed window, and reports its arrivals."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import multiprocessing.connection
import pickle
import signal
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from shared.bench.openloop import (
    IDLE_SECONDS,
    SLEEP_SLICE_SECONDS,
    Arrival,
    Sender,
    SenderError,
    due_time,
    share,
)
from shared.bench.openloop_control import Control


@dataclass
class _Share:
    """What one process reports: its arrivals, when it finished, the largest lag it saw."""

    arrivals: list[Arrival]
    finished_at: float
    max_lag_s: float


async def _maybe(x: Awaitable[Any] | None) -> Any:
    return await x if inspect.isawaitable(x) else x


async def _outcome(arrival: Arrival, pending: Awaitable[Any]) -> None:
    arrival.outcome = await pending


async def _send_share(
    sender: Sender, index: int, processes: int, n: int, start: float, rate: float, control: Control
) -> _Share:
    arrivals: list[Arrival] = []
    running: set[asyncio.Task[None]] = set()
    max_lag = 0.0
    for seq in share(n, processes, index):
        due = due_time(start, rate, seq)
        while (left := due - time.time()) > 0 and not control.stopping_before(due):
            await asyncio.sleep(min(left, SLEEP_SLICE_SECONDS))
        sent_at = time.time()
        max_lag = max(max_lag, sent_at - due)
        if not control.admit(index, due, sent_at - due):
            break
        arrival = Arrival(seq, due, sent_at)
        arrivals.append(arrival)
        pending = sender.send(seq, due)
        if inspect.isawaitable(pending):
            task = asyncio.ensure_future(_outcome(arrival, pending))
            running.add(task)
            task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    return _Share(arrivals, time.time(), max_lag)


def _picklable(exc: BaseException, index: int) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any exception that does not survive the pipe is described instead
        return SenderError(f"sender process {index}: {type(exc).__name__}: {exc}")
    return exc


def _serve(conn: multiprocessing.connection.Connection) -> None:
    """A sender process: runs one share of a run at a time, as the harness asks, until it is told to end
    (None), the harness is gone (end of file), or it had no run for `IDLE_SECONDS`."""
    # Ctrl-C reaches the whole process group: the harness decides when its senders stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = asyncio.new_event_loop()
    try:
        while conn.poll(IDLE_SECONDS):
            job = conn.recv()
            if job is None or not _one_share(conn, loop, job):
                return
    except (EOFError, OSError):
        return
    finally:
        loop.close()
        conn.close()


def _one_share(
    conn: multiprocessing.connection.Connection, loop: asyncio.AbstractEventLoop, job: Any
) -> bool:
    """Learn the run, open, say ready, wait for the start, send the share, report; whether all went well
    (else the process ends: the harness does not use it again)."""
    path, blob = job
    sys.path[:] = path  # the harness's, so that its opener's module imports here (before unpickling it)
    sender: Sender | None = None
    control: Control | None = None
    index = -1
    try:
        index, processes, opener, n, rate, control = pickle.loads(blob)
        sender = opener()
        loop.run_until_complete(_maybe(sender.open()))
        conn.send(("ready", None))
        start = conn.recv()
        if start is None:
            return False
        done = loop.run_until_complete(_send_share(sender, index, processes, n, start, rate, control))
        closing, sender = sender, None
        loop.run_until_complete(_maybe(closing.close()))
        conn.send(("done", done))
        return True
    except BaseException as exc:  # noqa: BLE001 - reported to the harness, which raises it
        with contextlib.suppress(OSError):
            conn.send(("error", _picklable(exc, index)))
        return False
    finally:
        if sender is not None:
            with contextlib.suppress(Exception):
                loop.run_until_complete(_maybe(sender.close()))
        if control is not None:
            control.close()


if __name__ == "__main__":
    # Through the module's own name, so that what it reports unpickles in the harness as this module's classes.
    from shared.bench import openloop_process

    openloop_process._serve(multiprocessing.connection.Connection(int(sys.argv[1])))
