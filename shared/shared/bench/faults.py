"""Faults injected mid-run (managed mode only): SIGKILL of a worker process that holds a running job,
SIGKILL of a whole worker (main process and children, as a lost machine; a fresh worker replaces it), or a
PostgreSQL restart.

The fault strikes from its own thread, so that it can land during a slow enqueue too: once a third of the
run's jobs finished, or once a third of the work's expected busy time (jobs x ms / slots) passed after both
the end of the enqueue and the first job seen started, whichever comes first. Progress is read from the
spool files of the group's job-running processes, which do not lag (the loaded records lag up to a second,
longer than a fast queue needs for the whole run); counting from the first start keeps a slow-starting
worker from being struck before it ran anything.
The fault's time is taken right before the signal goes (docs/benchmark.md, "Faults").
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from shared import db, embedded, spool
from shared.bench import adapters, store
from shared.bench.spec import Case
from shared.bench.workers import WorkerGroup

log = logging.getLogger(__name__)

FAULT_AT = 1 / 3
"""A fault strikes once this fraction of the run's jobs has finished (or of its expected busy time passed)."""


class FaultInjector(threading.Thread):
    """Watches one run's records and injects its case's fault once; `info` says what happened."""

    def __init__(
        self,
        url: str,
        run_id: int,
        case: Case,
        group: WorkerGroup | None,
        cluster: embedded.EmbeddedCluster | None,
        should_stop: Callable[[], bool],
        spool_dir: Path | None = None,
        replace: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="fault", daemon=True)
        self.url = url
        self.run_id = run_id
        self.case = case
        self.group = group
        self.cluster = cluster
        self.should_stop = should_stop
        self.spool_dir = spool_dir
        self.replace = replace
        self.enqueue_done_at: float | None = None
        self.info: dict[str, Any] = {}
        self._done = threading.Event()

    def finish(self, timeout: float = 10.0) -> dict[str, Any]:
        """Stop watching (the run is over) and return what the fault did, if it struck."""
        self._done.set()
        if self.is_alive():
            self.join(timeout)
        return self.info

    def run(self) -> None:
        case = self.case
        busy = case.jobs * float(case.params.get("ms", 0) or 0) / 1000.0 / max(1, case.total_slots)
        try:
            conn = db.connect(self.url, role="harness-fault", autocommit=True)
        except psycopg.Error:
            return
        first_start_seen: float | None = None
        with conn:
            while not self._done.is_set() and not self.should_stop():
                own = self._spool_progress()
                if own is not None:
                    started, done = own
                else:
                    try:
                        row = conn.execute(
                            store.q("events_started_finished"), {"run_id": self.run_id}
                        ).fetchone()
                    except psycopg.Error:
                        return
                    started, done = row or (0, 0)
                if started and first_start_seen is None:
                    first_start_seen = time.time()
                due = (
                    self.enqueue_done_at is not None
                    and first_start_seen is not None
                    and busy > 0
                    and time.time() >= max(self.enqueue_done_at, first_start_seen) + busy * FAULT_AT
                )
                if done >= case.jobs * FAULT_AT or due:
                    self.info.update(self.inject())
                    self.info["jobs_started_before"] = int(started)
                    self.info["jobs_finished_before"] = int(done)
                    return
                time.sleep(0.02)

    def _spool_progress(self) -> tuple[int, int] | None:
        """Jobs of this run started and finished, read from the spool files of the group's job-running
        processes: they lag nothing, where `job_events` lags up to the loaders' second, longer than a fast
        queue needs for the whole run. None without a spool directory or a group (then `job_events`)."""
        if self.spool_dir is None or self.group is None:
            return None
        adapter = adapters.get(self.case.adapter)
        started: set[str] = set()
        finished: set[str] = set()
        for root in self.group.root_pids():
            for pid in adapter.victims(root):
                for path in self.spool_dir.glob(f"*-{pid}.spool"):
                    s, f, _ = _spool_jobs(path, self.run_id)
                    started |= s
                    finished |= f
        return len(started), len(finished)

    def inject(self) -> dict[str, Any]:
        """Inject the case's fault now."""
        at = time.time()
        if self.case.fault in ("kill_worker", "kill_whole_worker"):
            whole = self.case.fault == "kill_whole_worker"
            pid, at, held = self._kill_one(whole)
            log.info("fault: SIGKILL %s %s", "the whole worker of" if whole else "worker process", pid)
            info: dict[str, Any] = {"kind": self.case.fault, "pid": pid, "at": at, "victim_held_job": held}
            if whole and self.replace is not None:
                # A lost machine is replaced: a fresh worker takes the queue (and rescues what it can).
                t0 = time.monotonic()
                self.replace()
                info["replacement_ready_s"] = round(time.monotonic() - t0, 3)
            return info
        if self.case.fault == "restart_postgres" and self.cluster is not None:
            t0 = time.monotonic()
            self.cluster.restart()
            return {"kind": "restart_postgres", "at": at, "downtime_s": round(time.monotonic() - t0, 3)}
        return {"kind": self.case.fault, "skipped": True, "at": at}

    def _kill_one(self, whole: bool = False) -> tuple[int | None, float, bool]:
        """SIGKILL a process that holds a running job of this run (`choose_victim`: one rule for every
        adapter), or with `whole` its worker's whole process group (main process and children); the PID
        and the time the signal went, and whether the victim held a job (False only when no process was
        seen holding one within `VICTIM_WAIT_SECONDS`: the adapter's first choice is killed then)."""
        adapter = adapters.get(self.case.adapter)
        roots = self.group.root_pids() if self.group else []
        deadline = time.monotonic() + VICTIM_WAIT_SECONDS
        while True:
            candidates = [(root, v) for root in roots for v in adapter.victims(root)]
            victim = choose_victim([v for _, v in candidates], self.spool_dir, self.run_id)
            if victim is not None or time.monotonic() >= deadline or not candidates:
                break
            time.sleep(0.01)
        held = victim is not None
        if victim is None and candidates:
            victim = candidates[0][1]
        if victim is None:
            return None, time.time(), False
        root = next(r for r, v in candidates if v == victim)
        try:
            at = time.time()
            if whole:
                os.killpg(root, signal.SIGKILL)
            else:
                os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            return None, time.time(), False
        return (root if whole else victim), at, held


