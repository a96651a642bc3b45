"""Faults injected mid-run (managed mode only): SIGKILL of a worker process, or a PostgreSQL restart.

The fault strikes from its own thread, so that it can land during a slow enqueue too: once a third of the
run's jobs finished (as the records show), or once a third of the work's expected busy time
(jobs x ms / slots) passed after both the end of the enqueue and the first job seen started, whichever
comes first. The records lag up to a second behind, longer than a fast queue needs for the whole run;
counting from the first start keeps a slow-starting worker from being struck before it ran anything.
The fault's time is taken right before the signal goes (docs/benchmark.md, "Faults").
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from shared import db, embedded
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
    ) -> None:
        super().__init__(name="fault", daemon=True)
        self.url = url
        self.run_id = run_id
        self.case = case
        self.group = group
        self.cluster = cluster
        self.should_stop = should_stop
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
                try:
                    row = conn.execute(store.q("events_started_finished"), {"run_id": self.run_id}).fetchone()
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

    def inject(self) -> dict[str, Any]:
        """Inject the case's fault now."""
        at = time.time()
        if self.case.fault == "kill_worker":
            pid, at = self._kill_one()
            log.info("fault: SIGKILL worker process %s", pid)
            return {"kind": "kill_worker", "pid": pid, "at": at}
        if self.case.fault == "restart_postgres" and self.cluster is not None:
            t0 = time.monotonic()
            self.cluster.restart()
            return {"kind": "restart_postgres", "at": at, "downtime_s": round(time.monotonic() - t0, 3)}
        return {"kind": self.case.fault, "skipped": True, "at": at}

    def _kill_one(self) -> tuple[int | None, float]:
        """SIGKILL the adapter's first choice among the processes that run jobs; the PID and the time the
        signal went (finding the victim takes milliseconds on a busy machine)."""
        adapter = adapters.get(self.case.adapter)
        for root in self.group.root_pids() if self.group else []:
            for victim in adapter.victims(root):
                try:
                    at = time.time()
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                return victim, at
        return None, time.time()
