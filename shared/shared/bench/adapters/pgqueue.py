"""pgqueue as a contender: its worker service (`bench-pgqueue-worker`) and its client API (`shared.pgqueue`).

Slots map to `--processes P --threads N` (P worker processes under one supervisor, N slots each); bulk
is one `enqueue_many` call (COPY streamed while the jobs are built, one NOTIFY, one transaction) per
`send_many`, one-by-one is `enqueue` in a transaction of its own: one autocommit statement, its NOTIFY
in the same statement (one round trip, as the raw ceiling's autocommit INSERT). pgqueue can tell the end of a run from its own table (`queue_busy`, then the
completed count), so it can also run with recording off (the recording-overhead pair).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from shared import db, pgqueue, settings
from shared.bench.adapters.base import Enqueuer, Option, SupervisedAdapter, meta, postgres_promise

if TYPE_CHECKING:  # pragma: no cover - types only
    import psycopg

    from shared.bench.spec import Case

BULK_BATCH = 5000
"""Bulk jobs that share one `enqueued_at` (taken as they are built); one `enqueue_many` call takes them all."""


class PgqueueEnqueuer(Enqueuer):
    def __init__(self, case: Case, queue: str, env: Mapping[str, str]) -> None:
        super().__init__(case, queue, env)
        # autocommit: each enqueue statement is its own transaction (BEGIN and COMMIT would be two more
        # round trips per job); enqueue_many opens one of its own
        self.conn = db.connect(settings.load(env).queue_database_url, role="harness-enqueue", autocommit=True)

    def send_one(self, run_id: int, seq: int, scheduled_at: float | None = None) -> None:
        pgqueue.enqueue(
            self.conn,
            self.workload,
            self.params,
            queue=self.queue,
            meta=meta(run_id, seq, time.time(), scheduled_at),
        )

    def send_many(self, run_id: int, seqs: Sequence[int]) -> None:
        def jobs() -> Iterator[pgqueue.JobSpec]:
            for i in range(0, len(seqs), BULK_BATCH):
                now = time.time()
                for s in seqs[i : i + BULK_BATCH]:
                    yield pgqueue.JobSpec(
                        self.workload, self.params, queue=self.queue, meta=meta(run_id, s, now)
                    )

        # built while the COPY streams: the server parses one chunk while the next is encoded
        pgqueue.enqueue_many(self.conn, jobs())

    def close(self) -> None:
        self.conn.close()


RELAXED_OPTIONS = "-c synchronous_commit=off"
"""The relaxed variant's server settings for every one of pgqueue's own connections (libpq `options`)."""


def relaxed_url(url: str) -> str:
    """`url` with pgqueue's relaxed commit on every connection opened from it (`options` in its query)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["options"] = f"{query['options']} {RELAXED_OPTIONS}" if query.get("options") else RELAXED_OPTIONS
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


