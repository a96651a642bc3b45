"""Characterisation: why Celery on kombu's SQL transport can stop delivering after a pool child is SIGKILLed.

kombu's SQL transport has no event loop, so the worker runs billiard's blocking prefork pool. Its children read
their tasks from one shared pipe under one lock (`SimpleQueue.get_payload`), and an idle child holds that lock
while it blocks in `read` on the pipe; the others wait on the lock (a futex). SIGKILL the child that holds the
lock and the lock is never released: no child ever gets a task again. SIGKILL a child that waits on the lock
instead and the pool goes on (docs/celery.md, "The SQL broker after a kill").

Which child holds the lock is read from the kernel (`/proc/<pid>/wchan`: a pipe read, or a futex wait).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from shared import celery_app, settings
from shared.bench.adapters.celery import WorkerOptions
from shared.bench.records import read_spool

from ..support import wait_until
from .conftest import WORKER_ENV, pool_children, running_worker, unique

CHILDREN = 3
TASKS = 10
STALL_WINDOW_S = 10.0
"""How long the stalled pool is watched for a task that runs: ten polling intervals and more."""
POLLING_INTERVAL_S = 0.2


def blocked_in(pid: int) -> str:
    """Where the kernel has process `pid` waiting: `pipe` (the lock holder's read), `futex` (the lock), or other."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return "gone"
    return "pipe" if "pipe" in wchan else "futex" if "futex" in wchan else wchan or "running"


def pool_states(worker) -> dict[int, str]:
    return {pid: blocked_in(pid) for pid in pool_children(worker)}


def finished(spool_dir: Path, run_id: int) -> int:
    return len({e.seq for e in read_spool(spool_dir, run_id) if e.kind == "finish"})


@pytest.mark.parametrize(("victim", "runs_after"), [("pipe", 0), ("futex", TASKS)])
def test_killing_the_idle_child_that_holds_the_pipe_lock_stops_delivery(
    database_url, tmp_path, victim, runs_after
):
    queue = unique(f"stall-{victim}")
    options = WorkerOptions(
        broker="postgres",
        pool="prefork",
        concurrency=CHILDREN,
        queues=[queue],
        polling_interval=POLLING_INTERVAL_S,
    )
    spool_dir = tmp_path / "spool"
    app = celery_app.make_app("postgres", polling_interval=POLLING_INTERVAL_S, s=settings.load())
    run_id = time.time_ns() // 1000 % 2_000_000_000
    with running_worker(database_url, options, spool_dir, tmp_path / "worker.log", **WORKER_ENV) as worker:
        # Idle: one child blocked reading the pipe (it holds the lock), the others waiting on the lock.
        states = wait_until(
            lambda: (
                (s := pool_states(worker))
                and list(s.values()).count("pipe") == 1
                and list(s.values()).count("futex") == CHILDREN - 1
                and s
            ),
            30,
            message="an idle pool: one child in a pipe read, the others on the lock",
        )
        target = next(pid for pid, state in states.items() if state == victim)
        os.kill(target, signal.SIGKILL)
        # The main process replaces the child it lost.
        wait_until(lambda: target not in (pool := pool_children(worker)) and len(pool) == CHILDREN, 30)
        for seq in range(TASKS):
            celery_app.send(
                app, "noop", {}, {"run_id": run_id, "seq": seq, "enqueued_at": time.time()}, queue=queue
            )
        if runs_after:
            wait_until(lambda: finished(spool_dir, run_id) == TASKS, 60, message="every task after the kill")
        else:
            # A bounded observation: the stalled pool is watched for STALL_WINDOW_S, long enough for many polls.
            deadline = time.monotonic() + STALL_WINDOW_S
            while time.monotonic() < deadline and not finished(spool_dir, run_id):
                time.sleep(0.2)
        assert finished(spool_dir, run_id) == runs_after
    app.close()
