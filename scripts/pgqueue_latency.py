"""Where pgqueue's queue wait goes, by the database clock (docs/benchmarks.md, "pgqueue").

    .venv/bin/python scripts/pgqueue_latency.py --raw
    .venv/bin/python scripts/pgqueue_latency.py --processes 1

On `DATABASE_URL` (migrated): starts one `bench-pgqueue-worker` (`--processes`, 4 threads, recorder off,
no maintenance), waits until a first job has run, then enqueues `--jobs` no-op jobs one by one at `--rate`
jobs/s from this process (`pgqueue.enqueue`, each with its `enqueued_at` in its meta, taken before the
INSERT), waits until they are done and prints, per job, how long after its enqueue its claim statement
began (`attempted_at`, the claim's `now()`) and its completion committed (`finished_at`): p50, p95, p99.
With `--raw`, the raw pickup of the same database first (`shared.bench.calibration.raw_pickup`: a committed
INSERT and its NOTIFY, claimed by a listener, enqueue to the claim's rows back). The worker is stopped by
SIGTERM to its process group.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from shared import db, pgqueue, settings
from shared.bench import calibration, stats, workers

QUEUE = "latencyprobe"
WAITS = """
SELECT (extract(epoch FROM attempted_at) - (meta->>'enqueued_at')::float8) * 1000,
       (extract(epoch FROM finished_at) - (meta->>'enqueued_at')::float8) * 1000
  FROM queue.pgqueue_jobs
 WHERE queue = %(queue)s AND state = 'completed' AND meta ? 'probe'
"""


def _wait_done(conn: psycopg.Connection, deadline: float) -> None:
    while pgqueue.queue_busy(conn, QUEUE):
        if time.monotonic() > deadline:
            raise SystemExit("error: the worker did not finish the jobs in time")
        time.sleep(0.05)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--raw", action="store_true", help="measure the raw pickup first")
    args = p.parse_args()
    url = settings.load().queue_database_url
    if args.raw:
        raw = calibration.raw_pickup(url, count=args.jobs, interval=1 / args.rate)
        print(f"raw pickup (enqueue to claim): p50 {raw['pickup_p50_ms']} ms, p99 {raw['pickup_p99_ms']} ms")
    exe = Path(sys.executable).parent / "bench-pgqueue-worker"
    argv = [str(exe), "--processes", str(args.processes), "--threads", "4", "--queues", QUEUE]
    argv += ["--no-record", "--no-maintenance", "--loglevel", "WARNING"]
    with (
        db.connect(url, autocommit=True) as conn,
        tempfile.TemporaryDirectory(prefix="pgqueue-latency-") as spool,
    ):
        pgqueue.delete_finished(conn, QUEUE)
        env = workers.worker_env(url, Path(spool))
        proc = subprocess.Popen(argv, env=env, start_new_session=True)
        try:
            pgqueue.enqueue(conn, "noop", {}, queue=QUEUE)  # a first job: the worker is ready once it ran
            _wait_done(conn, time.monotonic() + 60)
            started = time.monotonic()
            for i in range(args.jobs):
                pause = started + i / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pgqueue.enqueue(conn, "noop", {}, queue=QUEUE, meta={"probe": i, "enqueued_at": time.time()})
            _wait_done(conn, time.monotonic() + 60)
            rows = conn.execute(WAITS, {"queue": QUEUE}).fetchall()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        pgqueue.delete_finished(conn, QUEUE)
    for label, values in (
        ("claim statement began", [r[0] for r in rows]),
        ("completion committed", [r[1] for r in rows]),
    ):
        pct = stats.percentiles(values, (50.0, 95.0, 99.0))
        print(
            f"{label}, ms after the enqueue ({len(values)} jobs): "
            + ", ".join(f"{k} {v:.2f}" for k, v in pct.items() if v is not None)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
