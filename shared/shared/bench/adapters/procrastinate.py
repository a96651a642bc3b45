"""procrastinate as a contender: its worker service (`bench-procrastinate-worker`) and its client API.

Slots map to `--processes P --slots N`: P processes, each running procrastinate's worker with
`concurrency=N` (its sub-workers; the shared workloads are synchronous, and procrastinate runs a
synchronous task in a thread). The variant is the execution: `threads` by default, `inline` under
`--full` (each task an async task that calls the job body on the event loop). Bulk is procrastinate's batch
defer (`JobDeferrer.batch_defer`, one statement per call) per batch of `BULK_BATCH` jobs; one-by-one is
`defer`, one job per transaction.
Both go through a `SyncPsycopgConnector` on the schema `procrastinate` (docs/howto/production/schema.md).
The settings and their sources are in docs/benchmarks.md, "The peers' settings". procrastinate tells the
end of a run from its own table (its jobs' `status`), so it also runs with recording off (the recording pair).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import procrastinate

from shared import peers, settings
from shared.bench import store
from shared.bench.adapters.base import (
    PEER_EXECUTION,
    Enqueuer,
    SupervisedAdapter,
    announced_queue,
    meta,
    peer_execution,
    postgres_promise,
)

if TYPE_CHECKING:  # pragma: no cover - types only
    import psycopg

    from shared.bench.spec import Case

SCHEMA = peers.PROCRASTINATE_SCHEMA
BULK_BATCH = 5000
"""Jobs per `batch_defer` call in bulk mode."""
STALLED_AFTER_SECONDS = 10.0
"""Seconds without a worker heartbeat before its jobs count as stalled and are retried (procrastinate's
own default is 30 s with a heartbeat every 10 s; the benchmark's fault runs wait 30 s at most)."""


class ProcrastinateEnqueuer(Enqueuer):
    def __init__(self, case: Case, queue: str, env: Mapping[str, str]) -> None:
        super().__init__(case, queue, env)
        url = settings.load(env).queue_database_url
        self.app = procrastinate.App(
            connector=procrastinate.SyncPsycopgConnector(
                **peers.procrastinate_connection(url, "bench-harness-enqueue"), min_size=1, max_size=1
            )
        )
        self.app.open()
        self.deferrer = self.app.configure_task(peers.PROCRASTINATE_TASK_PREFIX + self.workload, queue=queue)

    def send_one(self, run_id: int, seq: int, scheduled_at: float | None = None) -> None:
        self.deferrer.defer(params=self.params, meta=meta(run_id, seq, time.time(), scheduled_at))

    def send_many(self, run_id: int, seqs: Sequence[int]) -> None:
        for i in range(0, len(seqs), BULK_BATCH):
            now = time.time()
            jobs: list[dict[str, Any]] = [
                {"params": self.params, "meta": meta(run_id, s, now)} for s in seqs[i : i + BULK_BATCH]
            ]
            self.deferrer.batch_defer(*jobs)

    def close(self) -> None:
        self.app.close()


class Procrastinate(SupervisedAdapter):
    name = "procrastinate"
    summary = "procrastinate: a PostgreSQL task queue for Python (psycopg 3, LISTEN/NOTIFY, async workers)"
    options = (PEER_EXECUTION,)
    backend_prefixes: ClassVar[tuple[str, ...]] = ("bench-procrastinate",)
    queue_tables: ClassVar[tuple[str, ...]] = (f"{SCHEMA}.procrastinate_jobs",)
    counts_completions = True
    packages: ClassVar[tuple[str, ...]] = ("procrastinate", "psycopg", "psycopg-pool")
    worker_script = "bench-procrastinate-worker"

    def default_variants(self, *, brokers: Sequence[str], full: bool) -> list[dict[str, str]]:
        return [{"execution": e} for e in (peers.EXECUTIONS if full else peers.EXECUTIONS[:1])]

    def slot_mapping(self, case: Case) -> str:
        inline = self.resolve(case.options)["execution"] == "inline"
        return (
            f"procrastinate: {case.processes} process(es) x worker concurrency {case.slots} "
            f"({case.total_slots} slots{', job bodies inline on the event loop' if inline else ''})"
        )

    queue_defaults: ClassVar[dict[str, float]] = {
        "jobs": 5_000,
        "one_by_one_jobs": 1_000,
        "latency_seconds": 10,
        "large": 0,
    }

    def add_queue_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--procrastinate-processes", type=int, default=2, help="worker processes")
        p.add_argument(
            "--procrastinate-concurrency", type=int, default=5, help="worker concurrency per process"
        )
        p.add_argument(
            "--procrastinate-executions",
            default=peers.EXECUTIONS[0],
            help=f"how job bodies run ({', '.join(peers.EXECUTIONS)}), comma-separated",
        )

    def queue_variants(self, args: argparse.Namespace) -> list[tuple[dict[str, str], int, int]]:
        from shared.bench.usage import choices

        executions = choices(args.procrastinate_executions, peers.EXECUTIONS, "execution") or []
        return [
            ({"execution": e}, args.procrastinate_processes, args.procrastinate_concurrency)
            for e in executions
        ]

    def configuration(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        execution = self.resolve(options)["execution"]
        return {
            "schema": SCHEMA,
            "connector": "PsycopgConnector (worker), SyncPsycopgConnector (enqueue)",
            "execution": peer_execution(
                execution,
                "procrastinate runs a sync task through asgiref's sync_to_async, in the loop's default executor",
            ),
            "listen_notify": True,
            "fetch_job_polling_interval": 5.0,
            "update_heartbeat_interval": 2.0,
            "stalled_worker_timeout": STALLED_AFTER_SECONDS,
            "stalled_jobs_retry": f"every 2 s, jobs of workers silent for {STALLED_AFTER_SECONDS:.0f} s",
            "bulk": f"batch_defer, {BULK_BATCH} jobs per call",
        }

    def durability(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        return postgres_promise(s.queue_database_url, "a defer")

    def redelivery(self, case: Case) -> str | None:
        return (
            "procrastinate's stalled-job retry: every worker process retries, every 2 s, the jobs of workers "
            f"whose heartbeat (every 2 s) is older than {STALLED_AFTER_SECONDS:g} s (procrastinate's "
            '`get_stalled_jobs`, docs/benchmarks.md, "The peers\' settings")'
        )

    def worker_argv(self, case: Case, queue: str, bin_dir: Path) -> list[str]:
        argv = [
            *self.supervised_argv(case, queue, bin_dir),
            "--execution",
            self.resolve(case.options)["execution"],
        ]
        return [*argv, "--stalled-after", str(STALLED_AFTER_SECONDS)]

    def attached_queue(self, workers: Sequence[Mapping[str, Any]], options: Mapping[str, str]) -> str | None:
        return announced_queue(workers, self.name, {"execution": self.resolve(options)["execution"]})

    def enqueuer(self, case: Case, queue: str, env: Mapping[str, str]) -> Enqueuer:
        return ProcrastinateEnqueuer(case, queue, env)

    def recording_pair_jobs(self, options: Mapping[str, str]) -> int:
        # Some hundreds of jobs per second here: 1,000 take about 3 s with their enqueue on a quiet host
        # (3,000 took 19 to 23 s at load 8, docs/benchmark.md, "Recording overhead").
        return 1_000

    def busy(self, conn: psycopg.Connection, queue: str) -> bool:
        return bool(store.scalar(conn, "procrastinate_busy", {"queue": queue}))

    def completed(self, conn: psycopg.Connection, queue: str) -> int:
        return int(store.scalar(conn, "procrastinate_completed", {"queue": queue}) or 0)

    def settle(self, conn: psycopg.Connection, queue: str) -> tuple[str, ...]:
        # The harness owns the queue; in production procrastinate's worker option `delete_jobs` or its
        # `remove_old_jobs` task would delete finished jobs. Its triggers name its tables unqualified.
        with conn.transaction():
            conn.execute(f"SET LOCAL search_path TO {SCHEMA}")
            conn.execute(
                "DELETE FROM procrastinate_jobs WHERE queue_name = %s AND status IN ('succeeded', 'failed')",
                (queue,),
            )
        return (f"{SCHEMA}.procrastinate_jobs", f"{SCHEMA}.procrastinate_events")


ADAPTER = Procrastinate()
