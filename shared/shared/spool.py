"""The crash-safe recorder (docs/architecture.md, "The job contract"): one spool file per worker process, loaded in batches.

Each start, finish and failure is one line appended to the process's own spool file, unbuffered: the
line is in the file (the kernel's page cache) when the call returns, so it survives SIGKILL of the
process, costs microseconds and needs no database round trip per job. A `SpoolLoader` thread copies
new complete lines into `job_events` every 0.25 s and on exit; the rows and the loaded byte
offset (`spool_progress`) commit in one transaction, so every line is loaded exactly once, by the
worker itself or, after it died, by the harness (`load_file`).

The lines are appended through a shared memory map of the file, not with `write(2)`: a system call
releases Python's GIL, and in a threaded worker every release hands the GIL to another thread and
costs context switches (with five threads recording, 20 us per no-op job against 5 us with one; see
docs/benchmarks.md). A store into the map is a memory copy under the GIL, atomic between threads.
The file is extended ahead of the writes, so its unwritten tail reads as NUL bytes until the recorder
closes and trims it; readers take the complete lines before the first NUL (`complete_lines`).

Lines are in COPY's text format, so the loader hands them to the database as they are. Times are
integer microseconds since the Unix epoch: Python formats an integer several times faster than a
float (`repr` of a float was most of a no-op job's recording cost), and the database parses it faster.
A finish line leaves out the enqueue and schedule times its start line carries.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg

from shared import settings, sqlfile
from shared.job import Ctx, Meta

log = logging.getLogger(__name__)

QUERIES = sqlfile.Queries(Path(__file__).with_name("sql") / "spool.sql")
"""The loader's named queries (`sql/spool.sql`)."""

COLUMNS = (
    # The fields of a spool line, in order; `spool_copy` in sql/spool.sql names them in the same order.
    "kind",
    "run_id",
    "seq",
    "attempt",
    "worker_id",
    "adapter",
    "ts_us",
    "enqueued_us",
    "scheduled_us",
    "error",
)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\\\0"})
_NULL = "\\N"
_NULL_B = b"\\N"
_BIGINT = 1 << 63
_MAX_SECONDS = (_BIGINT - 1) / 1_000_000
_HEAD = b"\t%d\t%d\t%d\t%s\t"
"""The fields between `kind` and the time: run id, seq, attempt, then worker id and adapter."""
_WINDOW = 1 << 20
"""Bytes of the spool file mapped at a time (the resident part counts in the worker's memory)."""


def spool_dir() -> Path:
    """Where spool files go: `BENCH_SPOOL_DIR`, else `<data dir>/spool`."""
    return Path(os.environ.get("BENCH_SPOOL_DIR") or settings.DATA_DIR / "spool")


def micros(seconds: float) -> int:
    """Seconds since the epoch (`time.time()`) as the integer microseconds a record stores."""
    return round(seconds * 1_000_000)


def _field(v: object) -> str:
    return _NULL if v is None else str(v).translate(_ESCAPES)


def _key(v: Any, name: str) -> int:
    """A meta integer as the bigint column takes it; anything else is the sender's mistake."""
    if type(v) is int and -_BIGINT <= v < _BIGINT:
        return v
    n = int(v)
    if not -_BIGINT <= n < _BIGINT:
        raise ValueError(f"meta {name} out of range: {n}")
    return n


def _time_us(v: Any, name: str) -> bytes:
    """A meta time (seconds since the epoch) as a line's integer microseconds, or NULL."""
    if type(v) is float and -_MAX_SECONDS < v < _MAX_SECONDS:  # NaN fails both comparisons
        return b"%d" % round(v * 1_000_000)
    if v is None:
        return _NULL_B
    f = float(v)
    if not -_MAX_SECONDS < f < _MAX_SECONDS:
        raise ValueError(f"meta {name} is not a time: {v!r}")
    return b"%d" % micros(f)


def recordable(meta: Mapping[str, Any] | Meta | None) -> bool:
    """Whether a job's meta asks for records: it carries the audit key, `run_id` and `seq`."""
    if isinstance(meta, Meta):
        return meta.run_id is not None and meta.seq is not None
    return meta is not None and meta.get("run_id") is not None and meta.get("seq") is not None


def parse_line(line: str) -> dict[str, str | None] | None:
    """One spool line's fields by column name (`None` for NULL, escapes left as written); `None` for a
    line that is not a record. For readers of spool files; the loader hands lines to COPY as they are."""
    f = line.rstrip("\n").split("\t")
    if len(f) != len(COLUMNS):
        return None
    return {name: None if v == _NULL else v for name, v in zip(COLUMNS, f, strict=True)}


