"""The raw ceiling: what a job queue could do at best on this database, measured in plain SQL in the same
run, so that every contender's figures are also stated as a ratio to it (docs/benchmark.md, "Calibration").

On `queue.pgqueue_calibration` (a primary key and a claim index, nothing else), from one process:

- **drain**: claim 100 jobs in one statement (`FOR UPDATE SKIP LOCKED`, committed asynchronously), then
  complete them in one statement (committed synchronously), in a loop; no job body, no recording;
- **copy**: one plain COPY of the same rows (a bulk enqueue, minus validation and indexes);
- **insert**: one single-row INSERT per transaction (a one-by-one enqueue);
- **notify**: the LISTEN/NOTIFY round trip (p50 and p99, ms), the floor of enqueue-to-start latency;
- **pickup**: enqueue to claim (p50 and p99, ms) of one job at a time at 200 jobs/s: an INSERT and its NOTIFY
  committed in one statement, and a listener that claims on another connection at each notification. It is
  the floor of a queue's wait with its commits (the enqueue's is flushed to disk), where `notify` has none.

Each rate is jobs per second.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from shared import db
from shared.bench import stats, store

CLAIM_BATCH = 100


def _rows(jobs: int, run_id: int = 0) -> str:
    now = time.time()
    return "".join(
        f'noop\t{{}}\t{{"run_id":{run_id},"seq":{i},"enqueued_at":{now!r}}}\n' for i in range(jobs)
    )


def _empty(url: str) -> None:
    with db.connect(url, role="calibrate", autocommit=True) as conn:
        conn.execute(store.q("calibration_empty"))


def raw_copy(url: str, jobs: int) -> float:
    """Jobs per second of one plain COPY of `jobs` rows (the table is emptied first)."""
    data = _rows(jobs)
    with db.connect(url, role="calibrate", autocommit=True) as conn:
        conn.execute(store.q("calibration_empty"))
        started = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(store.q("calibration_copy")) as copy:
            copy.write(data)
        return jobs / (time.perf_counter() - started)


def raw_drain(url: str, jobs: int, batch: int = CLAIM_BATCH) -> float:
    """Jobs per second of claim-`batch`-then-complete from one process over `jobs` copied rows."""
    with (
        db.connect(url, role="calibrate", autocommit=True) as conn,
        db.connect(url, role="calibrate-claim", autocommit=True) as claim,
    ):
        conn.execute(store.q("calibration_empty"))
        with conn.transaction(), conn.cursor().copy(store.q("calibration_copy")) as copy:
            copy.write(_rows(jobs))
        conn.execute(store.q("calibration_analyze"))
        # As a queue's claims can: they commit asynchronously, completions synchronously.
        claim.execute("SET synchronous_commit TO off")
        done = 0
        started = time.perf_counter()
        while True:
            rows = claim.execute(store.q("calibration_claim"), {"limit": batch}, prepare=True).fetchall()
            if not rows:
                break
            conn.execute(store.q("calibration_complete"), {"ids": [r[0] for r in rows]}, prepare=True)
            done += len(rows)
        return done / (time.perf_counter() - started)


def raw_insert(url: str, jobs: int) -> float:
    """Jobs per second of single-row INSERTs, one per transaction, from one connection."""
    with db.connect(url, role="calibrate", autocommit=True) as conn:
        conn.execute(store.q("calibration_empty"))
        now = time.time()
        started = time.perf_counter()
        for i in range(jobs):
            meta = f'{{"run_id":0,"seq":{i},"enqueued_at":{now!r}}}'
            conn.execute(
                store.q("calibration_insert"), {"task": "noop", "params": "{}", "meta": meta}, prepare=True
            )
        return jobs / (time.perf_counter() - started)


def raw_notify(url: str, count: int = 300, interval: float = 0.005) -> dict[str, float | None]:
    """Round trip of a NOTIFY (sent in its own transaction) to a listening connection, p50 and p99 in ms."""
    listener = db.connect(url, role="calibrate-listen", autocommit=True)
    listener.execute(store.q("calibration_listen"))
    delays: list[float] = []

    def listen() -> None:
        for note in listener.notifies(timeout=count * interval + 10, stop_after=count):
            delays.append((time.time() - float(note.payload)) * 1000)

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    with db.connect(url, role="calibrate", autocommit=True) as conn:
        for _ in range(count):
            conn.execute(store.q("calibration_notify"), {"payload": repr(time.time())}, prepare=True)
            time.sleep(interval)
    thread.join(count * interval + 15)
    listener.close()
    p = stats.percentiles(delays, (50.0, 99.0))
    return {"notify_p50_ms": p["p50"], "notify_p99_ms": p["p99"]}


def raw_pickup(url: str, count: int = 400, interval: float = 0.005) -> dict[str, float | None]:
    """Enqueue (before the INSERT) to claim (its rows back), p50 and p99 in ms, of `count` jobs sent one per
    `interval` seconds, each claimed by a listener as its notification arrives (the table is emptied first)."""
    _empty(url)
    delays: list[float] = []
    failed: list[BaseException] = []
    with (
        db.connect(url, role="calibrate-listen", autocommit=True) as listener,
        db.connect(url, role="calibrate-claim", autocommit=True) as claim,
    ):
        listener.execute(store.q("calibration_listen"))
        claim.execute("SET synchronous_commit TO off")  # as raw_drain's claims, and a queue's can

        def pick() -> None:
            try:
                for _ in listener.notifies(timeout=count * interval + 10):
                    rows = claim.execute(store.q("calibration_claim"), {"limit": 10}, prepare=True).fetchall()
                    now = time.time()
                    delays.extend((now - r[3]["enqueued_at"]) * 1000 for r in rows)
                    if len(delays) >= count:
                        break
            except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
                failed.append(exc)

        thread = threading.Thread(target=pick, daemon=True)
        thread.start()
        with db.connect(url, role="calibrate", autocommit=True) as conn:
            for _ in range(count):
                conn.execute(
                    store.q("calibration_enqueue_notify"), {"enqueued_at": time.time()}, prepare=True
                )
                time.sleep(interval)
        thread.join(count * interval + 15)
    if failed:
        raise failed[0]
    p = stats.percentiles(delays, (50.0, 99.0))
    return {"pickup_p50_ms": p["p50"], "pickup_p99_ms": p["p99"]}


def raw_ceiling(url: str, jobs: int = 100_000, insert_jobs: int | None = None) -> dict[str, Any]:
    """The raw ceiling on `url`: `{"drain": jobs/s, "copy": jobs/s, "insert": jobs/s, "notify_p50_ms": ...,
    "pickup_p50_ms": ...}`,
    with `jobs_per_second` the drain (the figure drains are compared with).

    `jobs` rows for drain and copy; `insert_jobs` (default `jobs // 20`, at least 1,000) single-row
    inserts. The scratch table is emptied afterwards.
    """
    insert_jobs = insert_jobs or max(1000, jobs // 20)
    drain = raw_drain(url, jobs)
    result = {
        "source": "shared.bench.calibration",
        "jobs": jobs,
        "insert_jobs": insert_jobs,
        "batch": CLAIM_BATCH,
        "drain": drain,
        "jobs_per_second": round(drain, 1),
        "copy": raw_copy(url, jobs),
        "insert": raw_insert(url, insert_jobs),
        **raw_notify(url),
        **raw_pickup(url),
    }
    _empty(url)
    return result
