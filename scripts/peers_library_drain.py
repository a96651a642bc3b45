"""A drain of no-op jobs through procrastinate or pgqueuer alone: the library's own API, no harness.

Separates what a peer does from what the benchmark adds (docs/benchmarks.md, "Why the peers' sized
drains are slower than their probes"). On a scratch database (created if missing, the library's tables
installed by its own installer in the schema `public`):

1. P worker processes start (`--processes`, each the library's own worker: procrastinate's
   `run_worker_async` with `concurrency=--slots`, pgqueuer's `QueueManager.run` with `--batch`), and say
   they are ready;
2. `--start held`: they are stopped (SIGSTOP) while N jobs are enqueued in bulk, then continued (SIGCONT),
   as `make bench` holds its drains; `--start after`: the jobs are enqueued first and the workers start
   after (as `python -m shared.bench queue` does); `--start before`: enqueued while they run;
3. each job increments a counter shared with this process (no database poll while they drain), and
   records its start and finish; the drain is the first start to the last finish.

    .venv/bin/python scripts/peers_library_drain.py pgqueuer --jobs 500,5000,20000
    .venv/bin/python scripts/peers_library_drain.py procrastinate --jobs 500,5000 --sync

Knobs that the benchmark's workers set, to try one at a time: `--sync` (a synchronous job in a thread:
procrastinate's own `sync_to_async`, pgqueuer's entrypoint through a pool of `--slots` threads),
`--max-concurrent` (pgqueuer's `max_concurrent_tasks`, 0: unlimited), `--entrypoints` (pgqueuer: more
registered entrypoints than the one the jobs use), `--stats` (the queue table's statistics at the
release), `--warm` (jobs through the workers before the drain, as long-lived workers have run some).
`--explain` prints the plan of the library's claim at each depth instead. Prints one JSON line per size
(`worker_cpu_ms_per_job` includes the `--warm` jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/peers_library_drain"
QUEUE = "drain"
READY_CPU = [0.0]
"""A worker process's CPU seconds when it said it was ready (its start-up is not charged)."""


class Counters:
    """What the workers share with the main process: jobs done, first start, last finish."""

    def __init__(self) -> None:
        self.done = mp.Value("q", 0)
        self.first = mp.Value("d", 0.0)
        self.last = mp.Value("d", 0.0)
        self.cpu = mp.Value("d", 0.0)

    def reset(self) -> None:
        self.done.value, self.first.value, self.last.value = 0, 0.0, 0.0
        self.cpu.value = 0.0

    def charge(self, since: float) -> None:
        """Add this process's CPU seconds since `since` (its ready signal) to the workers' total."""
        with self.cpu.get_lock():
            self.cpu.value += time.process_time() - since

    def started(self, at: float) -> None:
        with self.first.get_lock():
            if self.first.value == 0.0 or at < self.first.value:
                self.first.value = at

    def finished(self, at: float) -> None:
        with self.last.get_lock():
            self.last.value = max(self.last.value, at)
        with self.done.get_lock():
            self.done.value += 1


def noop(counters: Counters) -> None:
    counters.started(time.time())
    counters.finished(time.time())


# ---- pgqueuer -------------------------------------------------------------------------------------


def pgqueuer_install(url: str) -> None:
    import psycopg
    from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment

    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.pgqueuer')").fetchone()[0] is None:  # type: ignore[index]
            conn.execute(QueryBuilderEnvironment().build_install_query())  # type: ignore[arg-type]
        conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")


def pgqueuer_enqueue(url: str, n: int, one_by_one: bool) -> None:
    import psycopg
    from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
    from pgqueuer.adapters.persistence.queries import SyncQueries

    with psycopg.connect(url, autocommit=True) as conn:
        queries = SyncQueries(SyncPsycopgDriver(conn))
        if one_by_one:
            for _ in range(n):
                queries.enqueue(f"{QUEUE}:noop", b"{}")
            return
        for i in range(0, n, 5000):
            k = min(5000, n - i)
            queries.enqueue([f"{QUEUE}:noop"] * k, [b"{}"] * k, [0] * k)


