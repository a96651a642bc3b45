"""Worker heartbeats (docs/architecture.md, "The job contract"): every worker of both queues upserts its row in `queue.workers`.

The row says who the worker is (host, PID, queues, processes, slots, and for Celery the broker, pool,
concurrency, configuration and polling interval in `info`) and how recent its spool load is
(`spool_loaded_at`). The admin pages, the attached mode and pgqueue's rescuer read it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0

UPSERT = """
INSERT INTO queue.workers (id, adapter, host, pid, queues, processes, slots, info, started_at, heartbeat_at,
                           spool_loaded_at)
VALUES (%(id)s, %(adapter)s, %(host)s, %(pid)s, %(queues)s, %(processes)s, %(slots)s, %(info)s, now(), now(),
        %(spool_loaded_at)s)
ON CONFLICT (id) DO UPDATE
   SET heartbeat_at = now(),
       info = EXCLUDED.info,
       queues = EXCLUDED.queues,
       spool_loaded_at = coalesce(EXCLUDED.spool_loaded_at, queue.workers.spool_loaded_at),
       stopped_at = NULL
"""


def new_worker_id(adapter: str) -> str:
    """A unique worker id: adapter, host, PID and a random suffix (PIDs are reused)."""
    return f"{adapter}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class WorkerIdentity:
    """What a worker tells about itself in its heartbeat."""

    id: str
    adapter: str
    queues: list[str]
    processes: int = 1
    slots: int = 1
    info: dict[str, Any] = field(default_factory=dict)
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


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
            "info": Jsonb(i.info),
            "spool_loaded_at": self.spool_loaded_at,
        }
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = db.connect(self.database_url, role=f"{i.adapter}-heartbeat", autocommit=True)
                self._conn.execute(UPSERT, params)
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
                    self._conn.execute(
                        "UPDATE queue.workers SET stopped_at = now() WHERE id = %s", (self.identity.id,)
                    )
                    self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None
