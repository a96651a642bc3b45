"""The raw ceiling of a database for a job queue, measured in plain SQL with psycopg.

`raw_ceiling(url, jobs)` measures, on `queue.pgqueue_calibration` (a primary key and a claim index,
nothing else), the three figures pgqueue's are compared with:

- **drain**: claim 100 jobs in one statement (`FOR UPDATE SKIP LOCKED`), then complete them in one
  statement, in a loop from one connection, no job body, no recording: the protocol's ceiling;
- **copy**: a plain COPY of the same rows (what `enqueue_many` does, minus validation and indexes);
- **insert**: one single-row INSERT per transaction (what one-by-one enqueue does).

Each figure is jobs per second. The benchmark helper uses it for its calibration row.
"""

from __future__ import annotations

import time
from typing import Any

from shared import db

CLAIM = """
WITH picked AS (
    SELECT id FROM queue.pgqueue_calibration WHERE state = 0
     ORDER BY priority, run_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE queue.pgqueue_calibration c SET state = 1 FROM picked WHERE c.id = picked.id
RETURNING c.id, c.task, c.params, c.meta
"""
COMPLETE = "UPDATE queue.pgqueue_calibration SET state = 2 WHERE id = ANY(%(ids)s::bigint[])"
COPY = "COPY queue.pgqueue_calibration (task, params, meta) FROM STDIN"
INSERT = "INSERT INTO queue.pgqueue_calibration (task, params, meta) VALUES (%s, %s::jsonb, %s::jsonb)"


def _rows(jobs: int, run_id: int = 0) -> str:
    now = time.time()
    return "".join(
        f'noop\t{{}}\t{{"run_id":{run_id},"seq":{i},"enqueued_at":{now!r}}}\n' for i in range(jobs)
    )


def raw_copy(url: str, jobs: int) -> float:
    """Jobs per second of one plain COPY of `jobs` rows (the table is emptied first)."""
    data = _rows(jobs)
    with db.connect(url, role="calibrate", autocommit=True) as conn:
        conn.execute("TRUNCATE queue.pgqueue_calibration")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(COPY) as copy:
            copy.write(data)
        return jobs / (time.perf_counter() - started)


def raw_drain(url: str, jobs: int, batch: int = 100) -> float:
    """Jobs per second of claim-`batch`-then-complete from one connection over `jobs` copied rows."""
    with db.connect(url, role="calibrate", autocommit=True) as conn:
        conn.execute("TRUNCATE queue.pgqueue_calibration")
        with conn.transaction(), conn.cursor().copy(COPY) as copy:
            copy.write(_rows(jobs))
        conn.execute("VACUUM ANALYZE queue.pgqueue_calibration")
        done = 0
        started = time.perf_counter()
        while True:
            rows = conn.execute(CLAIM, {"limit": batch}, prepare=True).fetchall()
            if not rows:
                break
            conn.execute(COMPLETE, {"ids": [r[0] for r in rows]}, prepare=True)
            done += len(rows)
        return done / (time.perf_counter() - started)


def raw_insert(url: str, jobs: int) -> float:
    """Jobs per second of single-row INSERTs, one per transaction, from one connection."""
    with db.connect(url, role="calibrate", autocommit=True) as conn:
        conn.execute("TRUNCATE queue.pgqueue_calibration")
        now = time.time()
        started = time.perf_counter()
        for i in range(jobs):
            conn.execute(
                INSERT, ("noop", "{}", f'{{"run_id":0,"seq":{i},"enqueued_at":{now!r}}}'), prepare=True
            )
        return jobs / (time.perf_counter() - started)


def raw_ceiling(url: str, jobs: int = 100_000, insert_jobs: int | None = None) -> dict[str, Any]:
    """The raw ceiling on `url`: `{"drain": jobs/s, "copy": jobs/s, "insert": jobs/s, ...}`.

    `jobs` rows for drain and copy; `insert_jobs` (default `jobs // 20`, at least 1,000) single-row
    inserts. The scratch table is emptied afterwards.
    """
    insert_jobs = insert_jobs or max(1000, jobs // 20)
    result = {
        "jobs": jobs,
        "insert_jobs": insert_jobs,
        "batch": 100,
        "drain": raw_drain(url, jobs),
        "copy": raw_copy(url, jobs),
        "insert": raw_insert(url, insert_jobs),
    }
    with db.connect(url, role="calibrate", autocommit=True) as conn:
        conn.execute("TRUNCATE queue.pgqueue_calibration")
    return result


if __name__ == "__main__":
    import json

    from shared import settings

    print(json.dumps(raw_ceiling(settings.load().queue_database_url, 20_000), indent=2))