async def pgqueuer_worker(args: argparse.Namespace, counters: Counters, ready: Any) -> None:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager

    conn = await asyncpg.connect(args.url)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    pool = ThreadPoolExecutor(max_workers=args.slots)
    loop = asyncio.get_running_loop()

    if args.sync:

        @qm.entrypoint(f"{QUEUE}:noop")
        async def run_sync(job: Any) -> None:
            await loop.run_in_executor(pool, noop, counters)

    else:

        @qm.entrypoint(f"{QUEUE}:noop")
        async def run_async(job: Any) -> None:
            noop(counters)

    for i in range(args.entrypoints - 1):

        @qm.entrypoint(f"{QUEUE}:other{i}")
        async def other(job: Any) -> None:  # never enqueued
            return None

    loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
    READY_CPU[0] = time.process_time()
    ready.set()
    await qm.run(
        batch_size=args.batch,
        max_concurrent_tasks=args.max_concurrent or None,
        dequeue_timeout=timedelta(seconds=5),
        heartbeat_timeout=timedelta(seconds=10),
    )
    pool.shutdown()


def pgqueuer_child(args: argparse.Namespace, counters: Counters, ready: Any) -> None:
    import uvloop

    uvloop.run(pgqueuer_worker(args, counters, ready))
    counters.charge(READY_CPU[0])


# ---- procrastinate --------------------------------------------------------------------------------


def procrastinate_app(url: str, sync: bool, pool_max: int) -> Any:
    import procrastinate

    connector: Any
    if sync:
        connector = procrastinate.SyncPsycopgConnector(conninfo=url)
    else:
        connector = procrastinate.PsycopgConnector(conninfo=url, max_size=pool_max)
    return procrastinate.App(connector=connector)


def procrastinate_install(url: str) -> None:
    import psycopg
    from procrastinate.schema import SchemaManager

    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.procrastinate_jobs')").fetchone()[0] is None:  # type: ignore[index]
            conn.execute(SchemaManager.get_schema())  # type: ignore[arg-type]
        conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_workers CASCADE")


def procrastinate_enqueue(url: str, n: int, one_by_one: bool) -> None:
    app = procrastinate_app(url, True, 1)
    with app.open():
        deferrer = app.configure_task("noop", queue=QUEUE)
        if one_by_one:
            for _ in range(n):
                deferrer.defer()
            return
        for i in range(0, n, 5000):
            deferrer.batch_defer(*({} for _ in range(min(5000, n - i))))


async def procrastinate_worker(args: argparse.Namespace, counters: Counters, ready: Any) -> None:
    app = procrastinate_app(args.url, False, args.slots + 4)

    if args.sync:

        @app.task(name="noop")
        def run_sync() -> None:
            noop(counters)

    else:

        @app.task(name="noop")
        async def run_async() -> None:
            noop(counters)

    async with app.open_async():
        READY_CPU[0] = time.process_time()
        ready.set()
        await app.run_worker_async(
            queues=[QUEUE],
            concurrency=args.slots,
            install_signal_handlers=True,
            update_heartbeat_interval=2.0,
            stalled_worker_timeout=10.0,
        )


def procrastinate_child(args: argparse.Namespace, counters: Counters, ready: Any) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(procrastinate_worker(args, counters, ready))
    counters.charge(READY_CPU[0])


LIBRARIES = {
    "pgqueuer": (pgqueuer_install, pgqueuer_enqueue, pgqueuer_child, "pgqueuer"),
    "procrastinate": (
        procrastinate_install,
        procrastinate_enqueue,
        procrastinate_child,
        "procrastinate_jobs",
    ),
}


# ---- the drain ------------------------------------------------------------------------------------


