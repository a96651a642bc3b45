"""The job records a run leaves: one reader for the spool files and one for `job_events`.

Workers append a start, finish or fail record per attempt to their spool files (`shared.spool`) and load
them into `job_events` at least every second. The harness reads `job_events` for the audit and the
latencies, and the spool files themselves where it cannot wait for a load: a test that watches a job
start, or a process killed before its spool was loaded. Both give `Record`s.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from shared import spool
from shared.bench import store


@dataclass(frozen=True)
class Record:
    """One start, finish or failure of one attempt of one job (`seq`), by one process."""

    seq: int
    kind: str
    ts: float
    attempt: int = 1
    worker_id: str = ""
    run_id: int | None = None
    pid: int | None = None
    error: str | None = None


def read_spool(directory: Path, run_id: int | None = None) -> list[Record]:
    """Every complete record in the spool files under `directory` (of run `run_id`), in time order. A
    spool file is named `<worker id>-<pid>.spool`, so each record knows the process that wrote it."""
    out: list[Record] = []
    for path in Path(directory).glob("*.spool"):
        try:
            pid: int | None = int(path.stem.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            pid = None
        try:
            data = spool.complete_lines(path.read_bytes())
        except FileNotFoundError:
            continue
        for line in data.decode(errors="replace").splitlines():
            f = spool.parse_line(line)
            if f is None or f["seq"] is None or f["run_id"] is None:
                continue
            rid = int(f["run_id"] or 0)
            if run_id is not None and rid != run_id:
                continue
            out.append(
                Record(
                    seq=int(f["seq"] or 0),
                    kind=f["kind"] or "",
                    ts=int(f["ts_us"] or 0) / 1e6,
                    attempt=int(f["attempt"] or 1),
                    worker_id=f["worker_id"] or "",
                    run_id=rid,
                    pid=pid,
                    error=f["error"],
                )
            )
    out.sort(key=lambda r: r.ts)
    return out


def wait_finished(directory: Path, run_id: int, jobs: int, timeout: float) -> list[Record]:
    """The spool records of run `run_id` once `jobs` distinct jobs have a finish record;
    `TimeoutError` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_spool(directory, run_id)
        if len({r.seq for r in records if r.kind == "finish"}) >= jobs:
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f} s waiting for {jobs} finish records of run {run_id}"
            )
        time.sleep(0.2)


def running(records: Iterable[Record]) -> dict[int, set[int]]:
    """Per process, the jobs it started and has not finished or failed yet (by the records so far)."""
    open_: dict[int, set[int]] = {}
    for r in sorted(records, key=lambda r: r.ts):
        if r.pid is None:
            continue
        jobs = open_.setdefault(r.pid, set())
        if r.kind == "start":
            jobs.add(r.seq)
        else:
            jobs.discard(r.seq)
    return {pid: jobs for pid, jobs in open_.items() if jobs}


def of_run(conn: psycopg.Connection, run_id: int) -> list[Record]:
    """Every record of run `run_id` in `job_events`."""
    rows = conn.execute(store.q("events_of_run"), {"run_id": run_id}).fetchall()
    return [Record(int(s), k, float(t), int(a), w, run_id) for s, k, t, a, w in rows]
