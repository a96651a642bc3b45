"""Resources a run costs: CPU seconds and memory (PSS) per service, sampled while it runs.

A `ResourceSampler` thread samples, with psutil, each service's process tree (its root PIDs come from a
callable, since workers come and go), the PostgreSQL backends each service opened (found in
`pg_stat_activity` by `application_name` prefix) and the broker servers a variant loads (found by their
listening port). CPU counts from the first sight of each process, so a long-lived worker's start-up is
not charged to the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
import psycopg

from shared import db
from shared.bench import store

log = logging.getLogger(__name__)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def server_pid(port: int) -> int | None:
    """The PID of the local process that listens on TCP `port` (Redis, RabbitMQ), if it can be seen."""
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return int(c.pid)
    except (psutil.Error, OSError):
        return None
    return None


@dataclass(eq=False)
class ResourceSampler(threading.Thread):
    """Samples CPU seconds and PSS memory per service every `interval` seconds.

    `roots` maps a service name to a callable returning the root PIDs of its process trees;
    `backend_services` maps an `application_name` prefix to the service its backends count for;
    `servers` maps a broker name to its server PID.
    """

    database_url: str
    roots: dict[str, Callable[[], list[int]]]
    backend_services: dict[str, str] = field(default_factory=dict)
    servers: dict[str, int] = field(default_factory=dict)
    interval: float = 0.5

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, name="resource-sampler", daemon=True)
        self._stop_event = threading.Event()
        self._cpu_first: dict[tuple[str, int], float] = {}
        self._cpu_last: dict[tuple[str, int], float] = {}
        self.samples: list[dict[str, Any]] = []
        self._t0 = time.time()
        self._conn: psycopg.Connection | None = None

    def _backend_pids(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        if not self.backend_services:
            return out
        try:
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(self.database_url, role="harness-sampler", autocommit=True)
            rows = self._conn.execute(store.q("backends")).fetchall()
        except psycopg.Error:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return out
        for pid, app in rows:
            for prefix, service in self.backend_services.items():
                if app and app.startswith(prefix):
                    out[service].append(int(pid))
                    break
        return out

    def sample(self) -> None:
        """One sample: per service, CPU seconds so far (since the first sight of each process) and PSS."""
        groups: dict[str, list[psutil.Process]] = {}
        for service, fn in self.roots.items():
            procs: list[psutil.Process] = []
            for pid in fn():
                procs.extend(_tree(pid))
            groups[service] = procs
        for service, pids in self._backend_pids().items():
            groups.setdefault(f"postgres:{service}", []).extend(
                p for p in (_proc(pid) for pid in pids) if p is not None
            )
        for name, pid in self.servers.items():
            p = _proc(pid)
            if p is not None:
                groups[f"{name}-server"] = [p]
        row: dict[str, Any] = {"t": round(time.time() - self._t0, 3)}
        for service, procs in groups.items():
            mem = 0
            for p in procs:
                try:
                    with p.oneshot():
                        ct = p.cpu_times()
                        cpu = ct.user + ct.system
                        try:
                            mem += p.memory_full_info().pss
                        except (psutil.AccessDenied, AttributeError):
                            mem += p.memory_info().rss
                except psutil.Error:
                    continue
                key = (service, p.pid)
                self._cpu_first.setdefault(key, cpu)
                self._cpu_last[key] = cpu
            cpu_total = sum(self._cpu_last[k] - self._cpu_first[k] for k in self._cpu_last if k[0] == service)
            row[service] = {"cpu_s": round(cpu_total, 3), "mem_mb": round(mem / 2**20, 2)}
        self.samples.append(row)

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.sample()
            except Exception as exc:  # noqa: BLE001 - sampling must never end a run
                log.debug("resource sample failed: %s", exc)
            self._stop_event.wait(self.interval)

    def stop(self) -> dict[str, Any]:
        """Stop sampling; return the per-service totals and the time series."""
        self._stop_event.set()
        if self.is_alive():
            self.join(5)
        try:
            self.sample()
        except Exception:  # noqa: BLE001
            pass
        if self._conn is not None:
            self._conn.close()
        services: set[str] = set()
        for s in self.samples:
            services.update(k for k in s if k != "t")
        totals = {}
        for svc in sorted(services):
            mems = [s[svc]["mem_mb"] for s in self.samples if svc in s]
            cpus = [s[svc]["cpu_s"] for s in self.samples if svc in s]
            totals[svc] = {
                "cpu_s": max(cpus) if cpus else 0.0,
                "mem_mb_peak": max(mems) if mems else 0.0,
                "mem_mb_mean": round(sum(mems) / len(mems), 2) if mems else 0.0,
            }
        return {"totals": totals, "samples": self.samples}


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None