def start_workers(args: argparse.Namespace, counters: Counters) -> list[mp.Process]:
    _, _, child, _ = LIBRARIES[args.library]
    procs = []
    for _ in range(args.processes):
        ready = mp.Event()
        p = mp.Process(target=child, args=(args, counters, ready), daemon=True)
        p.start()
        if not ready.wait(30):
            raise SystemExit("error: a worker did not start")
        procs.append(p)
    time.sleep(0.5)  # their LISTEN and first poll after the ready signal
    return procs


def stop_workers(procs: list[mp.Process]) -> None:
    for p in procs:
        if p.pid is not None:
            os.kill(p.pid, signal.SIGCONT)
            os.kill(p.pid, signal.SIGTERM)
    for p in procs:
        p.join(30)
        if p.is_alive():
            p.kill()


def analyze(url: str, table: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def stale_statistics(url: str, table: str, enqueue: Any) -> None:
    """The statistics a drained queue table gets from an autoanalyze (or the harness's ANALYZE): its pages,
    none of them holding a live row. One batch enqueued and deleted leaves the pages; ANALYZE sees none live."""
    import psycopg
    from psycopg import sql

    enqueue(url, 2000, False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
    analyze(url, table)


def warm(args: argparse.Namespace, counters: Counters, enqueue: Any) -> None:
    """Jobs one at a time through the running workers before the drain, each awaited, as a long-lived
    worker has taken jobs (and polled) on a near-empty table before a backlog forms: its connections'
    prepared statements have run more than five times there (PostgreSQL may keep a generic plan then)."""
    for i in range(args.warm):
        enqueue(args.url, 1, True)
        deadline = time.monotonic() + 10
        while counters.done.value <= i and time.monotonic() < deadline:
            time.sleep(0.01)
    time.sleep(0.5)
    counters.reset()


def explain(args: argparse.Namespace, n: int) -> None:
    """The plan of the library's own claim at depth `n` in the chosen statistics state, run once and rolled
    back: pgqueuer's dequeue as its query builder writes it for the benchmark's worker (7 entrypoints, its
    batch, `max_concurrent_tasks`), procrastinate's `procrastinate_fetch_job_v2` (its inner statement,
    through auto_explain at NOTICE level)."""
    import uuid

    import psycopg

    install, enqueue, _, table = LIBRARIES[args.library]
    install(args.url)
    if args.stats == "stale":
        stale_statistics(args.url, table, enqueue)
    enqueue(args.url, n, False)
    if args.stats == "analyzed":
        analyze(args.url, table)
    with psycopg.connect(args.url) as conn:
        conn.add_notice_handler(lambda d: print(d.message_primary))
        if args.library == "pgqueuer":
            from pgqueuer.adapters.persistence.qb import QueryQueueBuilder

            eps = [f"{QUEUE}:noop", *(f"{QUEUE}:other{i}" for i in range(args.entrypoints - 1))]
            q = QueryQueueBuilder().build_dequeue_query(
                batch_size=args.batch,
                entrypoints=eps,  # type: ignore[arg-type]
                concurrency_limits=[0] * len(eps),
                queue_manager_id=uuid.uuid4(),  # type: ignore[arg-type]
                global_concurrency_limit=args.max_concurrent or None,
                heartbeat_timeout=timedelta(seconds=10),
            )
            cur = psycopg.RawCursor(conn)
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + q.sql, q.args)  # type: ignore[operator]
            for (line,) in cur.fetchall():
                print(line)
        else:
            for setting in (
                "auto_explain.log_min_duration = 0",
                "auto_explain.log_nested_statements = on",
                "auto_explain.log_analyze = on",
                "auto_explain.log_buffers = on",
                "auto_explain.log_level = notice",
            ):
                conn.execute("LOAD 'auto_explain'")
                conn.execute("SET LOCAL " + setting)  # type: ignore[operator]
            conn.execute("SELECT * FROM procrastinate_fetch_job_v2(ARRAY[%s]::varchar[], NULL)", (QUEUE,))
        conn.rollback()


def drain(args: argparse.Namespace, n: int, counters: Counters) -> dict[str, Any]:
    install, enqueue, _, table = LIBRARIES[args.library]
    install(args.url)
    if args.stats == "stale":
        stale_statistics(args.url, table, enqueue)
    counters.reset()
    procs: list[mp.Process] = []
    if args.start in ("held", "before"):
        procs = start_workers(args, counters)
    if args.warm and procs:
        warm(args, counters, enqueue)
    if args.start == "held":
        for p in procs:
            os.kill(p.pid, signal.SIGSTOP)  # type: ignore[arg-type]
    t0 = time.time()
    enqueue(args.url, n, args.one_by_one)
    enqueued = time.time() - t0
    if args.stats == "analyzed":
        analyze(args.url, table)
    released = time.time()
    if args.start == "held":
        for p in procs:
            os.kill(p.pid, signal.SIGCONT)  # type: ignore[arg-type]
    elif args.start == "after":
        procs = start_workers(args, counters)
        released = time.time()
    deadline = time.monotonic() + args.timeout
    while counters.done.value < n and time.monotonic() < deadline:
        time.sleep(0.02)
    done = counters.done.value
    first, last = counters.first.value, counters.last.value
    stop_workers(procs)
    span = last - first if done else 0.0
    return {
        "library": args.library,
        "jobs": n,
        "done": done,
        "start": args.start,
        "sync": args.sync,
        "one_by_one": args.one_by_one,
        "batch": args.batch if args.library == "pgqueuer" else None,
        "max_concurrent": args.max_concurrent if args.library == "pgqueuer" else None,
        "entrypoints": args.entrypoints if args.library == "pgqueuer" else None,
        "processes": args.processes,
        "slots": args.slots,
        "stats": args.stats,
        "warm": args.warm,
        "enqueue_s": round(enqueued, 3),
        "drain_s": round(span, 3),
        "release_to_last_s": round(last - released, 3) if done else None,
        "rate": round(done / span) if span > 0 else None,
        "worker_cpu_ms_per_job": round(1000 * counters.cpu.value / done, 3) if done else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("library", choices=sorted(LIBRARIES))
    p.add_argument("--url", default=DEFAULT_URL, help="a scratch database (created if missing)")
    p.add_argument("--jobs", default="500,5000,20000", help="drain sizes, comma-separated")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--slots", type=int, default=5, help="procrastinate concurrency, pgqueuer threads")
    p.add_argument("--batch", type=int, default=500, help="pgqueuer batch_size")
    p.add_argument("--max-concurrent", type=int, default=0, help="pgqueuer max_concurrent_tasks (0: none)")
    p.add_argument("--entrypoints", type=int, default=1, help="pgqueuer entrypoints registered")
    p.add_argument("--sync", action="store_true", help="a synchronous job in a thread")
    p.add_argument("--start", choices=("held", "after", "before"), default="held")
    p.add_argument("--one-by-one", action="store_true", help="enqueue one job per call and transaction")
    p.add_argument(
        "--stats",
        choices=("truncated", "stale", "analyzed"),
        default="truncated",
        help="the queue table's statistics at the release: as after TRUNCATE (none), stale (pages with no "
        "live row, as an autoanalyze of a drained table leaves them), analyzed (ANALYZE after the enqueue)",
    )
    p.add_argument(
        "--warm", type=int, default=0, help="jobs run one at a time through the workers before the drain"
    )
    p.add_argument(
        "--explain", action="store_true", help="print the plan of the claim at each depth, no drain"
    )
    p.add_argument("--timeout", type=float, default=120.0)
    args = p.parse_args()
    dbname = args.url.rsplit("/", 1)[1].split("?")[0]
    subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", dbname], capture_output=True, check=False
    )
    if args.explain:
        for n in (int(x) for x in args.jobs.split(",")):
            print(f"-- {args.library}, {n} jobs queued, statistics: {args.stats}")
            explain(args, n)
        return 0
    counters = Counters()
    for n in (int(x) for x in args.jobs.split(",")):
        print(json.dumps(drain(args, n, counters)), flush=True)
    return 0


if __name__ == "__main__":
    mp.set_start_method("fork")
    sys.exit(main())
