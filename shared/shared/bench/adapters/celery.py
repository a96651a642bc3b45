"""Celery as a contender: its worker service (`bench-celery-worker`) on a broker of the run's choosing, and
the shared Celery app (`shared.celery_app`) to send with; the harness never imports the worker's code.

Variants: the broker (PostgreSQL through kombu's SQL transport, Redis, RabbitMQ), the configuration
(`defaults`, or `reliable`: late acknowledgement, reject on worker lost, prefetch 1) and the pool. Slots
map to `--concurrency` of the pool: one prefork child per slot. Bulk is one producer (one connection,
one channel) publishing every message in a loop, since Celery has no batch publish; one-by-one is
`send_task` per job, which takes a producer from the app's pool each time.

Celery keeps no table that tells the end of a run with its result backend off, so its worker counts the
jobs its processes complete and its main process writes the sum to `queue.worker_completions`
(`shared.completions`): the end of a run, recording on or off, is when that count reaches the jobs sent.
The worker's main process is a supervisor of `celery worker` (docs/celery.md): the processes that run
jobs are its grandchildren with the prefork pool, its child with the threads and solo pools.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import psutil

from shared import celery_app, db, settings
from shared.bench import store
from shared.bench.adapters.base import Adapter, Enqueuer, Option, announced_queue, meta, postgres_durability
from shared.bench.adapters.brokers import (
    broker_port,
    broker_url,
    check_broker,
    delete_queue,
    rabbitmq_durability,
    redis_durability,
)
from shared.bench.databases import scratch_database

if TYPE_CHECKING:  # pragma: no cover - types only
    import psycopg

    from shared.bench.spec import Case

FAULT_VISIBILITY_TIMEOUT = 10.0
FAULT_RESTORE_INTERVAL = 2.0
POOLS = ("prefork", "threads", "solo")
WORKER_SCRIPT = "bench-celery-worker"
RECORDING_PAIR_JOBS = {"postgres": 500, "redis": 2_000, "rabbitmq": 4_000}
"""Jobs of each run of the recording pair per broker: some seconds of enqueue and drain on a quiet host at
the rates measured here (a few hundred tasks/s on the SQL broker, both ways; about 1,000 on Redis and 2,000
on RabbitMQ, 7 Dec, quiet host). 1,500 on the SQL broker took 35 to 43 s at load 8 (docs/benchmark.md, "Recording overhead")."""


@dataclass
class WorkerOptions:
    """The options of one `bench-celery-worker`, as its command line takes them."""

    broker: str = "postgres"
    configuration: str = "defaults"
    pool: str = "prefork"
    concurrency: int = 4
    queues: list[str] = field(default_factory=lambda: [celery_app.DEFAULT_QUEUE])
    polling_interval: float | None = None
    visibility_timeout: float | None = None
    restore_interval: float | None = None
    result_backend: bool = False
    record: bool = True
    loglevel: str = "WARNING"

    def argv(self, bin_dir: Path | None = None) -> list[str]:
        """The worker's command line (the script from `bin_dir`, default this interpreter's)."""
        script = Path(bin_dir or Path(sys.executable).parent) / WORKER_SCRIPT
        args = [str(script), "--broker", self.broker, "--config", self.configuration, "--pool", self.pool]
        args += ["--concurrency", str(self.concurrency), "--queues", ",".join(self.queues)]
        args += ["--loglevel", self.loglevel]
        for flag, value in (
            ("--polling-interval", self.polling_interval),
            ("--visibility-timeout", self.visibility_timeout),
            ("--restore-interval", self.restore_interval),
        ):
            if value is not None:
                args += [flag, str(value)]
        if self.result_backend:
            args.append("--result-backend")
        if not self.record:
            args.append("--no-record")
        return args


class CeleryEnqueuer(Enqueuer):
    def __init__(self, case: Case, queue: str, env: Mapping[str, str]) -> None:
        super().__init__(case, queue, env)
        opts = ADAPTER.resolve(case.options)
        self.app = celery_app.make_app(opts["broker"], opts["config"], s=settings.load(env))
        # Open the broker connection now, outside the timed window (kombu connects lazily).
        with self.app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=3)

    def send_one(self, run_id: int, seq: int, scheduled_at: float | None = None) -> None:
        m = meta(run_id, seq, time.time(), scheduled_at)
        celery_app.send(self.app, self.workload, self.params, m, queue=self.queue)

    def send_many(self, run_id: int, seqs: Sequence[int]) -> None:
        with self.app.producer_or_acquire() as producer:
            for seq in seqs:
                m = meta(run_id, seq, time.time())
                celery_app.send(self.app, self.workload, self.params, m, queue=self.queue, producer=producer)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.app.close()


class Celery(Adapter):
    name = "celery"
    summary = "Celery with kombu, on PostgreSQL (kombu's SQL transport), Redis or RabbitMQ"
    options = (
        Option(
            "broker",
            celery_app.BROKERS,
            "postgres",
            "the broker Celery runs on",
            "brokers",
            always_labelled=True,
        ),
        Option(
            "config",
            celery_app.CONFIGURATIONS,
            "defaults",
            "defaults, or reliable (acks late, reject on worker lost, prefetch 1)",
            "configs",
            aliases=("celery_config", "celery_configs"),
            always_labelled=True,
        ),
        Option("pool", POOLS, "prefork", "the worker pool; one child process per slot with prefork", "pools"),
    )
    backend_prefixes: ClassVar[tuple[str, ...]] = ("bench-celery",)
    counts_completions = True
    packages: ClassVar[tuple[str, ...]] = ("celery", "kombu", "redis", "amqp", "billiard")
    worker_script = WORKER_SCRIPT

    def add_queue_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--brokers", default=",".join(celery_app.BROKERS), help="brokers, comma-separated")
        p.add_argument(
            "--configs", default=",".join(celery_app.CONFIGURATIONS), help="configurations, comma-separated"
        )
        p.add_argument(
            "--pools", default="prefork:4,threads:4", help="pool:concurrency pairs, comma-separated"
        )
        p.add_argument(
            "--polling-interval",
            type=float,
            default=celery_app.DEFAULT_SQL_POLLING_INTERVAL,
            help="the SQL transport's polling interval in seconds (kombu's default)",
        )

    def queue_variants(self, args: argparse.Namespace) -> list[tuple[dict[str, str], int, int]]:
        from shared.bench.usage import UsageError, choices, positive

        brokers = choices(args.brokers, celery_app.BROKERS, "broker") or []
        configs = choices(args.configs, celery_app.CONFIGURATIONS, "config") or []
        pools = []
        for raw in args.pools.split(","):
            pool, _, conc = raw.strip().partition(":")
            if pool not in POOLS or not conc.isascii() or not conc.isdigit() or not 0 < int(conc) <= 256:
                raise UsageError(f"--pools takes pool:concurrency pairs such as prefork:4; got {raw!r}")
            pools.append((pool, int(conc)))
        positive(polling_interval=args.polling_interval)
        return [
            ({"broker": b, "config": c, "pool": p}, 1, n) for b in brokers for c in configs for p, n in pools
        ]

    def queue_env(self, args: argparse.Namespace) -> dict[str, str]:
        return {"BENCH_CELERY_POLLING_INTERVAL": str(args.polling_interval)}

    def default_variants(self, *, brokers: Sequence[str], full: bool) -> list[dict[str, str]]:
        configs = celery_app.CONFIGURATIONS if full else ("defaults",)
        return [{"broker": b, "config": c} for b in brokers for c in configs]

    def fault_variants(self, *, brokers: Sequence[str], full: bool) -> list[dict[str, str]]:
        """Like for like first: `reliable` on RabbitMQ and Redis, then `defaults` on them as a labelled
        second row (early acknowledgement loses the running task by design); the SQL broker, where a
        killed idle pool child can stop delivery (docs/celery.md), only when no other answers or with
        `--full`."""
        chosen = [b for b in ("rabbitmq", "redis") if b in brokers]
        if full or not chosen:
            chosen += ["postgres"] if "postgres" in brokers else []
        return [{"broker": b, "config": c} for c in ("reliable", "defaults") for b in chosen]

    def slot_mapping(self, case: Case) -> str:
        pool = self.resolve(case.options)["pool"]
        return f"celery --pool {pool} --concurrency {case.total_slots} ({case.total_slots} slots)"

    def unavailable(self, options: Mapping[str, str], s: settings.Settings) -> str | None:
        return check_broker(self.resolve(options)["broker"], s)

    def configuration(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        o = self.resolve(options)
        conf = celery_app.config(o["broker"], o["config"], s=s, polling_interval=_env_polling_interval())
        out = {k: (settings.redact(v) if isinstance(v, str) and "://" in v else v) for k, v in conf.items()}
        return {**out, "pool": o["pool"]}

    def durability(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, Any]:
        o = self.resolve(options)
        conf = celery_app.config(o["broker"], o["config"], s=s)
        if o["broker"] == "postgres":
            d = postgres_durability(s.queue_database_url)
            return {
                **d,
                "promise": "a publish is one committed INSERT by kombu's SQL transport (fsync "
                f"{d.get('fsync')}, synchronous_commit {d.get('synchronous_commit')}); the transport is "
                "experimental in Celery, which dropped it from its broker table",
            }
        if o["broker"] == "redis":
            return redis_durability(broker_url("redis", s))
        return rabbitmq_durability(broker_url("rabbitmq", s), conf)

    def servers(self, options: Mapping[str, str], s: settings.Settings) -> dict[str, int]:
        broker = self.resolve(options)["broker"]
        port = broker_port(broker, s)
        return {broker: port} if port else {}

    @contextlib.contextmanager
    def group_env(self, options: Mapping[str, str], database_url: str) -> Iterator[dict[str, str]]:
        """On the SQL broker, a database of the group's own for kombu's tables, dropped afterwards.

        On a reused database the planner's statistics (an autoanalyze after a drain, when no message was
        visible) turn kombu's fetch into a sort of every pending message: a second and third 10,000-task
        drain ran at 110 to 170 tasks/s instead of about 300 (docs/celery.md). A role that may not create
        databases keeps the shared one, with a warning."""
        if self.resolve(options)["broker"] != "postgres":
            yield {}
            return
        with scratch_database(database_url) as url:
            yield {} if url is None else {settings.ENV_CELERY_BROKER_URL: settings.kombu_sql_url(url)}

    def drop_queue(self, options: Mapping[str, str], queue: str, env: Mapping[str, str]) -> None:
        """Remove a queue the harness created (`delete_queue`), and its stopped workers' counts."""
        broker = self.resolve(options)["broker"]
        s = settings.load(env)
        app = celery_app.make_app(broker, s=s)
        try:
            delete_queue(app, broker, queue)
        finally:
            app.close()
        with (
            contextlib.suppress(Exception),
            db.connect(s.queue_database_url, role="harness", autocommit=True) as conn,
        ):
            conn.execute(store.q("worker_completions_forget"), {"queue": queue})

    def victims(self, root_pid: int) -> list[int]:
        """The pool's children with the prefork pool; `celery worker` itself with the threads and solo
        pools, which run jobs in it. The worker's main process only supervises (docs/celery.md)."""
        try:
            consumers = psutil.Process(root_pid).children()
            pool = [c.pid for p in consumers for c in p.children()]
        except psutil.Error:
            return []
        return pool or [p.pid for p in consumers]

    def worker_argv(self, case: Case, queue: str, bin_dir: Path) -> list[str]:
        o = self.resolve(case.options)
        opts = WorkerOptions(
            broker=o["broker"],
            configuration=o["config"],
            pool=o["pool"],
            concurrency=case.total_slots,
            queues=[queue],
            record=case.recording,
        )
        if case.scenario == "fault" and o["broker"] == "redis":
            # A whole worker's unacknowledged messages come back after Redis' visibility timeout (an
            # hour by default): fault runs state a shorter one (`redelivery`).
            opts.visibility_timeout, opts.restore_interval = FAULT_VISIBILITY_TIMEOUT, FAULT_RESTORE_INTERVAL
        return opts.argv(bin_dir)

    def redelivery(self, case: Case) -> str | None:
        o = self.resolve(case.options)
        if o["config"] != "reliable":
            return "Celery `defaults` acknowledges a task as it starts: the task a killed process ran is lost by design"
        out = (
            "Celery `reliable` (acks late, reject on worker lost) requeues a killed pool child's task at once"
        )
        if o["broker"] == "redis":
            out += (
                f"; a whole worker's unacknowledged tasks come back after Redis' visibility timeout, "
                f"{FAULT_VISIBILITY_TIMEOUT:g} s in fault runs (swept every {FAULT_RESTORE_INTERVAL:g} s)"
            )
        elif o["broker"] == "rabbitmq":
            out += "; a whole worker's unacknowledged tasks come back when RabbitMQ sees its connection close"
        return out

    def attached_queue(self, workers: Sequence[Mapping[str, Any]], options: Mapping[str, str]) -> str | None:
        """A live worker on the variant's broker that runs its configuration (`defaults` or `reliable`, as
        its heartbeat's `info` says): a `reliable` case never measures a `defaults` worker."""
        o = self.resolve(options)
        return announced_queue(workers, self.name, {"broker": o["broker"], "configuration": o["config"]})

    def enqueuer(self, case: Case, queue: str, env: Mapping[str, str]) -> Enqueuer:
        return CeleryEnqueuer(case, queue, env)

    def busy(self, conn: psycopg.Connection, queue: str) -> bool:
        # A broker's queue does not show the messages its workers prefetched or run: the count decides.
        return False

    def completed(self, conn: psycopg.Connection, queue: str) -> int:
        return int(store.scalar(conn, "worker_completions", {"queue": queue}) or 0)

    def recording_pair_jobs(self, options: Mapping[str, str]) -> int:
        return RECORDING_PAIR_JOBS[self.resolve(options)["broker"]]


def _env_polling_interval() -> float:
    """The SQL transport's polling interval a worker takes from the environment, so that the record states it."""
    raw = os.environ.get("BENCH_CELERY_POLLING_INTERVAL")
    if raw:
        with contextlib.suppress(ValueError):
            return float(raw)
    return celery_app.DEFAULT_SQL_POLLING_INTERVAL


ADAPTER = Celery()
