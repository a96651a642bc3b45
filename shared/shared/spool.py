"""The crash-safe recorder (design section 6a): one spool file per worker process, loaded in batches.

Each start, finish and failure is one line appended with a single unbuffered `os.write` on an
`O_APPEND` descriptor: it survives SIGKILL of the process, costs microseconds and needs no database
round trip per job. A `SpoolLoader` thread copies new complete lines into `job_events` at least every
second and on exit; the rows and the loaded byte offset (`spool_progress`) commit in one transaction,
so every line is loaded exactly once, by the worker itself or, after it died, by the harness
(`load_file`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from shared import settings
from shared.contract import Ctx, Meta

log = logging.getLogger(__name__)

COLUMNS = (
    "kind",
    "run_id",
    "seq",
    "attempt",
    "worker_id",
    "adapter",
    "ts",
    "enqueued_at",
    "scheduled_at",
    "error",
)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def spool_dir() -> Path:
    """Where spool files go: `BENCH_SPOOL_DIR`, else `<data dir>/spool`."""
    return Path(os.environ.get("BENCH_SPOOL_DIR") or settings.DATA_DIR / "spool")


_NULL = "\\N"


def _field(v: object) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, float):
        return repr(v)
    return str(v).translate(_ESCAPES)


class SpoolRecorder:
    """Appends job events to one file with unbuffered writes. Thread-safe (one `write` per line).

    Both queues record through this one class, so recording costs them the same. A line without an
    error is formatted around the fields its attempt's lines share (`job_parts`), which
    `contract.execute` formats once for a job's start and finish: recording is most of a no-op job's
    cost, so it is kept small.
    """

    def __init__(self, path: Path, worker_id: str, adapter: str) -> None:
        self.path = Path(path)
        self.worker_id = worker_id
        self.adapter = adapter
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._who = f"{_field(worker_id)}\t{_field(adapter)}"

    def record(self, kind: str, meta: Meta, ctx: Ctx, ts: float, error: str | None = None) -> None:
        """Append one event line (COPY text format)."""
        if error is None and type(ts) is float:
            self.record_job(kind, self.job_parts(meta, ctx), ts)
            return
        line = (
            "\t".join(
                (
                    kind,
                    _field(meta.run_id),
                    _field(meta.seq),
                    _field(ctx.attempt),
                    _field(ctx.worker_id or self.worker_id),
                    _field(self.adapter),
                    repr(ts),
                    _field(meta.enqueued_at),
                    _field(meta.scheduled_at),
                    _field(error[:2000] if error else None),
                )
            )
            + "\n"
        )
        os.write(self._fd, line.encode())

    def job_parts(self, meta: Meta, ctx: Ctx) -> tuple[str, str]:
        """What every line of one attempt without an error shares: the fields before and after `ts`.

        `contract.execute` formats them once per job for its start and finish lines (`record_job`).
        """
        who = self._who if not ctx.worker_id or ctx.worker_id == self.worker_id else None
        if who is None:
            who = f"{_field(ctx.worker_id)}\t{_field(self.adapter)}"
        run_id, seq, attempt, enq, sch = (
            meta.run_id,
            meta.seq,
            ctx.attempt,
            meta.enqueued_at,
            meta.scheduled_at,
        )
        return (
            f"\t{_NULL if run_id is None else run_id}\t{_NULL if seq is None else seq}\t"
            f"{_NULL if attempt is None else attempt}\t{who}\t",
            f"\t{_NULL if enq is None else repr(enq)}\t{_NULL if sch is None else repr(sch)}\t{_NULL}\n",
        )

    def record_job(self, kind: str, parts: tuple[str, str], ts: float) -> None:
        """Append one event line of an attempt whose `job_parts` are formatted already."""
        os.write(self._fd, f"{kind}{parts[0]}{ts!r}{parts[1]}".encode())

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


_current: SpoolRecorder | None = None


def path_for(worker_id: str, pid: int | None = None) -> Path:
    """The spool file of one process of worker `worker_id`."""
    return spool_dir() / f"{worker_id}-{pid or os.getpid()}.spool"


def install(recorder: SpoolRecorder | None) -> None:
    """Make `recorder` this process's recorder (None: recording off)."""
    global _current
    _current = recorder


def current() -> SpoolRecorder | None:
    """This process's recorder, or None when recording is off."""
    return _current


def load_file(conn: psycopg.Connection, path: Path, worker_id: str, max_bytes: int = 8 << 20) -> int:
    """Load the not-yet-loaded complete lines of `path` into `job_events`; return how many lines.

    The rows and the new offset commit together, so a crash between loads loses or doubles nothing.
    Safe to call from several processes: the progress row is locked for the duration.
    """
    path = Path(path)
    total = 0
    while True:
        with conn.transaction():
            conn.execute(
                "INSERT INTO spool_progress (path, worker_id, loaded_bytes) VALUES (%s, %s, 0) "
                "ON CONFLICT (path) DO NOTHING",
                (str(path), worker_id),
            )
            row = conn.execute(
                "SELECT loaded_bytes FROM spool_progress WHERE path = %s FOR UPDATE", (str(path),)
            ).fetchone()
            offset = int(row[0]) if row else 0
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(max_bytes)
            except FileNotFoundError:
                return total
            end = chunk.rfind(b"\n")
            if end < 0:
                conn.execute("UPDATE spool_progress SET loaded_at = now() WHERE path = %s", (str(path),))
                return total
            data = chunk[: end + 1]
            with conn.cursor().copy(f"COPY job_events ({', '.join(COLUMNS)}) FROM STDIN") as copy:  # noqa: S608
                copy.write(data)
            conn.execute(
                "UPDATE spool_progress SET loaded_bytes = %s, loaded_at = now() WHERE path = %s",
                (offset + len(data), str(path)),
            )
            total += data.count(b"\n")
        if len(chunk) < max_bytes:
            return total


class SpoolLoader(threading.Thread):
    """Loads every spool file whose name starts with `prefix` every `interval` seconds and on `stop()`.

    A worker's pool children each write `<worker id>-<pid>.spool`; the worker's main process (or the
    pgqueue supervisor) runs one loader over all of them, so a child's spool is loaded even after the
    child was killed.
    """

    def __init__(
        self,
        prefix: str,
        worker_id: str,
        database_url: str,
        interval: float = 1.0,
        on_loaded: Callable[[float], None] | None = None,
        directory: Path | None = None,
    ) -> None:
        super().__init__(name="spool-loader", daemon=True)
        self.directory = Path(directory or spool_dir())
        self.prefix = prefix
        self.worker_id = worker_id
        self.database_url = database_url
        self.interval = interval
        self.on_loaded = on_loaded
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None
        self.loaded_lines = 0
        self.last_error: str | None = None

    def paths(self) -> list[Path]:
        return sorted(self.directory.glob(f"{self.prefix}*.spool"))

    def load_once(self) -> int:
        """One load pass; reconnects on failure and keeps the lines for the next pass."""
        from shared import db

        started = time.time()
        try:
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(self.database_url, role="spool-loader")
            n = sum(load_file(self._conn, path, self.worker_id) for path in self.paths())
        except psycopg.Error as exc:
            self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("spool load failed, will retry: %s", self.last_error)
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            return 0
        self.loaded_lines += n
        self.last_error = None
        if self.on_loaded is not None:
            self.on_loaded(started)
        return n

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.load_once()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and do a final load, retrying until `timeout`."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)
        deadline = time.monotonic() + timeout
        while True:
            self.load_once()
            if self.last_error is None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if self._conn is not None:
            self._conn.close()
