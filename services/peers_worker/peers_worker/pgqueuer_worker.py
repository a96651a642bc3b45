"""`bench-pgqueuer-worker`: pgqueuer's own `QueueManager` on the shared workloads.

Each child process connects with asyncpg on uvloop (pgqueuer's fastest driver, docs/reference/drivers.md),
to pgqueuer's tables in the schema `pgqueuer` (`PGQUEUER_SCHEMA`, docs/reference/database-setup.md), and
registers one entrypoint `<queue>:<workload>` per workload of the registry: pgqueuer has no queue names, and
a manager dequeues only the entrypoints it registered, so the prefix keeps the harness's queues apart.
Each entrypoint runs the job through `shared.contract.execute` in a thread pool of `--slots` threads (the
workloads are synchronous; pgqueuer requires async entrypoints and says to wrap blocking code in a
thread). With `--execution inline` the entrypoint calls it directly, on the event loop, with no thread
hand-off: a no-op job costs no thread switch, but a blocking body holds the loop, so a process runs one body
at a time (docs/benchmarks.md, "The peers' settings"). `QueueManager.run` takes `--batch-size` jobs per
dequeue, with `max_concurrent_tasks` at the least pgqueuer allows (twice the batch, and never fewer than the
slots), in either mode.

Crash recovery is pgqueuer's heartbeat (docs/guides/heartbeat.md): a picked job whose heartbeat is older
than `--heartbeat-timeout` seconds is picked again, by the next dequeue; no notification announces such a
job, so an idle manager finds it at its polling fallback, every `--dequeue-timeout` seconds
(docs/guides/performance-tuning.md, "NOTIFY channel and polling fallback"). Retries of a failing job follow the shared policy
(`shared.contract.retry_delay`) through pgqueuer's database-level `RetryRequested`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from shared import contract, peers, settings, spool, workloads

from . import supervisor

ADAPTER = "pgqueuer"
SCHEMA = peers.PGQUEUER_SCHEMA
DEFAULT_BATCH = 500


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench-pgqueuer-worker", description="Run pgqueuer queue managers on the shared workloads."
    )
    supervisor.common_arguments(p)
    p.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help="jobs per dequeue (pgqueuer's default: 10)"
    )
    p.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=10.0,
        help="seconds after which a picked job without heartbeat is picked again (pgqueuer's default: 30)",
    )
    p.add_argument(
        "--dequeue-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for a notification before polling (pgqueuer's default: 30)",
    )
    return p


async def _child(args: argparse.Namespace) -> int:
    os.environ["PGQUEUER_SCHEMA"] = SCHEMA
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager, RetryRequested
    from pgqueuer.domain.settings import db_settings

    db_settings.cache_clear()
    worker_id = supervisor.child_setup(ADAPTER, args)
    s = settings.load()
    conn = await asyncpg.connect(
        s.queue_database_url, server_settings={"application_name": "bench-pgqueuer-worker"}
    )
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    inline = args.execution == "inline"
    pool = None if inline else ThreadPoolExecutor(max_workers=args.slots, thread_name_prefix="job")
    loop = asyncio.get_running_loop()

    def register(queue: str, workload: str) -> None:
        @qm.entrypoint(peers.pgqueuer_entrypoint(queue, workload))
        async def run(job: Any) -> None:
            body = json.loads(job.payload) if job.payload else {}
            attempt = int(job.attempts) + 1
            ctx = contract.Ctx(adapter=ADAPTER, attempt=attempt, worker_id=worker_id, job_id=int(job.id))
            try:
                if pool is None:
                    contract.execute(workload, body.get("params"), body.get("meta"), ctx)
                else:
                    await loop.run_in_executor(
                        pool, contract.execute, workload, body.get("params"), body.get("meta"), ctx
                    )
            except workloads.UnknownTask:
                raise
            except Exception as exc:
                if attempt >= contract.RETRY_MAX_ATTEMPTS:
                    raise
                delay = timedelta(seconds=contract.retry_delay(attempt))
                raise RetryRequested(delay=delay, reason=str(exc)) from exc

    for queue in supervisor.queues_of(args):
        for name in workloads.REGISTRY:
            register(queue, name)
    loop.add_signal_handler(signal.SIGTERM, qm.shutdown.set)
    loop.add_signal_handler(signal.SIGINT, qm.shutdown.set)
    supervisor.say_ready(args)
    try:
        await qm.run(
            batch_size=args.batch_size,
            max_concurrent_tasks=max(2 * args.batch_size, args.slots),
            heartbeat_timeout=timedelta(seconds=args.heartbeat_timeout),
            dequeue_timeout=timedelta(seconds=args.dequeue_timeout),
        )
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        rec = spool.current()
        if rec is not None:
            rec.close()
    return 0


def run_child(args: argparse.Namespace) -> int:
    import uvloop

    return uvloop.run(_child(args))


def info(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "pgqueuer_version": version("pgqueuer"),
        "driver": "asyncpg+uvloop",
        "batch_size": args.batch_size,
        "max_concurrent_tasks": max(2 * args.batch_size, args.slots),
        "execution": args.execution,
        "threads": 0 if args.execution == "inline" else args.slots,
        "heartbeat_timeout_seconds": args.heartbeat_timeout,
        "dequeue_timeout_seconds": args.dequeue_timeout,
        "schema": SCHEMA,
    }


def main(argv: list[str] | None = None) -> int:
    return supervisor.main(ADAPTER, "peers_worker.pgqueuer_worker", parser(), argv, run_child, info)


if __name__ == "__main__":
    sys.exit(main())
