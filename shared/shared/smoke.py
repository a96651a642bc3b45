"""A short real end-to-end smoke: enqueue N no-op jobs through every queue that can run them, time each.

`make bench` runs this until the benchmark harness lands. Without `DATABASE_URL` it starts its own
embedded PostgreSQL (and stops it afterwards); it always migrates, starts the workers as separate
processes, and stops them by process group.
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

from shared import celery_app, db, embedded, settings
from shared import migrate as migrate_mod

BIN = Path(sys.executable).parent


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def smoke_celery(url: str, jobs: int, spool_dir: str) -> float:
    queue = f"smoke-{os.getpid()}"
    env = {**os.environ, "DATABASE_URL": url, "BENCH_SPOOL_DIR": spool_dir}
    log = open(Path(spool_dir) / "celery.log", "ab")
    worker = subprocess.Popen(
        [
            str(BIN / "bench-celery-worker"),
            "--queues",
            queue,
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        s = settings.load({"DATABASE_URL": url})
        _wait(
            lambda: _count(
                url, "SELECT count(*) FROM queue.workers WHERE adapter = 'celery' AND stopped_at IS NULL"
            ),
            60,
            "the Celery worker's heartbeat",
        )
        app = celery_app.make_app("postgres", s=s)
        run_id = int(time.time())
        started = time.monotonic()
        with app.producer_or_acquire() as producer:
            for seq in range(jobs):
                celery_app.send(
                    app,
                    "noop",
                    {},
                    {"run_id": run_id, "seq": seq, "enqueued_at": time.time()},
                    queue=queue,
                    producer=producer,
                )
        _wait(
            lambda: (
                _count(
                    url,
                    "SELECT count(DISTINCT seq) FROM job_events WHERE kind = 'finish' AND run_id = %s",
                    (run_id,),
                )
                >= jobs
            ),
            600,
            f"{jobs} Celery finishes",
        )
        return time.monotonic() - started
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
        log.close()


def _count(url: str, sql: str, params: tuple = ()) -> int:
    with db.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
        return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=500, help="no-op jobs per queue (default 500)")
    args = p.parse_args(argv)
    if args.jobs <= 0:
        print("error: --jobs must be positive", file=sys.stderr)
        return 2
    cluster = None
    try:
        if os.environ.get("DATABASE_URL"):
            url = settings.load().database_url
        else:
            cluster = embedded.EmbeddedCluster(Path(tempfile.mkdtemp(prefix="bench-smoke-pg-")))
            cluster.start()
            url = cluster.url
            print(f"embedded PostgreSQL at {url}")
        migrate_mod.upgrade(url, url)
        with tempfile.TemporaryDirectory(prefix="bench-smoke-spool-") as spool_dir:
            seconds = smoke_celery(url, args.jobs, spool_dir)
            print(
                f"celery (postgres broker, prefork 2): {args.jobs} no-op jobs in {seconds:.2f} s "
                f"({args.jobs / seconds:.0f} jobs/s)"
            )
        print("pgqueue: engine not built yet (issue: pgqueue)")
    except (settings.ConfigError, db.DatabaseError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if cluster is not None:
            cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
