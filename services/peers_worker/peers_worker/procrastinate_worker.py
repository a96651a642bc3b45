"""`bench-procrastinate-worker`: procrastinate's own worker (`App.run_worker_async`) on the shared workloads.

Each child process opens a procrastinate `App` on a `PsycopgConnector` whose connections use the
schema `procrastinate` (procrastinate's documented way to use another schema: the connection's
`search_path`, docs/howto/production/schema.md), registers one task `bench.<workload>` per workload
of the registry, each running through `shared.contract.execute`, and runs the worker with
`concurrency=--slots` on `--queues`. Synchronous tasks run in threads (procrastinate runs a sync task
through `asgiref.sync_to_async`), so a process's slots are its sub-workers. With `--execution inline` each
task is registered as an async task that calls the body directly, on the event loop, with no thread
hand-off: the sub-workers still bound the jobs a process holds, but a blocking body holds the loop, so a
process runs one body at a time (docs/benchmarks.md, "The peers' settings").

Crash recovery is procrastinate's stalled-job retry (docs/howto/production/retry_stalled_jobs.md): workers
heartbeat every `--heartbeat-every` seconds, and every process retries, every `--stalled-check` seconds,
the jobs of workers whose heartbeat is older than `--stalled-after` seconds. The docs run that body as a
periodic task at minute granularity; it runs here as a loop in each worker so that it acts within seconds.

Retries of a failing job follow the shared policy (`shared.contract.retry_delay`) through a procrastinate
retry strategy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
from typing import Any

import procrastinate
from procrastinate import retry as retry_module

from shared import contract, peers, settings, spool, workloads

from . import supervisor

log = logging.getLogger("peers_worker.procrastinate")

ADAPTER = "procrastinate"
SCHEMA = peers.PROCRASTINATE_SCHEMA


class SharedRetry(retry_module.BaseRetryStrategy):
    """The one retry policy of the benchmark (`shared.contract`), as a procrastinate retry strategy."""

    def get_retry_decision(self, *, exception: BaseException, job: Any) -> Any:
        attempt = int(job.attempts) + 1
        if attempt >= contract.RETRY_MAX_ATTEMPTS or isinstance(exception, workloads.UnknownTask):
            return None
        return retry_module.RetryDecision(retry_in={"seconds": math.ceil(contract.retry_delay(attempt))})


def register_tasks(app: procrastinate.App, worker_id: str, execution: str = "threads") -> None:
    for name in workloads.REGISTRY:
        _register_one(app, name, worker_id, inline=execution == "inline")


def _register_one(app: procrastinate.App, workload: str, worker_id: str, *, inline: bool) -> None:
    def body(context: procrastinate.JobContext, params: dict[str, Any], meta: dict[str, Any]) -> Any:
        ctx = contract.Ctx(
            adapter=ADAPTER, attempt=int(context.job.attempts) + 1, worker_id=worker_id, job_id=context.job.id
        )
        return contract.execute(workload, params, meta, ctx)

    async def run_inline(
        context: procrastinate.JobContext, params: dict[str, Any], meta: dict[str, Any]
    ) -> Any:
        return body(context, params, meta)

    # procrastinate awaits an async task on its loop, and runs a sync one in a thread (`sync_to_async`).
    task = app.task(name=peers.PROCRASTINATE_TASK_PREFIX + workload, pass_context=True, retry=SharedRetry())
    task(run_inline if inline else body)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench-procrastinate-worker", description="Run procrastinate workers on the shared workloads."
    )
    supervisor.common_arguments(p)
    p.add_argument(
        "--polling-interval",
        type=float,
        default=5.0,
        help="seconds between polls when no notification came (procrastinate's default: 5)",
    )
    p.add_argument(
        "--heartbeat-every", type=float, default=2.0, help="procrastinate's update_heartbeat_interval"
    )
    p.add_argument("--stalled-after", type=float, default=10.0, help="seconds without heartbeat: stalled")
    p.add_argument("--stalled-check", type=float, default=2.0, help="seconds between stalled-job sweeps")
    return p


async def _retry_stalled(app: procrastinate.App, queues: list[str], after: float, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            for queue in queues:
                for job in await app.job_manager.get_stalled_jobs(queue=queue, seconds_since_heartbeat=after):
                    await app.job_manager.retry_job(job)
        except Exception as exc:  # noqa: BLE001 - a failed sweep is retried at the next one
            log.warning("stalled-job sweep failed: %s", exc)


async def _child(args: argparse.Namespace) -> int:
    worker_id = supervisor.child_setup(ADAPTER, args)
    s = settings.load()
    queues = supervisor.queues_of(args)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            **peers.procrastinate_connection(s.queue_database_url, "bench-procrastinate-worker"),
            min_size=1,
            max_size=args.slots + 4,
        )
    )
    register_tasks(app, worker_id, args.execution)
    async with app.open_async():
        sweeper = asyncio.create_task(
            _retry_stalled(app, queues, args.stalled_after, args.stalled_check), name="stalled-sweeper"
        )
        supervisor.say_ready(args)
        try:
            await app.run_worker_async(
                queues=queues,
                concurrency=args.slots,
                fetch_job_polling_interval=args.polling_interval,
                update_heartbeat_interval=args.heartbeat_every,
                stalled_worker_timeout=args.stalled_after,
                install_signal_handlers=True,
            )
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
    rec = spool.current()
    if rec is not None:
        rec.close()
    return 0


def run_child(args: argparse.Namespace) -> int:
    return asyncio.run(_child(args))


def info(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "procrastinate_version": procrastinate.__version__,
        "concurrency": args.slots,
        "execution": args.execution,
        "fetch_job_polling_interval": args.polling_interval,
        "listen_notify": True,
        "update_heartbeat_interval": args.heartbeat_every,
        "stalled_after_seconds": args.stalled_after,
        "stalled_check_seconds": args.stalled_check,
        "schema": SCHEMA,
    }


def main(argv: list[str] | None = None) -> int:
    return supervisor.main(ADAPTER, "peers_worker.procrastinate_worker", parser(), argv, run_child, info)


if __name__ == "__main__":
    sys.exit(main())
