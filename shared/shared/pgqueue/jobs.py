"""Enqueueing: one job, or many in one statement, inside the caller's own transaction.

`conn` is the caller's SQLAlchemy `Connection` or psycopg `Connection`: the job exists if and only if
the caller's transaction commits (a psycopg connection in autocommit mode commits at once). Bad input
(an unknown task, parameters that are not JSON, a priority or queue name out of range) raises
`InvalidJob` before anything reaches the database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from shared import contract, workloads
from shared.pgqueue import queries

CHANNEL = "pgqueue"
RECHECK = "!recheck"
"""The NOTIFY payload (not a queue name) that asks workers to re-check the jobs they claimed and have not
started: sent by cancel, discard and pause (docs/pgqueue.md)."""
QUEUE_NAME = re.compile(r"^[a-z0-9_.-]{1,64}$")
PRIORITY_MIN, PRIORITY_MAX = 0, 9
MAX_ATTEMPTS_LIMIT = 1000
DEFAULT_MAX_ATTEMPTS = contract.RETRY_MAX_ATTEMPTS
STATES = ("available", "scheduled", "running", "retryable", "completed", "discarded", "cancelled")
ACTIVE_STATES = ("available", "scheduled", "running", "retryable")
FINISHED_STATES = ("completed", "discarded", "cancelled")

# One encoder instance: json.dumps with non-default options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=True)
# COPY chunks: small enough that the server parses one while the client encodes the next
_COPY_CHUNK = 1 << 18
_ENQUEUE_NOW = queries.get("enqueue_now")
_ENQUEUE = queries.get("enqueue")
_ENQUEUE_UNIQUE = queries.get("enqueue_unique")
# One escape of our encoder's output (ensure_ascii: every non-ASCII character is a \uXXXX escape).
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)")


class InvalidJob(ValueError):
    """A job cannot be enqueued as given; the message says which value is wrong and what is allowed."""


@dataclass(slots=True)
class JobSpec:
    """One job for `enqueue_many` (the same fields as `enqueue`'s arguments)."""

    task: str
    params: dict[str, Any] | None = None
    queue: str = "default"
    priority: int = 0
    run_at: dt.datetime | dt.timedelta | float | None = None
    max_attempts: int | None = None
    unique_key: str | None = None
    meta: Mapping[str, Any] | None = None
    timeout: float | None = None


def raw_connection(conn: Any) -> psycopg.Connection:
    """The psycopg connection under `conn` (a psycopg or SQLAlchemy `Connection`), in its transaction.

    For SQLAlchemy the transaction is begun if it was not, so that `conn.commit()` commits what we wrote.
    """
    if isinstance(conn, psycopg.Connection):
        return conn
    import sqlalchemy as sa

    if isinstance(conn, sa.engine.Connection):
        if not conn.in_transaction():
            conn.begin()
        driver = conn.connection.driver_connection
        if not isinstance(driver, psycopg.Connection):
            raise TypeError(
                "pgqueue needs a SQLAlchemy connection on the psycopg (3) driver "
                f"(postgresql+psycopg://), got {type(driver).__name__}"
            )
        return driver
    raise TypeError(f"pgqueue needs a psycopg or SQLAlchemy Connection, got {type(conn).__name__}")


def check_queue(name: Any) -> str:
    """`name` if it is a valid queue name, else `InvalidJob`."""
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise InvalidJob(f"invalid queue name {name!r}: use 1 to 64 characters of a-z, 0-9, '_', '.' and '-'")
    return name


def check_state(state: Any) -> str:
    """`state` if it is a job state, else `InvalidJob` listing the states."""
    if state not in STATES:
        raise InvalidJob(f"unknown job state {state!r}; states: {', '.join(STATES)}")
    return state


def _check_task(task: Any) -> str:
    if not isinstance(task, str):
        raise InvalidJob(f"task must be a string naming a registered task, got {task!r}")
    try:
        workloads.get(task)
    except workloads.UnknownTask as exc:
        raise InvalidJob(str(exc)) from None
    return task


def _check_priority(priority: Any) -> int:
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise InvalidJob(
            f"priority must be an integer from {PRIORITY_MIN} (runs first) to {PRIORITY_MAX}, got {priority!r}"
        )
    return priority


def _check_max_attempts(value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_ATTEMPTS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS_LIMIT:
        raise InvalidJob(f"max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT}, got {value!r}")
    return value


def _check_timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400 * 7:
        raise InvalidJob(f"timeout must be a number of seconds above 0 (at most a week), got {value!r}")
    return float(value)


def _check_run_at(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return dt.datetime.now(dt.UTC) + value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidJob(f"run_at must be timezone-aware (e.g. datetime.now(UTC)), got naive {value!r}")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    raise InvalidJob(f"run_at must be a datetime, a timedelta or epoch seconds, got {value!r}")


def _jsonb_refuses(text: str) -> bool:
    """Whether PostgreSQL's jsonb refuses our encoder's `text`: a NUL (`\\u0000`) or a surrogate escape
    that is not half of a pair. Called only for text holding a backslash, rare in job arguments."""
    pending_high = -1  # where the escape after an unpaired high surrogate must start
    for m in _ESCAPE.finditer(text):
        code = int(m.group(1), 16) if m.group(1) else None
        if pending_high >= 0:
            if m.start() != pending_high or code is None or not 0xDC00 <= code <= 0xDFFF:
                return True
            pending_high = -1
            continue
        if code is None:
            continue
        if code == 0 or 0xDC00 <= code <= 0xDFFF:
            return True
        if 0xD800 <= code <= 0xDBFF:
            pending_high = m.end()
    return pending_high >= 0


def _check_storable(text: str, what: str, task: str) -> str:
    if _jsonb_refuses(text):
        raise InvalidJob(
            f"{what} of task {task!r} holds a character PostgreSQL cannot store (a NUL, or half of a "
            "surrogate pair): remove it, or send bytes as base64"
        )
    return text


def _encode(value: Any, what: str, task: str) -> str:
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{what} of task {task!r} cannot be encoded as JSON: {exc}") from None
    return _check_storable(text, what, task) if "\\" in text else text


def _encode_params(params: Any, task: str) -> str:
    if params is None:
        return "{}"
    if not isinstance(params, Mapping):
        raise InvalidJob(
            f"params of task {task!r} must be a dict of keyword arguments, got {type(params).__name__}"
        )
    return _encode(dict(params), "params", task)


def _encode_meta(meta: Any, task: str) -> str:
    if meta is None:
        return "{}"
    if isinstance(meta, contract.Meta):
        meta = meta.to_dict()
    if not isinstance(meta, Mapping):
        raise InvalidJob(f"meta of task {task!r} must be a dict, got {type(meta).__name__}")
    return _encode(dict(meta), "meta", task)


def _check_unique_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 1000:
        raise InvalidJob(f"unique_key must be a string of 1 to 1000 characters, got {value!r}")
    return value


def enqueue(
    conn: Any,
    task: str,
    params: dict[str, Any] | None = None,
    *,
    queue: str = "default",
    priority: int = 0,
    run_at: dt.datetime | dt.timedelta | float | None = None,
    max_attempts: int | None = None,
    unique_key: str | None = None,
    meta: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> int | None:
    """Enqueue one job in `conn`'s transaction; return its id, or None when `unique_key` deduplicated it.

    `priority` 0 runs first; `run_at` delays the job; `unique_key` keeps one active job per key (freed
    when that job completes, is discarded or cancelled); `meta` is the job contract's meta, stored
    unchanged; `timeout` is seconds per attempt.
    """
    _check_task(task)
    values = {
        "queue": check_queue(queue),
        "task": task,
        "params": _encode_params(params, task),
        "meta": _encode_meta(meta, task),
        "priority": _check_priority(priority),
        "run_at": _check_run_at(run_at),
        "max_attempts": _check_max_attempts(max_attempts),
        "timeout": _check_timeout(timeout),
    }
    key = _check_unique_key(unique_key)
    raw = raw_connection(conn)
    with raw.cursor(row_factory=tuple_row) as cur:
        # prepared once per connection (prepare=True): the server skips parsing and planning
        if key is not None:
            values["unique_key"] = key
            cur.execute(_ENQUEUE_UNIQUE, values, prepare=True)
        elif values["run_at"] is not None:
            cur.execute(_ENQUEUE, values, prepare=True)
        else:
            del values["run_at"]
            cur.execute(_ENQUEUE_NOW, values, prepare=True)
        row = cur.fetchone()
    return int(row[0]) if row else None


def _copy_field(value: str) -> str:
    # COPY text format: a backslash must be doubled; JSON from our encoder has no raw tab or newline
    # (ensure_ascii escapes them), and queue and task names are validated, so nothing else needs escaping.
    return value.replace("\\", "\\\\") if "\\" in value else value


def enqueue_many(conn: Any, jobs: Iterable[JobSpec]) -> int:
    """Enqueue many jobs in `conn`'s transaction; return how many were inserted.

    Jobs without a unique key go through COPY (one COPY for those without `run_at`, one for those
    with it); jobs with a unique key through one `INSERT ... ON CONFLICT DO NOTHING` over arrays.
    Each statement is followed by (or carries) one NOTIFY per distinct queue, never one per row.
    Rows are validated and encoded while the COPY streams (the server parses one chunk while the next
    is encoded); an invalid job raises `InvalidJob` and nothing is inserted: the work runs in a
    savepoint of the caller's transaction (a transaction of its own in autocommit mode), rolled back
    on error, so the caller's transaction stays usable.
    """
    raw = raw_connection(conn)
    inserted = 0
    with _atomic(raw), raw.cursor(row_factory=tuple_row) as cur:
        stream = _CopyStream(cur)
        try:
            delayed, unique, plain_queues = _encode_jobs(jobs, stream)
        except BaseException:
            stream.abort()
            raise
        inserted += stream.finish()
        if delayed:
            with cur.copy(queries.get("copy_jobs_at")) as copy:
                for k in range(0, len(delayed), 4096):
                    copy.write("".join(delayed[k : k + 4096]))
            inserted += len(delayed)
        if plain_queues:
            cur.execute(queries.get("notify_queues"), {"queues": sorted(plain_queues)})
        if unique:
            cur.execute(queries.get("enqueue_many_unique"), _arrays(unique))
            row = cur.fetchone()
            inserted += int(row[0]) if row else 0
    return inserted


@contextlib.contextmanager
def _atomic(raw: psycopg.Connection) -> Iterator[None]:
    """All or nothing inside the caller's transaction, which stays usable after an error.

    In a transaction: a savepoint. In autocommit mode: a transaction of our own (the COPYs and their
    NOTIFY commit together). Idle outside autocommit: the implicit transaction holds only our work, so
    an error rolls it back and the caller's later commit commits what we wrote otherwise.
    """
    if raw.autocommit or raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS:
        with raw.transaction():
            yield
        return
    try:
        yield
    except BaseException:
        raw.rollback()
        raise


class _CopyStream:
    """The COPY of jobs claimable now, opened at its first row and fed in chunks of `_COPY_CHUNK`."""

    def __init__(self, cur: psycopg.Cursor) -> None:
        self.cur = cur
        self._cm: Any = None
        self.copy: Any = None
        self.rows = 0

    def write(self, lines: list[str], size: int) -> None:
        if self.copy is None:
            self._cm = self.cur.copy(queries.get("copy_jobs"))
            self.copy = self._cm.__enter__()
        self.copy.write("".join(lines))
        self.rows += len(lines)

    def finish(self) -> int:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self.copy = None
        return self.rows

    def abort(self) -> None:
        # ends the COPY with an error (CopyFail): the savepoint around it is rolled back by the caller
        if self._cm is not None:
            cm, self._cm, self.copy = self._cm, None, None
            with contextlib.suppress(Exception):
                cm.__exit__(InvalidJob, InvalidJob("enqueue_many aborted"), None)


def _encode_jobs(jobs: Iterable[JobSpec], stream: _CopyStream) -> tuple[list[str], list[JobSpec], set[str]]:
    """Validate every job; stream the COPY rows of jobs claimable now; return the rest."""
    buf: list[str] = []
    size = 0
    delayed: list[str] = []
    unique: list[JobSpec] = []
    plain_queues: set[str] = set()
    seen_tasks: set[str] = set()
    seen_queues: set[str] = set()
    # params object id -> (the object, its COPY text); holding the object keeps its id from being reused
    encoded_params: dict[int, tuple[object, str]] = {}
    encode = _ENCODER.encode
    for job in jobs:
        if type(job) is not JobSpec and not isinstance(job, JobSpec):
            raise InvalidJob(f"enqueue_many takes JobSpec objects, got {type(job).__name__}")
        task = job.task
        if task not in seen_tasks:
            _check_task(task)
            seen_tasks.add(task)
        queue = job.queue
        if queue not in seen_queues:
            check_queue(queue)
            seen_queues.add(queue)
        # the common values take the fast path; anything else gets the full check and its message
        priority = job.priority
        if type(priority) is not int or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
            priority = _check_priority(priority)
        max_attempts = (
            DEFAULT_MAX_ATTEMPTS if job.max_attempts is None else _check_max_attempts(job.max_attempts)
        )
        timeout = None if job.timeout is None else _check_timeout(job.timeout)
        run_at = None if job.run_at is None else _check_run_at(job.run_at)
        if job.unique_key is not None:
            _check_unique_key(job.unique_key)
            _encode_params(job.params, task)
            _encode_meta(job.meta, task)
            unique.append(job)
            continue
        # Many jobs share one params object: encode it once.
        params = job.params
        p = "{}"
        if params is not None:
            cached = encoded_params.get(id(params))
            if cached is not None and cached[0] is params:
                p = cached[1]
            else:
                p = _copy_field(_encode_params(params, task))
                encoded_params[id(params)] = (params, p)
        meta = job.meta
        if meta is None:
            m = "{}"
        elif type(meta) is dict:
            try:
                m = encode(meta)
            except (TypeError, ValueError):
                m = _encode_meta(meta, task)  # raises with the message
            if "\\" in m:
                m = _check_storable(m, "meta", task).replace("\\", "\\\\")
        else:
            m = _copy_field(_encode_meta(meta, task))
        t = "\\N" if timeout is None else repr(timeout)
        if run_at is None:
            line = f"{queue}\t{task}\t{p}\t{m}\t{priority}\t{max_attempts}\t{t}\n"
            buf.append(line)
            size += len(line)
            if size >= _COPY_CHUNK:
                stream.write(buf, size)
                buf, size = [], 0
            plain_queues.add(queue)
        else:
            delayed.append(
                f"scheduled\t{queue}\t{task}\t{p}\t{m}\t{priority}\t{run_at.isoformat()}\t{max_attempts}\t{t}\n"
            )
    if buf:
        stream.write(buf, size)
    return delayed, unique, plain_queues


def _arrays(jobs: list[JobSpec]) -> dict[str, list[Any]]:
    return {
        "queues": [j.queue for j in jobs],
        "tasks": [j.task for j in jobs],
        "params": [_encode_params(j.params, j.task) for j in jobs],
        "metas": [_encode_meta(j.meta, j.task) for j in jobs],
        "priorities": [j.priority for j in jobs],
        "run_ats": [_check_run_at(j.run_at) for j in jobs],
        "max_attempts": [_check_max_attempts(j.max_attempts) for j in jobs],
        "timeouts": [_check_timeout(j.timeout) for j in jobs],
        "unique_keys": [j.unique_key for j in jobs],
    }