class SpoolRecorder:
    """Appends job events to one file, unbuffered, through a memory map. Thread-safe.

    Both queues record through this one class, so recording costs them the same. `contract.execute`
    records an attempt with `start`, which formats the fields its finish line shares once, and
    `finish`; `record` writes any other line (a failure, with its error).
    """

    def __init__(self, path: Path, worker_id: str, adapter: str) -> None:
        self.path = Path(path)
        self.worker_id = worker_id
        self.adapter = adapter
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._who = f"{_field(worker_id)}\t{_field(adapter)}".encode()
        self._lock = threading.Lock()
        self._closed = False
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        end = _data_end(self._fd)
        os.ftruncate(self._fd, end)  # a partial line left by a killed writer goes
        self._map_from(end, 0)

    def _map_from(self, end: int, need: int) -> None:
        """Map the window of the file that starts at the page holding `end` and fits `need` more bytes."""
        base = end - end % mmap.ALLOCATIONGRANULARITY
        size = max(_WINDOW, end - base + need)
        size += -size % mmap.PAGESIZE
        # Allocated ahead (reads as NUL bytes until written), so that a full disk raises OSError here
        # instead of SIGBUS at a store into the map (where there is no posix_fallocate, as on macOS, the
        # file is only extended).
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(self._fd, base, size)
        elif os.fstat(self._fd).st_size < base + size:
            os.ftruncate(self._fd, base + size)
        window = mmap.mmap(self._fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=base)
        window.seek(end - base)
        self._base, self._map = base, window

    def _append(self, data: bytes) -> None:
        """Append one line: a single `mmap.write`, which copies the whole line or raises, under the GIL."""
        window = self._map
        try:
            window.write(data)
        except ValueError:  # the window is full, or another thread moved on to the next one
            with self._lock:
                if self._closed:
                    raise ValueError(f"spool recorder {self.path} is closed") from None
                if self._map is window:
                    end = self._base + window.tell()
                    window.seek(len(window))  # sealed: a thread still holding it fails and comes here
                    self._map_from(end, len(data))
            self._append(data)

    # Lines are built as bytes with `%`: no `str.encode` per line, and integers format fastest so.

    def _head(self, meta: Mapping[str, Any], ctx: Ctx) -> bytes:
        """The fields between `kind` and the time: the audit key, attempt, worker and adapter."""
        who = self._who
        if ctx.worker_id and ctx.worker_id != self.worker_id:
            who = f"{_field(ctx.worker_id)}\t{_field(self.adapter)}".encode()
        return _HEAD % (
            _key(meta["run_id"], "run_id"),
            _key(meta["seq"], "seq"),
            _key(ctx.attempt, "attempt"),
            who,
        )

    def start(self, meta: Mapping[str, Any], ctx: Ctx) -> bytes:
        """Record the start of an attempt now; return what its `finish` line shares with it.

        `meta` must be `recordable`; a malformed value raises `ValueError` before anything is written.
        """
        run_id, seq, attempt = meta["run_id"], meta["seq"], ctx.attempt
        enq, sch = meta.get("enqueued_at"), meta.get("scheduled_at")
        if (
            # the harness's own meta, checked inline: this is most of a no-op job's recording cost
            type(run_id) is int
            and type(seq) is int
            and type(attempt) is int
            and type(enq) is float
            and sch is None
            and -_BIGINT <= run_id < _BIGINT
            and -_BIGINT <= seq < _BIGINT
            and -_MAX_SECONDS < enq < _MAX_SECONDS
            and (not ctx.worker_id or ctx.worker_id == self.worker_id)
        ):
            head = _HEAD % (run_id, seq, attempt, self._who)
            enqueued, scheduled = b"%d" % round(enq * 1_000_000), _NULL_B
        else:
            head = self._head(meta, ctx)
            enqueued = _time_us(enq, "enqueued_at")
            scheduled = _time_us(sch, "scheduled_at")
        self._append(b"start%s%d\t%s\t%s\t\\N\n" % (head, time.time_ns() // 1000, enqueued, scheduled))
        return head

    def finish(self, head: bytes) -> None:
        """Record now the finish of the attempt whose `start` returned `head`."""
        self._append(b"finish%s%d\t\\N\t\\N\t\\N\n" % (head, time.time_ns() // 1000))

    def record(
        self,
        kind: str,
        meta: Mapping[str, Any] | Meta,
        ctx: Ctx,
        ts: float,
        error: str | None = None,
    ) -> None:
        """Append one event line at `ts` (seconds since the epoch), e.g. a failure with its error."""
        m = meta.to_dict() if isinstance(meta, Meta) else meta
        start = kind == "start"
        enqueued = _time_us(m.get("enqueued_at"), "enqueued_at") if start else _NULL_B
        scheduled = _time_us(m.get("scheduled_at"), "scheduled_at") if start else _NULL_B
        text = _field(error[:2000] if error else None).encode()
        head = self._head(m, ctx)
        self._append(b"%s%s%d\t%s\t%s\t%s\n" % (kind.encode(), head, micros(ts), enqueued, scheduled, text))

    def close(self) -> None:
        """Trim the file to its lines and close it; a later record raises `ValueError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            window = self._map
            end = self._base + window.tell()
            window.seek(len(window))
            try:
                window.close()
            except BufferError:  # a thread is still copying into it; unmapped when it lets go
                pass
            os.ftruncate(self._fd, end)
            os.close(self._fd)


def _data_end(fd: int) -> int:
    """Where the complete lines of an existing spool file end. Its unwritten tail (at most one window
    of NUL bytes) and a line a killed writer left half copied are past that point."""
    size = os.fstat(fd).st_size
    n = min(size, 2 * _WINDOW + mmap.ALLOCATIONGRANULARITY)
    return size - n + len(complete_lines(os.pread(fd, n, size - n)))


def complete_lines(data: bytes) -> bytes:
    """The complete lines at the start of what was read from a spool file: up to the last newline
    before the first NUL byte (a mapped file's unwritten tail, or a line still being copied)."""
    nul = data.find(b"\0")
    if nul >= 0:
        data = data[:nul]
    return data[: data.rfind(b"\n") + 1]


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
            at = {"path": str(path), "worker_id": worker_id}
            conn.execute(QUERIES["spool_progress_start"], at)
            row = conn.execute(QUERIES["spool_progress_lock"], at).fetchone()
            offset = int(row[0]) if row else 0
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(max_bytes)
            except FileNotFoundError:
                return total
            data = complete_lines(chunk)
            if not data:
                conn.execute(QUERIES["spool_progress_seen"], at)
                return total
            with conn.cursor().copy(QUERIES["spool_copy"]) as copy:
                copy.write(data)
            conn.execute(QUERIES["spool_progress_advance"], {**at, "loaded_bytes": offset + len(data)})
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
        interval: float = 0.25,
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
