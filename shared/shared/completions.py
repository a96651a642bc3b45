"""A worker's own count of the jobs it completed, for a queue whose tables cannot tell (docs/benchmark.md,
"Recording overhead").

The harness tells the end of a run from the queue's own tables where it can (`Adapter.busy`,
`Adapter.completed`): pgqueue's jobs, procrastinate's job statuses, pgqueuer's log. Celery keeps nothing
of the kind with its result backend off, so its worker counts, and the count is the same signal with
recording on and off, for both runs of the recording pair:

- each process that runs jobs keeps a `Counter`: one 8-byte integer in a file of its own beside its spool
  (`<worker id>-<pid>.count`), mapped into memory; a completed job is one aligned store into the map under
  a lock, with no system call and no database round trip;
- the worker's main process, which consumes no job, runs one `Flusher` thread over all its processes' files
  (a killed process's count stays in its file): every `interval` (20 ms, the harness's poll) it adds them up
  and, when the sum moved, writes it to `queue.worker_completions`, one row per worker. The harness sums the
  rows of the workers on its queue.

With recording off nothing is written to the spool; the count goes on, as pgqueue's completions go on into
its table.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from pathlib import Path

import psycopg

from shared import spool

log = logging.getLogger(__name__)

SUFFIX = ".count"
FLUSH_INTERVAL = 0.02
"""Seconds between two sums of a worker's counts: the harness polls the end of a run every 20 ms too."""
RESCAN_INTERVAL = 0.5
"""Seconds between two looks for new count files (a replaced pool child starts one)."""

UPSERT = """
INSERT INTO queue.worker_completions (worker_id, queues, completed, updated_at)
VALUES (%(worker_id)s, %(queues)s, %(completed)s, now())
ON CONFLICT (worker_id) DO UPDATE
   SET completed = EXCLUDED.completed, queues = EXCLUDED.queues, updated_at = now()
"""


def path_for(worker_id: str, pid: int | None = None) -> Path:
    """The count file of one process of worker `worker_id`, beside its spool file."""
    return spool.spool_dir() / f"{worker_id}-{pid or os.getpid()}{SUFFIX}"


class Counter:
    """This process's count of completed jobs, in a file of its own (`path_for`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)
        # A native, aligned 8-byte integer: one store to write it, one load to read it, never torn
        # (`struct.pack_into` with an explicit byte order writes byte by byte).
        self._value = memoryview(self._map).cast("q")
        # A process that got the PID of a dead one of the same worker goes on from its count.
        self.count = int(self._value[0])
        self._lock = threading.Lock()  # a threaded pool's jobs complete in several threads

    def add(self) -> None:
        with self._lock:
            self.count += 1
            self._value[0] = self.count


_current: Counter | None = None


def install(counter: Counter | None) -> None:
    """Make `counter` this process's count."""
    global _current
    _current = counter


def completed() -> None:
    """One job of this process completed (nothing when the process keeps no count)."""
    if _current is not None:
        _current.add()


class Flusher(threading.Thread):
    """In a worker's main process: sums its processes' counts (`<worker id>-*.count`) every `interval` and
    writes the sum to `queue.worker_completions` when it moved; a final flush on `stop()`."""

    def __init__(
        self,
        worker_id: str,
        adapter: str,
        queues: list[str],
        database_url: str,
        interval: float = FLUSH_INTERVAL,
        directory: Path | None = None,
    ) -> None:
        super().__init__(name="completions", daemon=True)
        self.worker_id = worker_id
        self.adapter = adapter
        self.queues = list(queues)
        self.database_url = database_url
        self.interval = interval
        self.directory = Path(directory or spool.spool_dir())
        self._maps: dict[Path, tuple[mmap.mmap, memoryview]] = {}
        self._scanned_at = float("-inf")
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None
        self.written: int | None = None
        self.last_error: str | None = None

    def _scan(self) -> None:
        for path in self.directory.glob(f"{self.worker_id}-*{SUFFIX}"):
            if path in self._maps:
                continue
            try:
                with open(path, "rb") as f:
                    m = mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # not yet 8 bytes long: the next scan takes it
                continue
            self._maps[path] = (m, memoryview(m).cast("q"))

    def total(self) -> int:
        """The sum of every count file of the worker, looking for new files every `RESCAN_INTERVAL`."""
        now = time.monotonic()
        if now - self._scanned_at >= RESCAN_INTERVAL:
            self._scanned_at = now
            self._scan()
        return sum(int(v[0]) for _, v in self._maps.values())

    def flush(self) -> bool:
        """Write the sum when it moved (and once at first); False when the database did not answer."""
        from shared import db

        n = self.total()
        if n == self.written:
            return True
        try:
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(
                    self.database_url, role=f"{self.adapter}-completions", autocommit=True
                )
            self._conn.execute(UPSERT, {"worker_id": self.worker_id, "queues": self.queues, "completed": n})
        except psycopg.Error as exc:
            self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("completion count not written, will retry: %s", self.last_error)
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return False
        self.written, self.last_error = n, None
        return True

    def run(self) -> None:
        self.flush()
        while not self._stop_event.wait(self.interval):
            self.flush()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, write the last sum, and remove the worker's count files (its processes are gone)."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
        self._scanned_at = float("-inf")
        self.flush()
        if self._conn is not None:
            self._conn.close()
        for path, (m, v) in list(self._maps.items()):
            v.release()
            m.close()
            path.unlink(missing_ok=True)
        self._maps.clear()
