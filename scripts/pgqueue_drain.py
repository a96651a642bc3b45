"""A drain of N no-op jobs by one `bench-pgqueue-worker`, to profile it (docs/benchmarks.md, "pgqueue").

    .venv/bin/python scripts/pgqueue_drain.py --jobs 100000 --raw
    .venv/bin/python scripts/pgqueue_drain.py --jobs 100000 \\
        --profile ".venv/bin/py-spy record --subprocesses --rate 250 --format raw -o drain.raw --"

On `DATABASE_URL` (migrated): enqueues the jobs in bulk with the harness's meta (so the worker records
them), starts the worker (`--processes 2 --threads 4`, under `--profile` when given), waits until the
queue is empty, and prints the drain rate from the queue's first claim to its last completion; with
`--raw`, the raw drain ceiling of the same database first (`shared.bench.calibration.raw_drain`). The
worker is stopped by SIGTERM to its supervisor, so a profiler around it writes its output.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from shared import db, pgqueue, settings
from shared.bench import calibration, workers

QUEUE = "drainprofile"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--no-record", action="store_true", help="the worker's --no-record")
    p.add_argument("--raw", action="store_true", help="measure the raw drain ceiling first")
    p.add_argument("--profile", default="", help="a command line to run the worker under, ending in --")
    args = p.parse_args()
    url = settings.load().queue_database_url
    exe = Path(sys.executable).parent / "bench-pgqueue-worker"
    with db.connect(url, autocommit=True) as conn:
        pgqueue.delete_finished(conn, QUEUE)
        conn.execute("VACUUM ANALYZE queue.pgqueue_jobs")
        if args.raw:
            print(f"raw drain ceiling: {calibration.raw_drain(url, args.jobs):,.0f} jobs/s")
        now = time.time()
        pgqueue.enqueue_many(
            conn,
            (
                pgqueue.JobSpec("noop", {}, queue=QUEUE, meta={"run_id": 0, "seq": i, "enqueued_at": now})
                for i in range(args.jobs)
            ),
        )
        conn.execute("ANALYZE queue.pgqueue_jobs")
        argv = [str(exe), "--processes", "2", "--threads", "4", "--queues", QUEUE, "--loglevel", "WARNING"]
        if args.no_record:
            argv.append("--no-record")
        prefix = shlex.split(args.profile)
        env = workers.worker_env(url, Path(tempfile.mkdtemp(prefix="pgqueue-drain-")))
        proc = subprocess.Popen([*prefix, *argv], env=env, start_new_session=True)
        try:
            while pgqueue.queue_busy(conn, QUEUE):
                time.sleep(0.05)
            span = pgqueue.finished_span(conn, QUEUE)
        finally:
            supervisor = proc.pid
            if prefix:  # the worker's supervisor is the profiler's child
                kids = [
                    c.pid for c in psutil.Process(proc.pid).children() if exe.name in " ".join(c.cmdline())
                ]
                supervisor = kids[0] if kids else proc.pid
            os.kill(supervisor, signal.SIGTERM)
            proc.wait(120)
        if span is not None:
            first, last, done = span
            print(f"drain: {done:,} jobs in {last - first:.2f} s, {done / (last - first):,.0f} jobs/s")
        pgqueue.delete_finished(conn, QUEUE)
        conn.execute("DELETE FROM job_events WHERE run_id = 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
