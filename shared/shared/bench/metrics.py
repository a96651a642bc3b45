"""What a run measures besides the audit: latencies, throughput over time, resources and database load.

- Latencies come from `job_events` (the acting process's wall clock, design section 6a): queue wait =
  first start - enqueued_at, execution = finish - its start, end to end = finish - enqueued_at; in the
  steady scenario both are counted from `scheduled_at`, the open-loop arrival time, so a sender that
  fell behind shows up as latency.
- Resources: a `ResourceSampler` thread samples, with psutil, the CPU time and memory (PSS) of each
  service's process tree, of the PostgreSQL backends each service opened (found in
  `pg_stat_activity` by `application_name`), and of the Redis or RabbitMQ server process.
- Database load: deltas of `pg_stat_database`, of WAL position, and dead rows in the `queue` tables.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
import psycopg

from shared import db
from shared.bench import statistics

log = logging.getLogger(__name__)

CDF_POINTS = 200


@dataclass(frozen=True)
class Timing:
    """The timestamps of one job that latencies are computed from (seconds, wall clock)."""

    seq: int
    enqueued_at: float | None
    scheduled_at: float | None
    first_start: float | None
    start: float | None
    finish: float | None


def job_timings(conn: psycopg.Connection, run_id: int) -> list[Timing]:
    """Per job of run `run_id`: enqueue, first start, and the start and finish of its completed attempt."""
    rows = conn.execute(
        """
        SELECT seq,
               min(enqueued_us) / 1e6::float8, min(scheduled_us) / 1e6::float8,
               min(ts_us) FILTER (WHERE kind = 'start') / 1e6::float8,
               min(ts_us) FILTER (WHERE kind = 'finish') / 1e6::float8
          FROM job_events WHERE run_id = %s GROUP BY seq
        """,
        (run_id,),
    ).fetchall()
    # The completed attempt's start: the last start before the first finish.
    starts = conn.execute(
        "SELECT seq, ts_us / 1e6::float8 FROM job_events WHERE run_id = %s AND kind = 'start' ORDER BY seq, ts_us",
        (run_id,),
    ).fetchall()
    by_seq: dict[int, list[float]] = defaultdict(list)
    for seq, ts in starts:
        by_seq[int(seq)].append(float(ts))
    out = []
    for seq, enq, sched, first, fin in rows:
        own = None
        if fin is not None:
            before = [t for t in by_seq.get(int(seq), []) if t <= fin]
            own = before[-1] if before else None
        out.append(Timing(int(seq), enq, sched, first, own, fin))
    return out


def latencies(timings: Iterable[Timing], *, from_scheduled: bool = False) -> dict[str, list[float]]:
    """Queue wait, execution and end-to-end latencies in milliseconds.

    `from_scheduled`: count queue wait and end to end from `scheduled_at` (steady scenario).
    """
    out: dict[str, list[float]] = {"queue_wait": [], "execution": [], "end_to_end": []}
    for t in timings:
        origin = t.scheduled_at if from_scheduled and t.scheduled_at is not None else t.enqueued_at
        if origin is not None and t.first_start is not None:
            out["queue_wait"].append((t.first_start - origin) * 1000)
        if t.start is not None and t.finish is not None:
            out["execution"].append((t.finish - t.start) * 1000)
        if origin is not None and t.finish is not None:
            out["end_to_end"].append((t.finish - origin) * 1000)
    return out


def latency_summary(lat: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    """p50, p95, p99, p99.9 of each latency kind."""
    return {kind: statistics.percentiles(vals) for kind, vals in lat.items()}


def cdf_points(values: Sequence[float], points: int = CDF_POINTS) -> list[tuple[float, float]]:
    """At most `points` (value, fraction <= value) pairs of the empirical CDF, tail kept."""
    s = sorted(values)
    n = len(s)
    if n == 0:
        return []
    if n <= points:
        idx = list(range(n))
    else:
        # Even spacing in rank, plus the last few ranks so p99.9 shows.
        idx = sorted({round(i * (n - 1) / (points - 1)) for i in range(points)} | set(range(n - 5, n)))
    return [(round(s[i], 4), round((i + 1) / n, 6)) for i in idx]


def throughput_series(
    finishes: Sequence[float], origin: float, bin_seconds: float | None = None
) -> dict[str, Any]:
    """Completions per second in consecutive bins from `origin` (the first start)."""
    if not finishes:
        return {"bin_seconds": bin_seconds or 1.0, "t": [], "jobs_per_second": []}
    span = max(finishes) - origin
    if bin_seconds is None:
        # About 50 bins, at least 50 ms wide.
        bin_seconds = max(0.05, round(span / 50, 2) or 0.05)
    nbins = int(span // bin_seconds) + 1
    counts = [0] * nbins
    for f in finishes:
        counts[max(0, min(nbins - 1, int((f - origin) // bin_seconds)))] += 1
    return {
        "bin_seconds": bin_seconds,
        "t": [round(i * bin_seconds, 4) for i in range(nbins)],
        "jobs_per_second": [round(c / bin_seconds, 2) for c in counts],
    }


def finish_times(conn: psycopg.Connection, run_id: int) -> list[float]:
    rows = conn.execute(
        "SELECT min(ts_us) / 1e6::float8 FROM job_events WHERE run_id = %s AND kind = 'finish' GROUP BY seq",
        (run_id,),
    ).fetchall()
    return sorted(float(r[0]) for r in rows)


# ---- resources -------------------------------------------------------------------------------------


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
            rows = self._conn.execute(
                "SELECT pid, application_name FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            ).fetchall()
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


# ---- database load ---------------------------------------------------------------------------------

DB_STATS = """
SELECT xact_commit + xact_rollback, tup_inserted, tup_updated, tup_deleted,
       pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')
  FROM pg_stat_database WHERE datname = current_database()
"""
DEAD_ROWS = "SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_live_tup), 0) FROM pg_stat_user_tables WHERE schemaname = 'queue'"


def db_snapshot(conn: psycopg.Connection) -> dict[str, float]:
    """Counters of the current database now (the statistics snapshot is refreshed first)."""
    try:
        # PostgreSQL 15+ flushes statistics lazily; force this backend's out, drop the cached snapshot.
        conn.execute("SELECT pg_stat_force_next_flush()")
    except psycopg.Error:
        pass
    conn.execute("SELECT pg_stat_clear_snapshot()")
    stats = conn.execute(DB_STATS).fetchone()
    rows = conn.execute(DEAD_ROWS).fetchone()
    if stats is None or rows is None:  # the current database always has a row; satisfy the types
        raise RuntimeError("pg_stat_database has no row for the current database")
    xacts, ins, upd, dele, wal = stats
    dead, live = rows
    return {
        "transactions": float(xacts),
        "rows_inserted": float(ins),
        "rows_updated": float(upd),
        "rows_deleted": float(dele),
        "wal_bytes": float(wal),
        "queue_dead_rows": float(dead),
        "queue_live_rows": float(live),
    }


def db_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters' deltas; dead and live rows are levels (after the run), not deltas."""
    out = {k: after[k] - before[k] for k in before if not k.startswith("queue_")}
    out["queue_dead_rows"] = after["queue_dead_rows"]
    out["queue_live_rows"] = after["queue_live_rows"]
    return out