class Pgqueue(SupervisedAdapter):
    name = "pgqueue"
    summary = "this project's PostgreSQL job queue (batch claims with SKIP LOCKED, LISTEN/NOTIFY, batched completions)"
    options = (
        Option(
            "commit",
            ("sync", "relaxed"),
            "sync",
            "sync, or relaxed: pgqueue's own transactions at synchronous_commit = off",
            "commits",
        ),
    )
    backend_prefixes: ClassVar[tuple[str, ...]] = ("bench-pgqueue",)
    queue_tables: ClassVar[tuple[str, ...]] = ("queue.pgqueue_jobs",)
    times_drains: ClassVar[bool] = True
    pair_by_default: ClassVar[bool] = True
    """Its recorder is the one this project builds, and its targets (docs/pgqueue.md) are taken with it on."""
    child_heartbeats = True
    counts_completions = True
    packages: ClassVar[tuple[str, ...]] = ("psycopg",)
    worker_script = "bench-pgqueue-worker"
    slots_flag = "--threads"

    def default_variants(self, *, brokers: Sequence[str], full: bool) -> list[dict[str, str]]:
        # The relaxed variant, to set beside Redis without persistence at equal promises, with --full.
        return [{}, {"commit": "relaxed"}] if full else [{}]

    def fault_variants(self, *, brokers: Sequence[str], full: bool) -> list[dict[str, str]]:
        return [{}]

    def worker_environment(self, options: Mapping[str, str], database_url: str) -> dict[str, str]:
        """The relaxed variant: the queue's URL carries `synchronous_commit=off`, so the workers' and the
        enqueuer's connections to the queue all commit without waiting for the WAL flush."""
        if self.resolve(options)["commit"] != "relaxed":
            return {}
        return {settings.ENV_QUEUE_DATABASE_URL: relaxed_url(database_url)}

    def slot_mapping(self, case: Case) -> str:
        return f"pgqueue --processes {case.processes} --threads {case.slots} ({case.total_slots} slots)"

    queue_defaults: ClassVar[dict[str, float]] = {
        "jobs": 100_000,
        "one_by_one_jobs": 5_000,
        "latency_seconds": 10,
        "large": 1_000_000,
    }

    def add_queue_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--processes", type=int, default=2, help="worker processes")
        p.add_argument("--threads", type=int, default=4, help="slots (threads) per process")
        p.add_argument(
            "--batch-size", type=int, default=None, help="the worker's --batch-size (default: its own)"
        )
        p.add_argument(
            "--prefetch", type=int, default=None, help="the worker's --prefetch (default: its own)"
        )

    def queue_variants(self, args: argparse.Namespace) -> list[tuple[dict[str, str], int, int]]:
        return [({}, args.processes, args.threads)]

    def queue_env(self, args: argparse.Namespace) -> dict[str, str]:
        # The worker reads every knob from PGQUEUE_<NAME> (docs/pgqueue.md, "Configuration").
        return {
            f"PGQUEUE_{name.upper()}": str(value)
            for name, value in (("batch_size", args.batch_size), ("prefetch", args.prefetch))
            if value is not None
        }

    def worker_argv(self, case: Case, queue: str, bin_dir: Path) -> list[str]:
        return self.supervised_argv(case, queue, bin_dir)

    def durability(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        url = s.queue_database_url
        if self.resolve(options)["commit"] == "relaxed":
            url = relaxed_url(url)  # read through a connection as the relaxed variant opens them
        return postgres_promise(url)

    def redelivery(self, case: Case) -> str | None:
        return (
            "pgqueue's rescuer returns a dead worker's jobs once their worker's heartbeat is older than "
            "`rescue_after` (15 s by default, PGQUEUE_RESCUE_AFTER) at its next pass (every 5 s); completions "
            "are flushed in batches (every 20 ms), so a job the killed process finished but had not yet "
            "flushed runs again (at least once, docs/pgqueue.md)"
        )

    def enqueuer(self, case: Case, queue: str, env: Mapping[str, str]) -> Enqueuer:
        return PgqueueEnqueuer(case, queue, env)

    def busy(self, conn: psycopg.Connection, queue: str) -> bool:
        # Three index lookups that stop at the first unfinished job; a count would read every
        # completed row of the queue and cost the drain it measures.
        return bool(pgqueue.queue_busy(conn, queue))

    def completed(self, conn: psycopg.Connection, queue: str) -> int:
        return int(pgqueue.count_matching(conn, queue=queue, state="completed"))

    def drain_span(self, conn: psycopg.Connection, queue: str) -> tuple[float, float, int] | None:
        # the first claim and the last completion (database clock): a little wider than the records'
        # first start and last finish, which a recording run measures
        return pgqueue.finished_span(conn, queue)

    def settle(self, conn: psycopg.Connection, queue: str) -> tuple[str, ...]:
        # The harness owns the queue; pgqueue's cleaner would delete these once their retention passed.
        pgqueue.delete_finished(conn, queue)
        return ("queue.pgqueue_jobs",)


ADAPTER = Pgqueue()
