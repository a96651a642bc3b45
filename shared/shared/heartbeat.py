"""Worker heartbeats (docs/architecture.md, "The job contract"): every worker of both queues upserts its row in `queue.workers`.

The row says who the worker is (host, PID, queues, processes, slots, the machine's CPUs and memory in
`info["machine"]`, and for Celery the broker, pool, concurrency, configuration and polling interval in
`info`) and how recent its spool load is
(`spool_loaded_at`). The admin pages, the attached mode and pgqueue's rescuer read it, and so do the
workers' health checks (`check`, `serve_health`, `health_main`; docs/deploy.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared import sqlfile, workloads

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0
QUERIES = sqlfile.Queries(Path(__file__).with_name("sql") / "heartbeat.sql")
"""The named queries of `queue.workers` (`sql/heartbeat.sql`): every statement of the project's on the table
but pgqueue's own (docs/architecture.md, "SQL")."""
READY_CHANNEL = "queue_workers"
"""A worker's first heartbeat also NOTIFYs this channel (payload: its id), so that whoever waits for it to
be ready (the benchmark harness) is woken at once instead of polling `queue.workers`. The channel is
named in `sql/heartbeat.sql` (`worker_beat`, `listen_workers`); tests/unit/test_heartbeat_sql.py holds the
two equal."""


def rows(conn: psycopg.Connection, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of the heartbeat query `name` on `conn`, as dicts."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(QUERIES[name], params)
        return cur.fetchall()


def tell_ready(fd: int) -> int:
    """In a worker's job process: write one byte to the readiness pipe `fd` its main process gave it (the
    main process heartbeats from then on) and close it; returns -1, the descriptor's new value. A main
    process that is gone is not the child's concern."""
    if fd >= 0:
        try:
            os.write(fd, b"r")
            os.close(fd)
        except OSError:
            pass
    return -1


def new_worker_id(adapter: str) -> str:
    """A unique worker id: adapter, host, PID and a random suffix (PIDs are reused)."""
    from shared import settings

    return f"{adapter}-{settings.host_name()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _host() -> str:
    from shared import settings

    return settings.host_name()


def machine() -> dict[str, Any]:
    """The machine a worker runs on, as its heartbeat tells it: what an attached run records as its fleet."""
    import psutil

    from shared import settings

    return {
        "cpus": os.cpu_count(),
        "memory_mb": round(psutil.virtual_memory().total / 2**20),
        "fly_machine_id": settings.fly_machine_id(),
    }


@dataclass
class WorkerIdentity:
    """What a worker tells about itself in its heartbeat."""

    id: str
    adapter: str
    queues: list[str]
    processes: int = 1
    slots: int = 1
    info: dict[str, Any] = field(default_factory=dict)
    host: str = field(default_factory=_host)
    pid: int = field(default_factory=os.getpid)
    machine: dict[str, Any] = field(default_factory=machine)
    workload_modules: list[str] = field(default_factory=lambda: workloads.module_names())
    """The user's workload modules this worker imports (`BENCH_WORKLOADS`): attached mode runs a workload of
    the user's only on workers that announce its module."""


class Heartbeat(threading.Thread):
    """Upserts the worker's row every `interval` seconds; marks it stopped on `stop()`."""

    def __init__(
        self, identity: WorkerIdentity, database_url: str, interval: float = DEFAULT_INTERVAL
    ) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.identity = identity
        self.database_url = database_url
        self.interval = interval
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self.spool_loaded_at: dt.datetime | None = None
        self.last_error: str | None = None
        self._announced = False

    def mark_spool_loaded(self, wall_time: float) -> None:
        """Called by the spool loader: everything recorded before `wall_time` is in the database."""
        self.spool_loaded_at = dt.datetime.fromtimestamp(wall_time, dt.UTC)

    def beat(self) -> bool:
        """One heartbeat; returns False (and reconnects next time) when the database did not answer."""
        from shared import db

        i = self.identity
        params = {
            "id": i.id,
            "adapter": i.adapter,
            "host": i.host,
            "pid": i.pid,
            "queues": i.queues,
            "processes": i.processes,
            "slots": i.slots,
            "info": Jsonb({**i.info, "machine": i.machine, "workload_modules": i.workload_modules}),
            "spool_loaded_at": self.spool_loaded_at,
        }
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = db.connect(self.database_url, role=f"{i.adapter}-heartbeat", autocommit=True)
                self._conn.execute(QUERIES["worker_beat"], {**params, "announce": not self._announced})
                self._announced = True
            except psycopg.Error as exc:
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("heartbeat failed, will retry: %s", self.last_error)
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                return False
        self.last_error = None
        return True

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        """Stop beating and mark the row stopped."""
        self._stop_event.set()
        if self.is_alive():
            self.join(self.interval + 5)
        self.beat()
        with self._lock:
            try:
                if self._conn is not None:
                    self._conn.execute(QUERIES["worker_stopped"], {"id": self.identity.id})
                    self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None


# ---- Health of a worker, from its heartbeat --------------------------------------------------------------
# A deployed worker takes no traffic, so nothing else tells a platform that it works: it is healthy while its
# row is not stopped and its heartbeat is recent. A worker that exits (exit 2: its broker or database does
# not answer) or whose heartbeat thread cannot reach the database fails the check.

# A heartbeat older than this is stale, 7 beats of 2 s: the web's pages pass it as `within` (services/web/web/runs.py,
# web/celery_info.py) to say which workers are fresh.
HEALTH_MAX_AGE = 15.0


@dataclass(frozen=True)
class Health:
    """One answer of a health check: healthy or not, and one line saying why."""

    healthy: bool
    reason: str
    worker_id: str | None = None
    heartbeat_age_s: float | None = None


def check(
    database_url: str,
    adapter: str,
    *,
    host: str | None = None,
    pid: int | None = None,
    max_age: float = HEALTH_MAX_AGE,
) -> Health:
    """Healthy when a worker of `adapter` on `host` (default: this host; with `pid`, that very process)
    has a row that is not stopped and heartbeated within `max_age` seconds."""
    from shared import db

    host = host or _host()
    who = f"{adapter} worker on {host}" + (f" with pid {pid}" if pid else "")
    try:
        with db.connect(
            database_url,
            role=f"{adapter}-health",
            autocommit=True,
            connect_timeout=3,
            options="-c statement_timeout=2000",
        ) as conn:
            row = conn.execute(
                QUERIES["worker_freshest_running"], {"adapter": adapter, "host": host, "pid": pid}
            ).fetchone()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Health(False, f"cannot read the heartbeat of the {who}: {first}")
    if row is None:
        return Health(False, f"no running {who} in queue.workers")
    worker_id, age = row
    if age > max_age:
        return Health(
            False, f"{worker_id}: last heartbeat {age:.0f} s ago (stale after {max_age:g} s)", worker_id, age
        )
    return Health(True, f"{worker_id}: last heartbeat {age:.1f} s ago", worker_id, age)


class _HealthHandler(BaseHTTPRequestHandler):
    server: _HealthServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0] != "/up":
            self._answer(404, {"error": "not found; GET /up"})
            return
        health = self.server.probe()
        self._answer(
            200 if health.healthy else 503, {"status": "up" if health.healthy else "down", **asdict(health)}
        )

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Silent: a check every 15 s would fill the worker's log."""


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], probe: Callable[[], Health]) -> None:
        super().__init__(address, _HealthHandler)
        self.probe = probe


