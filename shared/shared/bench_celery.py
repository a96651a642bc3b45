"""`make bench-celery`: drain N no-op tasks and time one-by-one publishing, per broker, configuration and pool.

The pieces are reusable by the main harness and by the tests:

- `WorkerSpec` and `CeleryWorker` start `bench-celery-worker` as a process of its own session, wait for
  its heartbeat, find its pool processes, kill its main process alone, and stop it with a warm shutdown.
- `read_events` parses the spool files a worker wrote (they survive SIGKILL; no database round trip), and
  `wait_finished` is the drain detection built on it.
- `publish_one_by_one` sends N jobs one message at a time through one shared producer.
- `measure` is one drain run: publish everything first (the publishing rate), then start a worker and
  time first start to last finish from the worker's own records (start-up excluded, reported apart).

Without `DATABASE_URL` the command starts its own embedded PostgreSQL (and destroys it afterwards), so
the SQL broker's figures do not depend on a server it did not configure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg

from shared import celery_app, db, embedded, settings, spool
from shared import migrate as migrate_mod

BIN = Path(sys.executable).parent
WORKER_SCRIPT = "bench-celery-worker"


@dataclass
class WorkerSpec:
    """How to start one Celery worker: the options of `bench-celery-worker`."""

    broker: str = "postgres"
    configuration: str = "defaults"
    pool: str = "prefork"
    concurrency: int = 4
    queues: list[str] = field(default_factory=lambda: [celery_app.DEFAULT_QUEUE])
    polling_interval: float = celery_app.DEFAULT_SQL_POLLING_INTERVAL
    visibility_timeout: float | None = None
    restore_interval: float | None = None
    result_backend: bool = False
    record: bool = True
    loglevel: str = "WARNING"

    def argv(self) -> list[str]:
        """The command line of this worker."""
        args = [
            str(BIN / WORKER_SCRIPT),
            "--broker",
            self.broker,
            "--config",
            self.configuration,
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "--queues",
            ",".join(self.queues),
            "--polling-interval",
            str(self.polling_interval),
            "--loglevel",
            self.loglevel,
        ]
        if self.visibility_timeout is not None:
            args += ["--visibility-timeout", str(self.visibility_timeout)]
        if self.restore_interval is not None:
            args += ["--restore-interval", str(self.restore_interval)]
        if self.result_backend:
            args.append("--result-backend")
        if not self.record:
            args.append("--no-record")
        return args


class CeleryWorker:
    """One `bench-celery-worker` process in a session of its own (so its group can be stopped at once)."""

    def __init__(self, spec: WorkerSpec, env: dict[str, str], log_path: Path) -> None:
        self.spec = spec
        self.env = env
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.started_at = time.time()
        self.popen = subprocess.Popen(
            spec.argv(),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.ready_at: float | None = None
        self.info: dict[str, Any] = {}
        self.worker_id: str | None = None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def heartbeat(self, database_url: str) -> dict[str, Any] | None:
        """This worker's heartbeat row (`id`, `info`, ...), once its consumer is ready."""
        with db.connect(database_url, role="bench-harness") as conn:
            row = conn.execute(
                "SELECT id, info, heartbeat_at, spool_loaded_at, stopped_at FROM queue.workers "
                "WHERE adapter = 'celery' AND pid = %s AND host = %s ORDER BY started_at DESC LIMIT 1",
                (self.pid, os.uname().nodename),
            ).fetchone()
        if row is None:
            return None
        return dict(zip(("id", "info", "heartbeat_at", "spool_loaded_at", "stopped_at"), row, strict=True))

    def wait_ready(self, database_url: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for the first heartbeat (sent when the consumer is ready); return its `info`."""

        def ready() -> dict[str, Any] | None:
            if not self.alive():
                raise RuntimeError(
                    f"the Celery worker exited with {self.popen.returncode}: {self.log()[-2000:]}"
                )
            return self.heartbeat(database_url)

        row = wait_for(ready, timeout, "the Celery worker's first heartbeat")
        self.ready_at = time.time()
        self.info = row["info"]
        self.worker_id = row["id"]
        return self.info

    def pool_pids(self) -> list[int]:
        """The PIDs of the prefork pool's processes (the main process's children)."""
        try:
            return [p.pid for p in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def kill_main(self) -> None:
        """SIGKILL the main process alone (its prefork children die with it: billiard's PDEATHSIG)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown: SIGTERM to the main process only (running tasks finish), then SIGKILL the group.

        Only the main process gets SIGTERM: prefork children reset SIGTERM to its default action, so a
        SIGTERM to the whole group would kill the tasks they run.
        """
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        self._log.close()
        return self.popen.returncode


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `cond` until truthy; `TimeoutError` naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Event:
    """One spool record: a start, finish or failure of one attempt, by one process."""

    kind: str
    run_id: int | None
    seq: int | None
    attempt: int
    worker_id: str
    ts: float
    pid: int
    error: str | None = None


def read_events(directory: Path, run_id: int | None = None) -> list[Event]:
    """Every complete record in the spool files under `directory` (of run `run_id`), in time order."""
    events: list[Event] = []
    for path in Path(directory).glob("*.spool"):
        try:
            pid = int(path.stem.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            pid = 0
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        for line in data[: data.rfind(b"\n") + 1].decode(errors="replace").splitlines():
            f = spool.parse_line(line)
            if f is None:
                continue
            rid, seq = f["run_id"], f["seq"]
            if run_id is not None and (rid is None or int(rid) != run_id):
                continue
            events.append(
                Event(
                    kind=f["kind"] or "",
                    run_id=int(rid) if rid is not None else None,
                    seq=int(seq) if seq is not None else None,
                    attempt=int(f["attempt"] or 1),
                    worker_id=f["worker_id"] or "",
                    ts=int(f["ts_us"] or 0) / 1e6,
                    pid=pid,
                    error=f["error"],
                )
            )
    events.sort(key=lambda e: e.ts)
    return events


def wait_finished(directory: Path, run_id: int, jobs: int, timeout: float) -> list[Event]:
    """Drain detection: wait until `jobs` distinct sequence numbers of `run_id` have a finish record."""

    def done() -> list[Event] | None:
        events = read_events(directory, run_id)
        finished = {e.seq for e in events if e.kind == "finish"}
        return events if len(finished) >= jobs else None

    return wait_for(done, timeout, f"{jobs} finish records of run {run_id}", interval=0.2)


def publish_one_by_one(app: Any, queue: str, run_id: int, jobs: int, workload: str = "noop") -> float:
    """Send `jobs` messages one publish each, through one shared producer; return the seconds taken.

    One producer (one broker connection and channel) for the whole loop is what Celery's documentation
    and any sender in a loop does: `send_task` without one acquires a producer from the pool per call.
    """
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for seq in range(jobs):
            celery_app.send(
                app,
                workload,
                {},
                {"run_id": run_id, "seq": seq, "enqueued_at": time.time()},
                queue=queue,
                producer=producer,
            )
    return time.perf_counter() - started


def broker_env(database_url: str, spool_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker started by the harness."""
    env = {k: v for k, v in os.environ.items() if k not in {"QUEUE_DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(DATABASE_URL=database_url, BENCH_SPOOL_DIR=str(spool_dir), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def delete_queue(app: Any, broker: str, queue: str) -> None:
    """Remove a queue this harness created, and on the SQL broker its spent messages.

    RabbitMQ keeps durable queues; Redis drops empty lists. kombu's SQL transport never deletes a
    delivered message (it only sets `visible = false`); its purge deletes all of the queue's rows, so
    the harness leaves none behind (each SQL-broker run also gets a database of its own:
    `fresh_database`).
    """
    if broker == "redis":
        return
    from kombu import Queue

    with contextlib.suppress(Exception), app.connection_for_write() as conn:
        q = Queue(queue, channel=conn.default_channel)
        if broker == "postgres":
            q.purge()
        else:
            q.delete()


@dataclass
class DrainResult:
    """One drain run's figures."""

    broker: str
    configuration: str
    pool: str
    concurrency: int
    jobs: int
    publish_seconds: float
    drain_seconds: float
    startup_seconds: float
    celery: dict[str, Any]

    @property
    def published_per_s(self) -> float:
        return self.jobs / self.publish_seconds

    @property
    def drained_per_s(self) -> float:
        return self.jobs / self.drain_seconds


def measure(
    database_url: str,
    spec: WorkerSpec,
    jobs: int = 10_000,
    *,
    work_dir: Path,
    timeout: float = 900.0,
) -> DrainResult:
    """One drain run: publish `jobs` no-ops one by one, then start the worker and time the drain.

    The worker starts after publishing so that the publishing rate is the broker's alone and the drain
    starts from a full queue; drain time runs from the first start record to the last finish record
    (the workers' own clocks), so start-up is excluded and reported apart.
    """
    queue = f"bench-{spec.broker}-{time.time_ns()}"
    spec = dataclasses.replace(spec, queues=[queue])
    spool_dir = Path(tempfile.mkdtemp(prefix="spool-", dir=work_dir))
    s = settings.load({**os.environ, "DATABASE_URL": database_url})
    app = celery_app.make_app(spec.broker, spec.configuration, polling_interval=spec.polling_interval, s=s)
    run_id = time.time_ns() // 1000 % 2_000_000_000
    try:
        publish_seconds = publish_one_by_one(app, queue, run_id, jobs)
        worker = CeleryWorker(spec, broker_env(database_url, spool_dir), work_dir / f"{queue}.log")
        try:
            info = worker.wait_ready(database_url, timeout=120)
            events = wait_finished(spool_dir, run_id, jobs, timeout)
        finally:
            worker.terminate()
    finally:
        delete_queue(app, spec.broker, queue)
    first_start = min(e.ts for e in events if e.kind == "start")
    last_finish = max(e.ts for e in events if e.kind == "finish")
    return DrainResult(
        broker=spec.broker,
        configuration=spec.configuration,
        pool=spec.pool,
        concurrency=spec.concurrency,
        jobs=jobs,
        publish_seconds=publish_seconds,
        drain_seconds=last_finish - first_start,
        startup_seconds=(worker.ready_at or first_start) - worker.started_at,
        celery=info,
    )


@contextlib.contextmanager
def database(work_dir: Path) -> Iterator[str]:
    """`DATABASE_URL` when set, else an embedded PostgreSQL of our own; migrated either way."""
    if os.environ.get(settings.ENV_DATABASE_URL):
        url = settings.load().database_url
        migrate_mod.upgrade(url, url)
        yield url
        return
    cluster = embedded.EmbeddedCluster(work_dir / "pg")
    cluster.start()
    try:
        migrate_mod.upgrade(cluster.url, cluster.url)
        print(f"embedded PostgreSQL at {cluster.url}", flush=True)
        yield cluster.url
    finally:
        cluster.destroy()


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new database on `url`'s server, migrated, dropped afterwards.

    Each SQL-broker run starts from kombu's tables as a new deployment has them. On a reused database,
    the planner's statistics (taken by autoanalyze after a drain, when no message was visible) turn
    kombu's fetch into a sort of every pending message: a second and third 10,000-task drain ran at
    110 to 170 tasks/s instead of ~300, purged and vacuumed or not (docs/benchmarks.md).
    """
    from psycopg import sql

    name = f"bench_celery_{os.getpid()}_{time.time_ns() % 10**12}"
    with db.connect(url, role="bench-celery", autocommit=True) as conn:
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            print(
                "note: this role may not create databases; the SQL-broker runs share one database, "
                "so later runs may be slower (docs/celery.md)",
                file=sys.stderr,
            )
            yield url
            return
    try:
        fresh = settings.with_database(url, name)
        migrate_mod.upgrade(fresh, fresh)
        yield fresh
    finally:
        with db.connect(url, role="bench-celery", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make bench-celery", description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=10_000, help="no-op tasks per run (default 10000)")
    p.add_argument("--repeat", type=int, default=3, help="repetitions per case; the median is quoted")
    p.add_argument("--brokers", default=",".join(celery_app.BROKERS))
    p.add_argument("--configs", default=",".join(celery_app.CONFIGURATIONS))
    p.add_argument("--pools", default="prefork:4,threads:4", help="pool:concurrency pairs")
    p.add_argument("--polling-interval", type=float, default=celery_app.DEFAULT_SQL_POLLING_INTERVAL)
    args = p.parse_args(argv)
    try:
        brokers = _choices(args.brokers, celery_app.BROKERS, "--brokers")
        configs = _choices(args.configs, celery_app.CONFIGURATIONS, "--configs")
        pools = [_pool(x) for x in args.pools.split(",") if x]
        if args.jobs <= 0 or args.repeat <= 0:
            raise settings.ConfigError("--jobs and --repeat must be positive")
    except settings.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # SIGTERM (and SIGINT, which a background job ignores) unwind through the `finally` blocks, so the
    # worker and the embedded PostgreSQL this command started are stopped.
    signal.signal(signal.SIGTERM, _interrupted)
    cases = [(b, c, pool, conc) for b in brokers for c in configs for pool, conc in pools]
    results: dict[tuple[str, str, str, int], list[DrainResult]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp, database(Path(tmp)) as url:
        # Interleave repetitions so that a slow minute of a shared machine spreads over every case.
        for rep in range(args.repeat):
            for case in cases:
                b, c, pool, conc = case
                spec = WorkerSpec(
                    broker=b,
                    configuration=c,
                    pool=pool,
                    concurrency=conc,
                    polling_interval=args.polling_interval,
                )
                try:
                    if b == "postgres":
                        with fresh_database(url) as fresh:
                            r = measure(fresh, spec, args.jobs, work_dir=Path(tmp))
                    else:
                        r = measure(url, spec, args.jobs, work_dir=Path(tmp))
                except (
                    settings.ConfigError,
                    db.DatabaseError,
                    TimeoutError,
                    RuntimeError,
                    psycopg.Error,
                ) as exc:
                    print(f"error: {b} {c} {pool} c={conc}: {exc}", file=sys.stderr)
                    return 2
                results[case].append(r)
                print(
                    f"rep {rep + 1}: {b:8} {c:8} {pool:7} c={conc}  published {r.published_per_s:7.0f}/s  "
                    f"drained {r.drained_per_s:7.0f}/s  (start-up {r.startup_seconds:.1f} s)",
                    flush=True,
                )
    print()
    print(table(results, args.jobs, args.polling_interval))
    return 0


def _interrupted(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def table(results: dict[tuple[str, str, str, int], list[DrainResult]], jobs: int, polling: float) -> str:
    """The Markdown table of medians."""
    lines = [
        f"Drain of {jobs} no-op tasks, one-by-one publishing; medians of {max(map(len, results.values()))} "
        f"runs (SQL polling interval {polling} s).",
        "",
        "| broker | configuration | pool | concurrency | published/s | drained/s | runs (drained/s) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for (b, c, pool, conc), rs in results.items():
        if not rs:
            continue
        pub = statistics.median(r.published_per_s for r in rs)
        drn = statistics.median(r.drained_per_s for r in rs)
        runs = ", ".join(f"{r.drained_per_s:.0f}" for r in rs)
        lines.append(f"| {b} | {c} | {pool} | {conc} | {pub:,.0f} | {drn:,.0f} | {runs} |")
    return "\n".join(lines)


def _choices(raw: str, allowed: tuple[str, ...], option: str) -> list[str]:
    values = [v.strip() for v in raw.split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise settings.ConfigError(
            f"{option} takes a comma-separated subset of {', '.join(allowed)}; got {raw!r}"
        )
    return values


def _pool(raw: str) -> tuple[str, int]:
    pool, _, conc = raw.partition(":")
    if pool not in ("prefork", "threads", "solo") or not conc.isdigit() or int(conc) < 1:
        raise settings.ConfigError(f"--pools takes pool:concurrency pairs such as prefork:4; got {raw!r}")
    return pool, int(conc)


if __name__ == "__main__":
    sys.exit(main())
