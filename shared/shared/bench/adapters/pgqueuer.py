"""pgqueuer as a contender: its worker service (`bench-pgqueuer-worker`) and its client API.

Slots map to `--processes P --slots N`: P processes, each running one pgqueuer `QueueManager` (asyncpg on
uvloop) whose entrypoints run the jobs in N threads. The variants are the dequeue batch size: 500 (the
setting at which pgqueuer drains fastest here, docs/benchmarks.md) by default, 10 (pgqueuer's own default)
under `--full`; and the execution: `threads` by default, `inline` under `--full` (the job body called in the
async entrypoint, on the event loop, at the default batch). pgqueuer has no queue names; each harness queue
is an entrypoint prefix (`<queue>:<workload>`). Bulk is `SyncQueries.enqueue` with lists (one statement per
call) per batch of `BULK_BATCH` jobs; one-by-one is `enqueue` of one job, both through psycopg on the schema
`pgqueuer`.
pgqueuer tells the end of a run from its own tables (a finished job leaves its queue table for its log),
so it also runs with recording off (the recording pair).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pgqueuer.adapters.drivers.psycopg import SyncPsycopgDriver
from pgqueuer.adapters.persistence.qb import QueryQueueBuilder
from pgqueuer.adapters.persistence.queries import SyncQueries
from pgqueuer.domain.settings import DBSettings

from shared import db, peers, settings, workloads
from shared.bench import store
from shared.bench.adapters.base import (
    PEER_EXECUTION,
    Enqueuer,
    Option,
    SupervisedAdapter,
    announced_queue,
    meta,
    peer_execution,
    postgres_promise,
)

if TYPE_CHECKING:  # pragma: no cover - types only
    import psycopg

    from shared.bench.spec import Case

SCHEMA = peers.PGQUEUER_SCHEMA
EXECUTIONS = peers.EXECUTIONS
BULK_BATCH = 5000
BATCHES = ("500", "10")
HEARTBEAT_TIMEOUT_SECONDS = 10.0
"""Seconds after which a picked job whose heartbeat stopped is picked again (pgqueuer's default: 30)."""
DEQUEUE_TIMEOUT_SECONDS = 5.0
"""Seconds an idle queue manager waits for a notification before it polls (pgqueuer's default: 30): a job
whose holder died is announced by nothing, so this bounds its recovery with the heartbeat timeout."""


class PgqueuerEnqueuer(Enqueuer):
    def __init__(self, case: Case, queue: str, env: Mapping[str, str]) -> None:
        super().__init__(case, queue, env)
        self.conn = db.connect(settings.load(env).queue_database_url, role="harness-enqueue", autocommit=True)
        self.queries = SyncQueries(
            SyncPsycopgDriver(self.conn), qbq=QueryQueueBuilder(DBSettings(db_schema=SCHEMA))
        )
        self.entrypoint = peers.pgqueuer_entrypoint(queue, self.workload)

    def _payload(self, m: dict[str, Any]) -> bytes:
        return json.dumps({"params": self.params, "meta": m}).encode()

    def send_one(self, run_id: int, seq: int, scheduled_at: float | None = None) -> None:
        self.queries.enqueue(self.entrypoint, self._payload(meta(run_id, seq, time.time(), scheduled_at)))

    def send_many(self, run_id: int, seqs: Sequence[int]) -> None:
        for i in range(0, len(seqs), BULK_BATCH):
            now = time.time()
            chunk = seqs[i : i + BULK_BATCH]
            self.queries.enqueue(
                [self.entrypoint] * len(chunk),
                [self._payload(meta(run_id, s, now)) for s in chunk],
                [0] * len(chunk),
            )

    def close(self) -> None:
        self.conn.close()


class Pgqueuer(SupervisedAdapter):
    name = "pgqueuer"
    summary = "pgqueuer: a PostgreSQL job queue for Python (asyncpg, SKIP LOCKED batches, LISTEN/NOTIFY)"
    options = (
        Option(
            "batch", BATCHES, "500", "jobs per dequeue (pgqueuer's own default: 10)", "batches", tag="batch{}"
        ),
        PEER_EXECUTION,
    )
    backend_prefixes: ClassVar[tuple[str, ...]] = ("bench-pgqueuer",)
    queue_tables: ClassVar[tuple[str, ...]] = (f"{SCHEMA}.pgqueuer",)
    counts_completions = True
    packages: ClassVar[tuple[str, ...]] = ("pgqueuer", "asyncpg", "uvloop")
    worker_script = "bench-pgqueuer-worker"

    def default_variants(self, *, brokers: Sequence[str], full: bool) -> list[dict[str, str]]:
        # --full adds pgqueuer's own batch and the inline execution, each beside the default one
        # (`pgqueuer.batch10`, `pgqueuer.inline`), not their product: inline runs at the default batch.
        threads, inline = EXECUTIONS
        if not full:
            return [{"batch": BATCHES[0], "execution": threads}]
        return [
            *({"batch": b, "execution": threads} for b in BATCHES),
            {"batch": BATCHES[0], "execution": inline},
        ]

    def slot_mapping(self, case: Case) -> str:
        o = self.resolve(case.options)
        how = "threads" if o["execution"] == "threads" else "slots, job bodies inline on the event loop"
        return (
            f"pgqueuer: {case.processes} process(es) x {case.slots} {how}, batch {o['batch']} "
            f"({case.total_slots} slots)"
        )

    queue_defaults: ClassVar[dict[str, float]] = {
        "jobs": 50_000,
        "one_by_one_jobs": 2_000,
        "latency_seconds": 10,
        "large": 0,
    }

    def add_queue_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--pgqueuer-processes", type=int, default=2, help="worker processes")
        p.add_argument("--pgqueuer-threads", type=int, default=5, help="job threads per process")
        p.add_argument(
            "--pgqueuer-batches", default=",".join(BATCHES), help="dequeue batch sizes, comma-separated"
        )
        p.add_argument(
            "--pgqueuer-executions",
            default=EXECUTIONS[0],
            help=f"how job bodies run ({', '.join(EXECUTIONS)}), comma-separated; every batch runs each",
        )

    def queue_variants(self, args: argparse.Namespace) -> list[tuple[dict[str, str], int, int]]:
        from shared.bench.usage import choices

        batches = choices(args.pgqueuer_batches, BATCHES, "batch") or []
        executions = choices(args.pgqueuer_executions, EXECUTIONS, "execution") or []
        return [
            ({"batch": b, "execution": e}, args.pgqueuer_processes, args.pgqueuer_threads)
            for b in batches
            for e in executions
        ]

    def configuration(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        o = self.resolve(options)
        batch = int(o["batch"])
        return {
            "schema": SCHEMA,
            "driver": "asyncpg on uvloop (worker), psycopg (enqueue)",
            "execution": peer_execution(
                o["execution"], "pgqueuer's async entrypoint hands it to a pool of `slots` threads"
            ),
            "batch_size": batch,
            "max_concurrent_tasks": f"max(2 x batch, slots) = at least {2 * batch}",
            "heartbeat_timeout": HEARTBEAT_TIMEOUT_SECONDS,
            "dequeue_timeout": DEQUEUE_TIMEOUT_SECONDS,
            "bulk": f"enqueue with lists, {BULK_BATCH} jobs per call",
        }

    def durability(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        return postgres_promise(s.queue_database_url)

    def redelivery(self, case: Case) -> str | None:
        return (
            f"pgqueuer's heartbeat: a picked job whose heartbeat is older than {HEARTBEAT_TIMEOUT_SECONDS:g} s is "
            f"picked again by the next dequeue, which an idle manager makes every {DEQUEUE_TIMEOUT_SECONDS:g} s; "
            "completions are logged in batches, so a job the killed process finished but had not yet logged "
            "runs again (at least once)"
        )

    def worker_argv(self, case: Case, queue: str, bin_dir: Path) -> list[str]:
        argv = self.supervised_argv(case, queue, bin_dir)
        o = self.resolve(case.options)
        argv += ["--batch-size", o["batch"], "--execution", o["execution"]]
        argv += ["--heartbeat-timeout", str(HEARTBEAT_TIMEOUT_SECONDS)]
        return [*argv, "--dequeue-timeout", str(DEQUEUE_TIMEOUT_SECONDS)]

    def attached_queue(self, workers: Sequence[Mapping[str, Any]], options: Mapping[str, str]) -> str | None:
        o = self.resolve(options)
        return announced_queue(workers, self.name, {"batch_size": o["batch"], "execution": o["execution"]})

    def enqueuer(self, case: Case, queue: str, env: Mapping[str, str]) -> Enqueuer:
        return PgqueuerEnqueuer(case, queue, env)

    def recording_pair_jobs(self, options: Mapping[str, str]) -> int:
        # Some 10,000 jobs per second with the enqueue at batch 500 here: 20,000 take about 3 s on a quiet
        # host (50,000 took 32 to 34 s at load 8, docs/benchmark.md, "Recording overhead").
        return 20_000

    def _entrypoints(self, queue: str) -> list[str]:
        """The entrypoints of `queue`: one per registered workload, as the workers register them."""
        return [peers.pgqueuer_entrypoint(queue, w) for w in workloads.REGISTRY]

    def busy(self, conn: psycopg.Connection, queue: str) -> bool:
        return bool(store.scalar(conn, "pgqueuer_busy", {"entrypoints": self._entrypoints(queue)}))

    def completed(self, conn: psycopg.Connection, queue: str) -> int:
        return int(store.scalar(conn, "pgqueuer_completed", {"entrypoints": self._entrypoints(queue)}) or 0)

    def settle(self, conn: psycopg.Connection, queue: str) -> tuple[str, ...]:
        # A finished job leaves pgqueuer's queue table; its log rows stay until aggregated or pruned.
        prefix = queue.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"
        conn.execute("DELETE FROM pgqueuer.pgqueuer_log WHERE entrypoint LIKE %s", (prefix,))
        conn.execute("DELETE FROM pgqueuer.pgqueuer_statistics WHERE entrypoint LIKE %s", (prefix,))
        return ("pgqueuer.pgqueuer", "pgqueuer.pgqueuer_log")


ADAPTER = Pgqueuer()
