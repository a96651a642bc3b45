"""Batched completions: the slots hand finished attempts here; one thread writes them in batches.

A batch is flushed every `flush_interval`, or sooner when half the bound is reached, and on shutdown.
Failures go first, then successes, in one transaction. Both statements carry the ownership check
(still running, this attempt, this worker), so a late or repeated completion changes nothing. While
the database is away the batch is kept and retried; when `bound` completions wait, the slots block
(back-pressure), so at most `bound` plus one flush in progress can be lost with the process. A batch
refused for the data of a row (not for the connection) is written again row by row, so that the good
rows commit and the bad one is stored with a sanitised error: retried whole, it would never pass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared import contract, db
from shared.pgqueue import queries

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Failure:
    id: int
    attempt: int
    delay: float
    discard: bool
    error: dict


ROW_ERRORS = (psycopg.DataError, psycopg.IntegrityError)
"""SQLSTATE classes 22 and 23: a row's data was refused. The same batch would be refused again."""


def storable(text: str) -> str:
    """`text` as PostgreSQL can store it: a NUL becomes the two characters `\\0` (as the spool writes it)
    and a lone surrogate its `\\udXXX` escape. For the failure path only."""
    if "\x00" in text:
        text = text.replace("\x00", "\\0")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode()
    return text


def _sanitised(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(str(k)): _sanitised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitised(v) for v in value]
    return value


