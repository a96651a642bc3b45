"""The two queues as the harness sees them: how to start their workers, and how to enqueue.

An adapter knows one queue's batch API (`bulk`) and its one-job API (`one_by_one`), attaches `meta`
(`run_id`, `seq`, `enqueued_at`, `scheduled_at`) to every job, and in managed mode starts and stops
its workers as subprocesses in their own process groups. Celery is reached through `shared.celery_app`
(never the worker's code); pgqueue through its client API `shared.pgqueue`.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from shared import celery_app, db, settings
from shared.bench.spec import Case

BIN = Path(sys.executable).parent
BULK_BATCH = 5000
"""Jobs per `enqueue_many` call (pgqueue) in bulk mode."""


class AdapterUnavailable(RuntimeError):
    """The queue cannot be used here (its engine is missing, or its broker does not answer)."""


def pgqueue_module() -> Any:
    """`shared.pgqueue`, or `AdapterUnavailable` when the engine is not installed."""
    try:
        mod = importlib.import_module("shared.pgqueue")
    except ImportError:
        raise AdapterUnavailable("pgqueue engine not available (shared.pgqueue is missing)") from None
    if not hasattr(mod, "enqueue_many") or not hasattr(mod, "JobSpec"):
        raise AdapterUnavailable("pgqueue engine not available (shared.pgqueue has no enqueue_many)")
    return mod


@functools.cache
def pgqueue_worker_available() -> str | None:
    """None when `bench-pgqueue-worker` is the real engine, else why not.

    The foundation's stub only heartbeats; the engine's worker has the `--no-record` flag the paired
    overhead runs need, which tells them apart without importing the service.
    """
    try:
        pgqueue_module()
    except AdapterUnavailable as exc:
        return str(exc)
    exe = BIN / "bench-pgqueue-worker"
    try:
        out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pgqueue engine not available ({exe}: {exc})"
    if "--no-record" not in out:
        return "pgqueue engine not available (bench-pgqueue-worker is the foundation's stub)"
    return None


def meta(run_id: int, seq: int, enqueued_at: float, scheduled_at: float | None = None) -> dict[str, Any]:
    """The job contract's `meta` (design section 6a)."""
    m: dict[str, Any] = {"run_id": run_id, "seq": seq, "enqueued_at": enqueued_at}
    if scheduled_at is not None:
        m["scheduled_at"] = scheduled_at
    return m


# ---- workers ---------------------------------------------------------------------------------------