def serve_health(port: int, probe: Callable[[], Health], host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 - the platform's checks come from outside the machine
    """Answer `GET /up` on `port` from `probe()` (200 healthy, 503 not) in a thread of this process."""
    server = _HealthServer((host, port), probe)
    # Celery's prefork children are forked from this process: they must not hold the listening socket,
    # or the port would stay open after the worker itself has exited.
    os.register_at_fork(after_in_child=server.socket.close)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def health_main(adapter: str, run_worker: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """`bench-<adapter>-health`: check this host's worker once, or (`--serve PORT`) run the worker in this
    process and answer `GET /up` on PORT for the platform's checks, which can only ask over HTTP or TCP."""
    from shared import settings

    p = argparse.ArgumentParser(
        prog=f"bench-{adapter}-health",
        description=f"Exit 0 when a {adapter} worker on this host heartbeats, 1 when not (Docker HEALTHCHECK). "
        f"With --serve PORT: run the {adapter} worker in this process and answer GET /up on PORT "
        "(200 while its heartbeat is recent, 503 when not; nothing once it has exited).",
    )
    p.add_argument(
        "--max-age", type=float, default=HEALTH_MAX_AGE, help="seconds before a heartbeat is stale"
    )
    p.add_argument("--serve", type=int, metavar="PORT", help="run the worker here and answer GET /up on PORT")
    p.add_argument("worker_args", nargs="*", help="after --: the worker's own flags (with --serve)")
    args = p.parse_args(argv)
    if args.max_age <= 0:
        p.error("--max-age must be more than 0 seconds")
    if args.worker_args and args.serve is None:
        p.error("worker flags need --serve PORT")
    if args.serve is not None and not 0 < args.serve < 65536:
        p.error(f"--serve takes a TCP port (1-65535), got {args.serve}")
    try:
        url = settings.load().queue_database_url
    except settings.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.serve is None:
        health = check(url, adapter, max_age=args.max_age)
        print(("healthy: " if health.healthy else "unhealthy: ") + health.reason)
        return 0 if health.healthy else 1
    pid = os.getpid()  # the worker heartbeats from this very process
    try:
        server = serve_health(args.serve, lambda: check(url, adapter, pid=pid, max_age=args.max_age))
    except OSError as exc:
        print(f"error: cannot listen on port {args.serve}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        return run_worker(args.worker_args)
    finally:
        server.shutdown()
        server.server_close()