def _format_traceback(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException as inner:  # noqa: BLE001
        return f"<the traceback could not be formatted: {type(inner).__name__}>"


def error_record(exc: BaseException, attempt: int, worker_id: str, tb: bool = True) -> dict:
    """What is stored for one failed attempt: class, message, traceback, attempt, worker.

    Never raises, whatever the exception does, and returns text PostgreSQL can store (`storable`).
    """
    return {
        "attempt": attempt,
        "class": storable(type(exc).__name__),
        "message": storable(contract.describe(exc)[:2000]),
        "traceback": storable(_format_traceback(exc)[-8000:]) if tb else None,
        "worker_id": worker_id,
    }


def _latest_attempts(
    ids: list[int], attempts: list[int], failures: list[Failure]
) -> tuple[list[int], list[int], list[Failure]]:
    """The batch to write, with one entry per job: its latest attempt. A job can be in one batch twice (a
    timed-out attempt finishing late, and the next attempt of the same job on this worker); only the
    job's current attempt can pass the ownership check, and `fail` looks a failure up by its id in one
    jsonb object, where a repeated id would keep whichever entry came last, so the older entries, no-ops
    anyway, are left out."""
    if len(set(ids)) < len(ids):
        latest: dict[int, int] = {}
        for job_id, attempt in zip(ids, attempts, strict=True):
            latest[job_id] = max(attempt, latest.get(job_id, attempt))
        ids, attempts = list(latest), list(latest.values())
    if len({f.id for f in failures}) < len(failures):
        by_id: dict[int, Failure] = {}
        for f in failures:
            if f.id not in by_id or f.attempt > by_id[f.id].attempt:
                by_id[f.id] = f
        failures = list(by_id.values())
    return ids, attempts, failures


class Completer(threading.Thread):
    """Buffers completions and failures of one worker process and writes them in batches."""

    def __init__(
        self,
        database_url: str,
        worker_id: str,
        *,
        flush_interval: float,
        bound: int,
        retry_base: float,
    ) -> None:
        super().__init__(name="completer", daemon=True)
        self.database_url = database_url
        self.worker_id = worker_id
        self.flush_interval = flush_interval
        self.bound = bound
        self.retry_base = retry_base
        self._lock = threading.Condition()
        self._done_ids: list[int] = []
        self._done_attempts: list[int] = []
        self._failures: list[Failure] = []
        self._in_flight: set[int] = set()
        self._wake = threading.Event()
        self._stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None
        self.completed = 0
        self.failed = 0
        self.flushes = 0
        self.errors = 0

    # --- called by the slots -------------------------------------------------------------------------

    def _pending(self) -> int:
        return len(self._done_ids) + len(self._failures)

    def _wait_for_room(self) -> None:
        # back-pressure: the caller holds self._lock
        while self._pending() >= self.bound and not self._stop_event.is_set():
            self._wake.set()
            self._lock.wait(0.5)

    def complete(self, job_id: int, attempt: int) -> None:
        """A successful attempt."""
        with self._lock:
            self._wait_for_room()
            self._done_ids.append(job_id)
            self._done_attempts.append(attempt)
            if len(self._done_ids) >= self.bound // 2:
                self._wake.set()

    def fail(self, job_id: int, attempt: int, error: dict, *, discard: bool = False) -> None:
        """A failed attempt: retried after `retry_delay(attempt)`, or discarded (also when `discard`)."""
        delay = contract.retry_delay(attempt, base=self.retry_base)
        with self._lock:
            self._wait_for_room()
            self._failures.append(Failure(job_id, attempt, delay, discard, error))
        self._wake.set()

    def pending_ids(self) -> set[int]:
        """Ids whose outcome is buffered or being written (still `running` in the database)."""
        with self._lock:
            return set(self._done_ids) | {f.id for f in self._failures} | set(self._in_flight)

    # --- the thread --------------------------------------------------------------------------------

    def run(self) -> None:
        backoff = 0.05
        while not self._stop_event.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self.flush():
                backoff = 0.05
            else:
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def flush(self) -> bool:
        """Write what is buffered; on a database error keep it for the next try and return False."""
        with self._lock:
            if not self._done_ids and not self._failures:
                return True
            ids, attempts, failures = self._done_ids, self._done_attempts, self._failures
            self._done_ids, self._done_attempts, self._failures = [], [], []
            self._in_flight = set(ids) | {f.id for f in failures}
            self._lock.notify_all()
        try:
            sent_ids, sent_attempts, sent_failures = _latest_attempts(ids, attempts, failures)
            if self._conn is None or self._conn.closed:
                self._conn = db.connect(
                    self.database_url,
                    role="pgqueue-completer",
                    autocommit=True,
                    options=queries.COMPLETER_OPTIONS,
                )
            conn = self._conn
            try:
                if not sent_failures:
                    # the common case: one statement in autocommit, one round trip (no BEGIN/COMMIT)
                    conn.execute(queries.get("complete"), self._complete_params(sent_ids, sent_attempts))
                else:
                    self._write_with_failures(conn, sent_ids, sent_attempts, sent_failures)
            except ROW_ERRORS as exc:
                log.warning(
                    "completion flush of %d refused for a row's data, writing each row alone: %s",
                    len(ids) + len(failures),
                    _first_line(exc),
                )
                self._write_rows_alone(conn, sent_ids, sent_attempts, sent_failures)
        except psycopg.Error as exc:
            self.errors += 1
            log.warning(
                "completion flush of %d failed, will retry: %s", len(ids) + len(failures), _first_line(exc)
            )
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            with self._lock:
                # put them back in front: nothing is lost, order is kept
                self._done_ids = ids + self._done_ids
                self._done_attempts = attempts + self._done_attempts
                self._failures = failures + self._failures
                self._in_flight = set()
            return False
        with self._lock:
            self._in_flight = set()
            self.completed += len(ids)
            self.failed += len(failures)
            self.flushes += 1
        return True

    def _complete_params(self, ids: list[int], attempts: list[int]) -> dict[str, Any]:
        return {"ids": ids, "keys": queries.attempt_keys(ids, attempts), "worker_id": self.worker_id}

    def _write_rows_alone(
        self, conn: psycopg.Connection, ids: list[int], attempts: list[int], failures: list[Failure]
    ) -> None:
        """After a batch was refused for a row's data: each row in a statement of its own. A failure's
        error is sanitised, then cut down to its class and attempt if it is still refused; a row refused
        even so goes back to available with its attempt given back, never left running under this
        process's live heartbeat. A lost connection raises: the batch is kept and written again, and
        what was written already is left alone by the ownership check."""

        def written(write: Any, *args: Any) -> bool:
            try:
                write(*args)
                return True
            except ROW_ERRORS as exc:
                log.warning("a completion row was refused: %s", _first_line(exc))
                return False

        refused: list[int] = []
        complete = queries.get("complete")
        for job_id, attempt in zip(ids, attempts, strict=True):
            if not written(conn.execute, complete, self._complete_params([job_id], [attempt])):
                refused.append(job_id)
        for f in failures:
            bare = {
                "attempt": f.attempt,
                "class": "UnstorableError",
                "message": "the error of this attempt could not be stored",
                "traceback": None,
                "worker_id": self.worker_id,
            }
            for error in (_sanitised(f.error), bare):
                if written(self._write_with_failures, conn, [], [], [dataclasses.replace(f, error=error)]):
                    break
            else:
                refused.append(f.id)
        if refused:
            log.error("job(s) %s: the outcome could not be written; handing them back", refused)
            conn.execute(queries.get("hand_back"), {"ids": refused, "worker_id": self.worker_id})

    def _write_with_failures(
        self, conn: psycopg.Connection, ids: list[int], attempts: list[int], failures: list[Failure]
    ) -> None:
        # failures and successes commit together, in one transaction
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                queries.get("fail"),
                {
                    **self._complete_params([f.id for f in failures], [f.attempt for f in failures]),
                    "entries": Jsonb(
                        {
                            str(f.id): {"discard": f.discard, "delay": f.delay, "error": f.error}
                            for f in failures
                        }
                    ),
                },
            )
            if ids:
                cur.execute(queries.get("complete"), self._complete_params(ids, attempts))

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the thread and flush what is left, retrying until `timeout`; True if all was written."""
        self._stop_event.set()
        self._wake.set()
        with self._lock:
            self._lock.notify_all()
        if self.is_alive():
            self.join(timeout)
        deadline = time.monotonic() + timeout
        ok = self.flush()
        while not ok and time.monotonic() < deadline:
            time.sleep(0.2)
            ok = self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        return ok

    def describe(self) -> str:
        return json.dumps({"completed": self.completed, "failed": self.failed, "flushes": self.flushes})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