@dataclass
class WorkerGroup:
    """The workers of one adapter configuration that the harness started (managed mode)."""

    case: Case
    queue: str
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)
    started_at: float = 0.0
    ready_at: float = 0.0
    log_path: Path | None = None

    @property
    def startup_seconds(self) -> float:
        return self.ready_at - self.started_at

    def root_pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def all_pids(self) -> list[int]:
        out = []
        for pid in self.root_pids():
            try:
                root = psutil.Process(pid)
                out.append(pid)
                out.extend(c.pid for c in root.children(recursive=True))
            except psutil.Error:
                continue
        return out

    def kill_one(self) -> tuple[int, float] | None:
        """SIGKILL one worker process: a pool child or pgqueue worker process when there is one
        (the process that runs jobs), else the worker's main process. Returns the PID killed and the
        wall-clock time the signal was sent (finding the victim takes milliseconds on a busy machine)."""
        for pid in self.root_pids():
            try:
                children = psutil.Process(pid).children(recursive=True)
            except psutil.Error:
                continue
            victim = children[0].pid if children else pid
            try:
                at = time.time()
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            return victim, at
        return None

    def terminate(self) -> None:
        """SIGTERM each worker's main process: its graceful shutdown stops its children."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def stop(self, timeout: float = 30.0) -> None:
        """`terminate`, wait up to `timeout`, then SIGKILL whatever is left of each process group."""
        self.terminate()
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _killpg(p.pid, signal.SIGKILL)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for f in self.logs:
            f.close()
        self.logs.clear()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def worker_argv(case: Case, queue: str) -> list[str]:
    """The command line of one managed worker for `case`, listening on `queue`."""
    if case.adapter == "celery":
        pool, concurrency = case.celery_pool()
        argv = [
            str(BIN / "bench-celery-worker"),
            "--broker",
            case.broker or "postgres",
            "--config",
            case.celery_config or "defaults",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--queues",
            queue,
            "--loglevel",
            "WARNING",
        ]
    else:
        argv = [
            str(BIN / "bench-pgqueue-worker"),
            "--processes",
            str(case.processes),
            "--threads",
            str(case.slots),
            "--queues",
            queue,
            "--loglevel",
            "WARNING",
        ]
    if not case.recording:
        argv.append("--no-record")
    return argv


def spawn_workers(case: Case, queue: str, env: dict[str, str], log_dir: Path) -> WorkerGroup:
    """Start the worker for `case` in its own process group (see `wait_ready`)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    group = WorkerGroup(case, queue, started_at=time.time())
    group.log_path = log_dir / f"{case.who}-{queue}.log"
    f = open(group.log_path, "ab")
    group.logs.append(f)
    proc = subprocess.Popen(
        worker_argv(case, queue),
        env=env,
        stdout=f,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    group.procs.append(proc)
    return group


def wait_ready(
    group: WorkerGroup,
    database_url: str,
    timeout: float = 120.0,
    should_stop: Callable[[], bool] = lambda: False,
) -> WorkerGroup:
    """Return once the group's worker heartbeats; `AdapterUnavailable` with its log's tail otherwise."""
    proc = group.procs[0]
    deadline = time.monotonic() + timeout
    with db.connect(database_url, role="harness", autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM queue.workers WHERE pid = %s AND stopped_at IS NULL "
                "AND heartbeat_at > to_timestamp(%s) - interval '1 second'",
                (proc.pid, group.started_at),
            ).fetchone()
            if row and row[0] and _processes_ready(conn, group):
                break
            if should_stop():
                group.stop(5)
                raise KeyboardInterrupt
            if proc.poll() is not None or time.monotonic() > deadline:
                group.stop(5)
                tail = group.log_path.read_text(errors="replace")[-1500:].strip() if group.log_path else ""
                raise AdapterUnavailable(
                    f"the {group.case.who} worker did not start within {timeout:.0f} s "
                    f"(exit code {proc.returncode}); its log ({group.log_path}) ends with:\n{tail}"
                )
            time.sleep(0.1)
    group.ready_at = time.time()
    return group


def _processes_ready(conn: Any, group: WorkerGroup) -> bool:
    """pgqueue's supervisor heartbeats before its processes can run jobs: wait for every process's own
    heartbeat too (Celery's worker heartbeats only once its pool is up)."""
    if group.case.adapter != "pgqueue":
        return True
    row = conn.execute(
        "SELECT count(*) FROM queue.workers p JOIN queue.workers s ON p.id LIKE s.id || '-%%' "
        "WHERE s.pid = %s AND s.stopped_at IS NULL AND p.stopped_at IS NULL "
        "AND p.info->>'role' = 'process' AND p.heartbeat_at > to_timestamp(%s) - interval '1 second'",
        (group.procs[0].pid, group.started_at),
    ).fetchone()
    return bool(row) and row[0] >= group.case.processes


def start_workers(
    case: Case,
    queue: str,
    env: dict[str, str],
    log_dir: Path,
    database_url: str,
    timeout: float = 120.0,
    should_stop: Callable[[], bool] = lambda: False,
) -> WorkerGroup:
    """Start the worker for `case` and return once its heartbeat is in."""
    return wait_ready(spawn_workers(case, queue, env, log_dir), database_url, timeout, should_stop)


# ---- enqueue ---------------------------------------------------------------------------------------


class Enqueuer:
    """Sends the jobs of one run; `send_one` for one_by_one and open-loop arrivals, `send_many` for bulk."""

    def __init__(self, case: Case, queue: str, s: settings.Settings) -> None:
        self.case = case
        self.queue = queue
        self.settings = s
        self.workload = case.workload
        self.params = dict(case.params)
        if case.adapter == "celery":
            self.app = celery_app.make_app(case.broker or "postgres", case.celery_config or "defaults", s=s)
            self._producer_cm: Any = None
            self._producer: Any = None
        else:
            self.pgq = pgqueue_module()
            self.conn = db.connect(s.queue_database_url, role="harness-enqueue")

    def send_one(self, run_id: int, seq: int, scheduled_at: float | None = None) -> None:
        """One job in its own transaction (pgqueue) or its own publish (Celery)."""
        m = meta(run_id, seq, time.time(), scheduled_at)
        if self.case.adapter == "celery":
            # Celery's everyday call: send_task, which takes a producer from the app's pool each time.
            celery_app.send(self.app, self.workload, self.params, m, queue=self.queue)
        else:
            with self.conn.transaction():
                self.pgq.enqueue(self.conn, self.workload, self.params, queue=self.queue, meta=m)

    def send_many(self, run_id: int, seqs: Sequence[int]) -> None:
        """Many jobs through the fastest batch API the queue offers.

        pgqueue: `enqueue_many` (COPY, one NOTIFY) per batch of `BULK_BATCH`. Celery has no batch
        publish: one producer (one connection, one channel) publishes every message in a loop.
        """
        if self.case.adapter == "celery":
            with self.app.producer_or_acquire() as producer:
                for seq in seqs:
                    m = meta(run_id, seq, time.time())
                    celery_app.send(
                        self.app, self.workload, self.params, m, queue=self.queue, producer=producer
                    )
            return
        for i in range(0, len(seqs), BULK_BATCH):
            batch = seqs[i : i + BULK_BATCH]
            now = time.time()
            jobs = [
                self.pgq.JobSpec(self.workload, self.params, queue=self.queue, meta=meta(run_id, s, now))
                for s in batch
            ]
            with self.conn.transaction():
                self.pgq.enqueue_many(self.conn, jobs)

    def close(self) -> None:
        if self.case.adapter == "celery":
            try:
                self.app.close()
            except Exception:  # noqa: BLE001
                pass
        else:
            self.conn.close()
