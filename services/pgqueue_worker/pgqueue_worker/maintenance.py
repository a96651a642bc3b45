"""Maintenance, run only by the elected leader: rescuer, scheduler, cleaner, cron and the cached counts.

Every supervisor runs one `Maintenance` thread. It tries `pg_try_advisory_lock` on a connection of its
own every `leader_interval`; the one that holds the lock is the leader until that connection breaks
(a dead leader's lock is released by PostgreSQL when its session ends). The leader runs each service
on its interval, on a second connection. Services are small functions of (connection, config).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row, tuple_row

from pgqueue_worker.completer import storable
from pgqueue_worker.config import Config
from shared import db, pgqueue
from shared.pgqueue import cron, queries

log = logging.getLogger("pgqueue_worker.maintenance")

BATCH = 10_000
MAX_ROUNDS = 10  # a service handles at most this many batches per run, so the others are not starved


def _loop(conn: psycopg.Connection, name: str, params: dict) -> int:
    total = 0
    for _ in range(MAX_ROUNDS):
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(queries.get(name), params)
            n = int(cur.fetchone()[0]) if cur.description else cur.rowcount  # type: ignore[index]
        total += n
        if n < params.get("limit", BATCH):
            break
    return total


def rescue(conn: psycopg.Connection, cfg: Config) -> int:
    """Running jobs whose worker stopped heartbeating go back to available (the attempt counted)."""
    n = _loop(conn, "rescue", {"rescue_after": cfg.rescue_after, "limit": BATCH})
    if n:
        log.warning("rescued %d job(s) of workers that stopped heartbeating", n)
    return n


def schedule(conn: psycopg.Connection, cfg: Config) -> int:
    """Scheduled and retryable jobs whose time has come become available."""
    return _loop(conn, "schedule", {"limit": BATCH})


def clean(conn: psycopg.Connection, cfg: Config) -> int:
    """Delete finished jobs past their retention, and long-gone worker rows."""
    n = _loop(
        conn,
        "clean",
        {
            "completed_retention": cfg.completed_retention,
            "discarded_retention": cfg.discarded_retention,
            "cancelled_retention": cfg.cancelled_retention,
            "limit": BATCH,
        },
    )
    with conn.cursor() as cur:
        cur.execute(queries.get("clean_workers"), {"worker_retention": cfg.worker_retention})
    if n:
        log.info("cleaner deleted %d finished job(s)", n)
    return n


def run_cron(conn: psycopg.Connection, cfg: Config) -> int:
    """Enqueue one job per due tick of every enabled entry, advancing `last_tick` in the same transaction.

    Ticks older than `cron_catchup` seconds are skipped (after downtime the queue is not flooded).
    Every job carries the unique key `cron:<entry>:<tick>`. An entry that raises (its schedule never
    fires, its tick overflows, its job is refused) is set aside with its error (`fail_cron`), visible in
    the admin, and the others fire: one bad row must not stop the leader's maintenance.
    """
    fired = 0
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("lock_due_cron"))
        for entry in cur.fetchall():
            try:
                with conn.transaction():  # a savepoint: a failed entry leaves the others' ticks
                    fired += _fire(conn, cfg, entry)
            except Exception as exc:
                if _connection_lost(conn, exc):
                    raise
                error = storable(f"{type(exc).__name__}: {_first_line(exc)}")[:2000]
                log.error("cron entry %s set aside (register it again to resume): %s", entry["name"], error)
                cur.execute(queries.get("fail_cron"), {"name": entry["name"], "error": error})
    return fired


def _fire(conn: psycopg.Connection, cfg: Config, entry: dict) -> int:
    sched = cron.Schedule.parse(entry["schedule"])
    now: dt.datetime = entry["db_now"]
    oldest = now - dt.timedelta(seconds=cfg.cron_catchup)
    # ticks older than the catch-up window are skipped: do not even compute them
    ticks = sched.ticks_between(max(entry["last_tick"], oldest - dt.timedelta(seconds=1)), now)
    if not ticks:
        return 0
    fired = 0
    job_id = None
    for tick in ticks:
        if tick < oldest:
            continue
        job_id = (
            pgqueue.enqueue(
                conn,
                entry["task"],
                entry["params"],
                queue=entry["queue"],
                priority=entry["priority"],
                max_attempts=entry["max_attempts"],
                unique_key=cron.unique_key(entry["name"], tick),
                meta={"cron": entry["name"], "tick": tick.isoformat()},
            )
            or job_id
        )
        fired += 1
    conn.execute(
        queries.get("advance_cron"), {"name": entry["name"], "last_tick": ticks[-1], "job_id": job_id}
    )
    return fired


def _connection_lost(conn: psycopg.Connection | None, exc: BaseException) -> bool:
    """Whether `exc` means the connection is gone (reconnect), not that one statement or one row failed."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or conn is None or conn.broken


