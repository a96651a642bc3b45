"""Worker processes the harness starts (managed mode), for every adapter alike.

A `WorkerProcess` is one worker's main process, started in a session of its own so that its whole process
group can be stopped at once; it is ready once it heartbeats in `queue.workers` (and, for an adapter
whose processes heartbeat on their own, once each of them does). `stop` is a warm shutdown: SIGTERM to
the main process only (a prefork child resets SIGTERM to its default action, so signalling the group
would kill the jobs it runs), a wait, then SIGKILL to the group. A `WorkerGroup` is the workers of one
adapter variant listening on one queue; `hold` and `release` stop and continue all its processes, so that a
drain's batch is enqueued before any of them consumes (docs/benchmark.md, "Drain means drain").
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from shared import db, heartbeat, settings
from shared.bench.adapters import AdapterUnavailable

HOST = settings.host_name()
"""The host the workers this harness starts name in their heartbeats (they inherit its `BENCH_HOST`)."""
HOLD_TIMEOUT_SECONDS = 5.0
READY_POLL_SECONDS = 0.1
"""The longest a worker's start-up waits between two looks at its heartbeats (a NOTIFY ends the wait sooner)."""


def _stopped(pid: int) -> bool:
    """Whether process `pid` is stopped by a signal (or gone)."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def worker_env(database_url: str, spool_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker the harness starts: this process's, less the settings that would point
    it at another database or broker than `database_url`, plus its spool directory and `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in {"QUEUE_DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(DATABASE_URL=database_url, BENCH_SPOOL_DIR=str(spool_dir), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class WorkerProcess:
    """One worker's main process in a session of its own."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed by stop()
        self.started_at = time.time()
        self.ready_at: float | None = None
        self.info: dict[str, Any] = {}
        """The `info` of its heartbeat once ready (what the worker says of its configuration)."""
        self.worker_id: str | None = None
        self.popen = subprocess.Popen(
            self.argv,
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    @property
    def startup_seconds(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.started_at

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def heartbeat(self, conn: Any) -> dict[str, Any] | None:
        """This worker's latest heartbeat row (`id`, `info`, `queues`, ...), if it has sent one."""
        rows = heartbeat.rows(conn, "worker_by_pid", {"pid": self.pid, "host": HOST})
        return rows[0] if rows else None

    def is_ready(self, conn: Any, processes: int = 0) -> bool:
        """Whether it heartbeated since it started, with at least `processes` of its own processes."""
        row = conn.execute(
            heartbeat.QUERIES["worker_ready"], {"pid": self.pid, "host": HOST, "since": self.started_at}
        ).fetchone()
        return bool(row and row[0] and row[1] >= processes)

    def wait_ready(
        self,
        database_url: str,
        *,
        processes: int = 0,
        timeout: float = 120.0,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        """Return once the worker is ready; `AdapterUnavailable` with its log's tail when it exits or
        `timeout` passes (the worker is stopped then); KeyboardInterrupt when `should_stop()`."""
        deadline = time.monotonic() + timeout
        with db.connect(database_url, role="harness", autocommit=True) as conn:
            # woken by each worker's first heartbeat (shared.heartbeat.READY_CHANNEL), so that the start-up
            # measured is the worker's, not this loop's period; the timeout is the backstop
            conn.execute(heartbeat.QUERIES["listen_workers"])
            while not self.is_ready(conn, processes):
                if should_stop():
                    self.stop(5)
                    raise KeyboardInterrupt
                if not self.alive() or time.monotonic() > deadline:
                    self.stop(5)
                    tail = self.log()[-1500:].strip()
                    raise AdapterUnavailable(
                        f"the worker `{Path(self.argv[0]).name}` did not start within {timeout:.0f} s "
                        f"(exit code {self.popen.returncode}); its log ({self.log_path}) ends with:\n{tail}"
                    )
                for _ in conn.notifies(timeout=READY_POLL_SECONDS, stop_after=1):
                    pass
            row = self.heartbeat(conn) or {}
        self.ready_at = time.time()
        self.info = dict(row.get("info") or {})
        self.worker_id = row.get("id")

    def pids(self) -> list[int]:
        """The main process and all its descendants that are alive."""
        if not self.alive():
            return []
        try:
            root = psutil.Process(self.pid)
            return [self.pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the main process alone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        """Ask for a warm shutdown: SIGTERM to the main process, which stops its children."""
        if self.alive():
            self.kill(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int | None:
        """`terminate`, wait up to `timeout`, then SIGKILL whatever is left of the process group."""
        self.terminate()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGCONT)  # a held worker acts on the SIGTERM once it continues
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(max(0.1, timeout))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


@dataclass
class WorkerGroup:
    """The workers the harness started for one adapter variant, listening on `queue`."""

    queue: str
    workers: list[WorkerProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    """The environment the group and its enqueuer share (`Adapter.group_env`)."""
    close_env: Callable[[], None] = lambda: None

    @property
    def startup_seconds(self) -> float | None:
        times = [w.startup_seconds for w in self.workers]
        return max(times) if times and None not in times else None  # type: ignore[type-var]

    def alive(self) -> bool:
        return bool(self.workers) and all(w.alive() for w in self.workers)

    def root_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.alive()]

    def terminate(self) -> None:
        for w in self.workers:
            w.terminate()

    def hold(self, timeout: float = HOLD_TIMEOUT_SECONDS) -> bool:
        """Stop every process of the group where it is (SIGSTOP to each worker's process group), and wait
        until each is seen stopped: held workers consume nothing while a drain's batch is enqueued, yet
        keep their connections, so a drain starts from a full queue with workers already up. False when
        some process was not seen stopped within `timeout` (the run records it)."""
        for w in self.workers:
            if w.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(w.pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_stopped(pid) for w in self.workers for pid in w.pids()):
                return True
            time.sleep(0.005)
        return False

    def release(self) -> float:
        """Let held processes go on (SIGCONT to each worker's process group); the time they were released."""
        for w in self.workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(w.pid, signal.SIGCONT)
        return time.time()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every worker (all asked at once, then waited for), then release the group's environment."""
        self.terminate()
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.stop(max(0.1, deadline - time.monotonic()))
        self.close_env()
        self.close_env = lambda: None