VICTIM_WAIT_SECONDS = 2.0
"""How long the fault looks for a process that holds a running job before it takes the adapter's first choice."""


def _spool_jobs(path: Path, run_id: int) -> tuple[set[str], set[str], set[tuple[str, str, str]]]:
    """What the spool file at `path` shows of run `run_id`: the seqs started, the seqs finished, and the
    attempts started and not yet finished or failed (the spool is written as a job starts and ends)."""
    started: set[str] = set()
    finished: set[str] = set()
    open_attempts: set[tuple[str, str, str]] = set()
    try:
        data = spool.complete_lines(_written(path))
    except OSError:
        return started, finished, open_attempts
    for raw in data.decode(errors="replace").splitlines():
        rec = spool.parse_line(raw)
        if rec is None or rec["run_id"] != str(run_id):
            continue
        seq = str(rec["seq"])
        key = (seq, str(rec["attempt"]), str(rec["worker_id"]))
        if rec["kind"] == "start":
            started.add(seq)
            open_attempts.add(key)
        else:
            if rec["kind"] == "finish":
                finished.add(seq)
            open_attempts.discard(key)
    return started, finished, open_attempts


def _written(path: Path, chunk: int = 1 << 16) -> bytes:
    """The written part of a spool file: read up to its unwritten tail (NUL bytes; the recorder extends
    the file ahead of its writes by a megabyte), not the whole mapped size, since the fault polls it."""
    out = bytearray()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            nul = block.find(b"\0")
            if nul >= 0:
                out += block[:nul]
                break
            out += block
    return bytes(out)


def running_jobs(path: Path, run_id: int) -> int:
    """How many jobs of run `run_id` the spool file at `path` shows started and not yet finished or failed:
    the jobs its process holds right now."""
    return len(_spool_jobs(path, run_id)[2])


def choose_victim(candidates: list[int], spool_dir: Path | None, run_id: int) -> int | None:
    """The fault's victim, by one rule for every adapter: the first of `candidates` (the adapter's
    processes that run jobs, `Adapter.victims`) whose spool shows a job of this run running, read from
    the spool files themselves (`<worker id>-<pid>.spool`), which lag nothing; None when none holds one."""
    if spool_dir is None:
        return None
    for pid in candidates:
        if any(running_jobs(p, run_id) for p in spool_dir.glob(f"*-{pid}.spool")):
            return pid
    return None