def _first_line(exc: BaseException) -> str:
    try:
        text = str(exc).strip()
    except Exception:  # noqa: BLE001 - an exception that cannot describe itself is still logged
        text = ""
    return text.splitlines()[0] if text else type(exc).__name__


def refresh_counts(conn: psycopg.Connection, cfg: Config) -> float:
    """Refresh the cached counts; return how long it took (ms), which stretches the next interval."""
    return float(pgqueue.refresh_counts(conn)["duration_ms"])


@dataclass
class Service:
    name: str
    fn: Callable[[psycopg.Connection, Config], object]
    interval: float
    next_at: float = 0.0
    runs: int = 0
    failures: int = 0


class Maintenance(threading.Thread):
    """Leader election plus the maintenance services; `is_leader` says whether this one leads."""

    def __init__(self, cfg: Config, database_url: str, supervisor_id: str) -> None:
        super().__init__(name="maintenance", daemon=True)
        self.cfg = cfg
        self.database_url = database_url
        self.supervisor_id = supervisor_id
        self.services = [
            Service("rescuer", rescue, cfg.rescue_interval),
            Service("scheduler", schedule, cfg.scheduler_interval),
            Service("cron", run_cron, cfg.cron_interval),
            Service("counts", refresh_counts, cfg.counts_interval),
            Service("cleaner", clean, cfg.cleaner_interval),
        ]
        self.is_leader = False
        self._stop_event = threading.Event()
        self._lock_conn: psycopg.Connection | None = None
        self._conn: psycopg.Connection | None = None
        self._next_election = 0.0
        self.rescue_from = 0.0  # monotonic: the rescuer's first run after this leader's election

    def _close(self) -> None:
        for c in (self._lock_conn, self._conn):
            if c is not None:
                try:
                    c.close()
                except psycopg.Error:
                    pass
        self._lock_conn = self._conn = None
        if self.is_leader:
            log.warning("leadership lost")
        self.is_leader = False

    def _elect(self) -> None:
        """Take the lock, or check that the connection holding it still lives."""
        if self._lock_conn is None or self._lock_conn.closed:
            self._lock_conn = db.connect(self.database_url, role="pgqueue-leader", autocommit=True)
        if self.is_leader:
            self._lock_conn.execute("SELECT 1")
            return
        row = self._lock_conn.execute(queries.get("try_leader")).fetchone()
        if row and row[0]:
            self.is_leader = True
            log.info(
                "%s is the leader: running rescuer, scheduler, cron, counts and cleaner", self.supervisor_id
            )
            now = time.monotonic()
            for s in self.services:
                s.next_at = now
            # The outage rule (docs/pgqueue.md): a new leader, or one back from a lost connection, rescues
            # only after rescue_after of its own watching. Heartbeat ages span a database outage; live
            # workers must get the time to heartbeat again before their jobs are taken from them.
            self.rescue_from = now + self.cfg.rescue_after
            for s in self.services:
                if s.name == "rescuer":
                    s.next_at = self.rescue_from

    def run(self) -> None:
        # The lock is released however the thread ends: a leader thread that died holding it would stop
        # maintenance for every worker of the cluster.
        try:
            self._run()
        finally:
            self._close()

    def _run_service(self, s: Service, conn: psycopg.Connection) -> None:
        """One run of one service. A failure that is not the connection's is logged and the service is
        tried again on its next interval; the other services go on."""
        started = time.monotonic()
        try:
            result = s.fn(conn, self.cfg)
        except Exception as exc:
            if _connection_lost(conn, exc):
                raise
            s.failures += 1
            log.exception("maintenance service %s failed; it runs again in %.1fs", s.name, s.interval)
            s.next_at = time.monotonic() + s.interval
            return
        s.runs += 1
        took = time.monotonic() - started
        interval = s.interval
        if s.name == "counts":
            # a big table makes the aggregate slow: never spend more than ~5% on it
            interval = max(s.interval, 20 * float(result) / 1000.0)  # type: ignore[arg-type]
        s.next_at = time.monotonic() + max(interval, took)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop_event.is_set():
            now = time.monotonic()
            try:
                if now >= self._next_election:
                    self._elect()
                    self._next_election = now + self.cfg.leader_interval
                if self.is_leader:
                    if self._conn is None or self._conn.closed:
                        self._conn = db.connect(
                            self.database_url, role="pgqueue-maintenance", autocommit=True
                        )
                    for s in self.services:
                        if time.monotonic() >= s.next_at:
                            self._run_service(s, self._conn)
                backoff = 0.1
            except Exception as exc:
                log.warning(
                    "maintenance lost its connection, retrying in %.1fs: %s", backoff, _first_line(exc)
                )
                self._close()
                self._next_election = 0.0
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            wait = self._next_election - time.monotonic()
            if self.is_leader:
                wait = min([wait, *(s.next_at - time.monotonic() for s in self.services)])
            self._stop_event.wait(max(0.01, wait))

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(10.0)
