"""`make bench-pgqueue`: pgqueue's own figures, each beside the raw ceiling of the same database.

    python -m pgqueue_worker.bench [--repeat 3] [--jobs 100000] [--processes 2] [--threads 4] [--skip-million]

Runs on `DATABASE_URL` when set, else on an embedded PostgreSQL it starts (and stops). Figures, each
the median of `--repeat` runs:

- calibration (shared.pgqueue.calibrate.raw_ceiling): raw claim/complete drain, plain COPY, plain INSERT;
- bulk enqueue of `--jobs` no-op jobs (`enqueue_many`, COPY), workers stopped;
- one-by-one enqueue (`enqueue`, one transaction each) from one connection;
- drain of `--jobs` pre-enqueued no-op jobs: first claim to last completion (database clock), with the
  spool recorder on; the worker's start-up, CPU seconds and peak PSS reported apart;
- latency from enqueue to start at a steady `--rate` jobs/s (open loop; the sender's and the
  worker's wall clocks, from the job records);
- 1,000,000 jobs enqueued in bulk and drained: the total time (once).

Benchmarks print figures; they assert nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from shared.pgqueue import calibrate

from pgqueue_worker.config import Config
from shared import db, pgqueue, settings
from shared import migrate as migrate_mod

RUN_ID = 990_000


def log(msg: str) -> None:
    print(msg, flush=True)


class Sampler(threading.Thread):
    """Samples CPU seconds and PSS of a process tree every `interval`; keeps the peak PSS."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.cpu: dict[int, float] = {}
        self.peak_pss = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        pss = 0
        for p in procs:
            try:
                t = p.cpu_times()
                self.cpu[p.pid] = t.user + t.system
                pss += p.memory_full_info().pss
            except psutil.Error:
                continue
        self.peak_pss = max(self.peak_pss, pss)

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self.sample()
        self._stop_event.set()
        self.join(5)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu.values())


class Worker:
    """A `bench-pgqueue-worker` subprocess in its own process group."""

    def __init__(self, url: str, spool_dir: Path, args: list[str], log_path: Path) -> None:
        env = dict(os.environ, DATABASE_URL=url, BENCH_SPOOL_DIR=str(spool_dir), PYTHONUNBUFFERED="1")
        env.pop("QUEUE_DATABASE_URL", None)
        exe = Path(sys.executable).with_name("bench-pgqueue-worker")
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            [str(exe), "--loglevel", "WARNING", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.sampler = Sampler(self.popen.pid)
        self.sampler.start()

    def wait_ready(self, conn, processes: int, timeout: float = 120) -> float:
        """Seconds from start until every process heartbeats (the worker's start-up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            n = conn.execute(
                "SELECT count(*) FROM queue.workers WHERE pid IN "
                "(SELECT unnest(%s::int[])) AND info->>'role' = 'process' AND stopped_at IS NULL",
                ([p.pid for p in psutil.Process(self.popen.pid).children()],),
            ).fetchone()[0]
            if n >= processes:
                return time.monotonic() - self.started
            if self.popen.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("worker did not start in time")

    def stop(self) -> None:
        self.sampler.stop()
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(10)
        self._log.close()


def reset(conn) -> None:
    conn.execute("TRUNCATE queue.pgqueue_jobs, job_events, spool_progress")
    conn.execute("DELETE FROM queue.workers WHERE adapter = 'pgqueue'")


def noop_jobs(n: int, run_id: int = RUN_ID) -> list[pgqueue.JobSpec]:
    now = time.time()
    return [pgqueue.JobSpec("noop", meta={"run_id": run_id, "seq": i, "enqueued_at": now}) for i in range(n)]


def bench_bulk(conn, jobs: int) -> float:
    reset(conn)
    specs = noop_jobs(jobs)
    started = time.perf_counter()
    pgqueue.enqueue_many(conn, specs)
    return jobs / (time.perf_counter() - started)


def bench_one_by_one(conn, jobs: int) -> float:
    reset(conn)
    started = time.perf_counter()
    for i in range(jobs):
        pgqueue.enqueue(conn, "noop", meta={"run_id": RUN_ID, "seq": i, "enqueued_at": time.time()})
    return jobs / (time.perf_counter() - started)


def wait_drained(conn, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # the partial indexes make both counts cheap while the backlog shrinks
        left = conn.execute(
            "SELECT count(*) FROM queue.pgqueue_jobs WHERE state IN ('available', 'running', 'retryable', 'scheduled')"
        ).fetchone()[0]
        if left == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"not drained after {timeout}s")


def drain_window(conn) -> tuple[float, int]:
    seconds, n = conn.execute(
        "SELECT extract(epoch FROM max(finished_at) - min(attempted_at)), count(*) FROM queue.pgqueue_jobs "
        "WHERE state = 'completed'"
    ).fetchone()
    return float(seconds), int(n)


def wait_records(conn, run_id: int, expected: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = conn.execute(
            "SELECT count(*) FROM job_events WHERE run_id = %s AND kind = 'finish'", (run_id,)
        ).fetchone()[0]
        if n >= expected:
            break
        time.sleep(0.2)
    return n


def bench_drain(
    conn, url: str, jobs: int, worker_args: list[str], processes: int, work: Path, tag: str
) -> dict:
    reset(conn)
    pgqueue.enqueue_many(conn, noop_jobs(jobs))
    conn.execute("VACUUM ANALYZE queue.pgqueue_jobs")
    spool_dir = work / f"spool-{tag}"
    w = Worker(url, spool_dir, worker_args, work / f"worker-{tag}.log")
    try:
        startup = w.wait_ready(conn, processes)
        wait_drained(conn, jobs, timeout=max(120, jobs / 500))
        recorded = wait_records(conn, RUN_ID, jobs)
    finally:
        w.stop()
    seconds, n = drain_window(conn)
    shutil.rmtree(spool_dir, ignore_errors=True)
    return {
        "jobs": n,
        "seconds": seconds,
        "jobs_per_s": n / seconds,
        "startup_s": startup,
        "cpu_s": w.sampler.cpu_seconds,
        "peak_pss_mb": w.sampler.peak_pss / 2**20,
        "records_loaded": recorded,
    }


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def bench_latency(
    conn, url: str, rate: float, seconds: float, worker_args: list[str], processes: int, work: Path, tag: str
) -> dict:
    reset(conn)
    spool_dir = work / f"spool-{tag}"
    w = Worker(url, spool_dir, worker_args, work / f"worker-{tag}.log")
    total = int(rate * seconds)
    try:
        w.wait_ready(conn, processes)
        time.sleep(0.5)
        with db.connect(url, role="bench-sender", autocommit=True) as sender:
            t0 = time.time() + 0.2
            for i in range(total):
                scheduled = t0 + i / rate
                delay = scheduled - time.time()
                if delay > 0:
                    time.sleep(delay)
                pgqueue.enqueue(
                    sender,
                    "noop",
                    meta={"run_id": RUN_ID, "seq": i, "scheduled_at": scheduled, "enqueued_at": time.time()},
                )
        wait_drained(conn, total, 60)
        wait_records(conn, RUN_ID, total)
    finally:
        w.stop()
    rows = conn.execute(
        "SELECT (ts_us - enqueued_us) / 1e3::float8, (ts_us - scheduled_us) / 1e3::float8 FROM job_events "
        "WHERE run_id = %s AND kind = 'start'",
        (RUN_ID,),
    ).fetchall()
    waits = [r[0] for r in rows]
    from_scheduled = [r[1] for r in rows]
    shutil.rmtree(spool_dir, ignore_errors=True)
    return {
        "jobs": len(rows),
        "p50_ms": percentile(waits, 50),
        "p95_ms": percentile(waits, 95),
        "p99_ms": percentile(waits, 99),
        "p999_ms": percentile(waits, 99.9),
        "p99_from_scheduled_ms": percentile(from_scheduled, 99),
    }


def bench_million(conn, url: str, jobs: int, worker_args: list[str], processes: int, work: Path) -> dict:
    reset(conn)
    started = time.perf_counter()
    chunk = 100_000
    for offset in range(0, jobs, chunk):
        now = time.time()
        pgqueue.enqueue_many(
            conn,
            (
                pgqueue.JobSpec("noop", meta={"run_id": RUN_ID, "seq": offset + i, "enqueued_at": now})
                for i in range(min(chunk, jobs - offset))
            ),
        )
    enqueued = time.perf_counter() - started
    spool_dir = work / "spool-million"
    w = Worker(url, spool_dir, worker_args, work / "worker-million.log")
    try:
        w.wait_ready(conn, processes)
        wait_drained(conn, jobs, timeout=3600)
        total = time.perf_counter() - started
        wait_records(conn, RUN_ID, jobs, timeout=600)
    finally:
        w.stop()
    seconds, n = drain_window(conn)
    shutil.rmtree(spool_dir, ignore_errors=True)
    return {
        "jobs": n,
        "enqueue_s": enqueued,
        "drain_s": seconds,
        "total_s": total,
        "cpu_s": w.sampler.cpu_seconds,
        "peak_pss_mb": w.sampler.peak_pss / 2**20,
    }


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def environment(conn, args: argparse.Namespace) -> dict[str, Any]:
    import platform

    return {
        "python": platform.python_version(),
        "postgresql": conn.execute("SHOW server_version").fetchone()[0],
        "synchronous_commit": conn.execute("SHOW synchronous_commit").fetchone()[0],
        "fsync": conn.execute("SHOW fsync").fetchone()[0],
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_at_start": os.getloadavg(),
        "processes": args.processes,
        "threads": args.threads,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench-pgqueue", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--jobs", type=int, default=100_000, help="jobs for the bulk enqueue and drain figures")
    p.add_argument("--one-by-one-jobs", type=int, default=5_000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument(
        "--batch-size", type=int, default=None, help="the worker's --batch-size (default: its own)"
    )
    p.add_argument("--prefetch", type=int, default=None, help="the worker's --prefetch (default: its own)")
    p.add_argument("--rate", type=float, default=200.0, help="jobs/s of the steady latency run")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--million", type=int, default=1_000_000, help="jobs of the bulk+drain total-time run")
    p.add_argument("--skip-million", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    for name in ("repeat", "jobs", "one_by_one_jobs", "processes", "threads", "million"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2

    # SIGTERM runs the cleanup below (stops the embedded cluster) like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster = None
    work = Path(tempfile.mkdtemp(prefix="bench-pgqueue-"))
    if os.environ.get(settings.ENV_DATABASE_URL):
        try:
            url = settings.load().queue_database_url
        except settings.ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        where = f"DATABASE_URL ({settings.redact(url)})"
    else:
        from shared import embedded

        cluster = embedded.EmbeddedCluster(work / "pg")
        cluster.start()
        url = cluster.url
        where = f"embedded PostgreSQL at {url}"
    spool_root = work / "spools"
    spool_root.mkdir(exist_ok=True)
    os.environ["BENCH_SPOOL_DIR"] = str(spool_root)
    try:
        migrate_mod.upgrade(url, url)
        # every setting that shapes the hot path is stated, the worker's defaults unless overridden
        defaults = Config()
        worker_args = ["--processes", str(args.processes), "--threads", str(args.threads)]
        for name in ("batch_size", "prefetch"):
            value = getattr(args, name)
            worker_args += [
                f"--{name.replace('_', '-')}",
                str(getattr(defaults, name) if value is None else value),
            ]
        worker_args += ["--flush-interval", f"{defaults.flush_interval:g}"]
        figures: dict[str, Any] = {"database": where, "worker_args": worker_args}
        with db.connect(url, role="bench-pgqueue", autocommit=True) as conn:
            figures["environment"] = environment(conn, args)
            log(f"pgqueue benchmark on {where}; {args.repeat} repetitions, median quoted")
            log(f"worker: bench-pgqueue-worker {' '.join(worker_args)} (recorder on)")

            cal = [calibrate.raw_ceiling(url, args.jobs) for _ in range(args.repeat)]
            raw = {
                k: statistics.median(c[k] for c in cal)
                for k in ("drain", "copy", "insert", "notify_p50_ms", "notify_p99_ms")
            }
            figures["raw"] = {"runs": cal, **raw}
            log(
                f"raw ceiling: drain {raw['drain']:,.0f}/s (claim 100 + complete), "
                f"COPY {raw['copy']:,.0f}/s, single INSERT {raw['insert']:,.0f}/s, "
                f"NOTIFY round trip p50 {raw['notify_p50_ms']:.2f} ms, p99 {raw['notify_p99_ms']:.2f} ms"
            )

            bulk = [bench_bulk(conn, args.jobs) for _ in range(args.repeat)]
            figures["bulk_enqueue"] = {"runs": bulk, "jobs_per_s": statistics.median(bulk)}
            log(
                f"bulk enqueue ({args.jobs:,} jobs, COPY): {statistics.median(bulk):,.0f}/s runs={[round(b) for b in bulk]}"
            )

            obo = [bench_one_by_one(conn, args.one_by_one_jobs) for _ in range(args.repeat)]
            figures["one_by_one_enqueue"] = {"runs": obo, "jobs_per_s": statistics.median(obo)}
            log(
                f"one-by-one enqueue ({args.one_by_one_jobs:,} jobs): {statistics.median(obo):,.0f}/s runs={[round(b) for b in obo]}"
            )

            drains = [
                bench_drain(conn, url, args.jobs, worker_args, args.processes, work, f"drain{i}")
                for i in range(args.repeat)
            ]
            figures["drain"] = {"runs": drains, **{k: median_of(drains, k) for k in drains[0]}}
            d = figures["drain"]
            log(
                f"drain ({args.jobs:,} noop jobs): {d['jobs_per_s']:,.0f}/s in {d['seconds']:.2f}s; "
                f"start-up {d['startup_s']:.2f}s, worker CPU {d['cpu_s']:.1f}s, peak PSS {d['peak_pss_mb']:.0f} MB "
                f"runs={[round(r['jobs_per_s']) for r in drains]}"
            )

            lats = [
                bench_latency(
                    conn, url, args.rate, args.latency_seconds, worker_args, args.processes, work, f"lat{i}"
                )
                for i in range(args.repeat)
            ]
            figures["latency"] = {"runs": lats, **{k: median_of(lats, k) for k in lats[0]}}
            lat = figures["latency"]
            log(
                f"latency enqueue->start at {args.rate:.0f} jobs/s: p50 {lat['p50_ms']:.2f} ms, p95 {lat['p95_ms']:.2f} ms, "
                f"p99 {lat['p99_ms']:.2f} ms, p99.9 {lat['p999_ms']:.2f} ms"
            )

            if not args.skip_million:
                m = bench_million(conn, url, args.million, worker_args, args.processes, work)
                figures["million"] = m
                log(
                    f"{args.million:,} jobs bulk+drain: total {m['total_s']:.1f}s (enqueue {m['enqueue_s']:.1f}s, "
                    f"drain {m['drain_s']:.1f}s), worker CPU {m['cpu_s']:.0f}s, peak PSS {m['peak_pss_mb']:.0f} MB"
                )
            reset(conn)

        ratios = {
            "drain_vs_raw_drain": figures["drain"]["jobs_per_s"] / raw["drain"],
            "bulk_vs_raw_copy": figures["bulk_enqueue"]["jobs_per_s"] / raw["copy"],
            "one_by_one_vs_raw_insert": figures["one_by_one_enqueue"]["jobs_per_s"] / raw["insert"],
        }
        figures["ratios"] = ratios
        log("")
        log("| figure | pgqueue | raw SQL | ratio | bar |")
        log("|---|---|---|---|---|")
        log(
            f"| drain, jobs/s | {figures['drain']['jobs_per_s']:,.0f} | {raw['drain']:,.0f} | {ratios['drain_vs_raw_drain']:.2f} | >= 30,000 |"
        )
        log(
            f"| bulk enqueue, jobs/s | {figures['bulk_enqueue']['jobs_per_s']:,.0f} | {raw['copy']:,.0f} | {ratios['bulk_vs_raw_copy']:.2f} | >= 150,000 |"
        )
        log(
            f"| one-by-one enqueue, jobs/s | {figures['one_by_one_enqueue']['jobs_per_s']:,.0f} | {raw['insert']:,.0f} | {ratios['one_by_one_vs_raw_insert']:.2f} | >= 2,500 |"
        )
        log(
            f"| latency p50 / p99, ms | {lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} | "
            f"{raw['notify_p50_ms']:.2f} / {raw['notify_p99_ms']:.2f} (NOTIFY) | "
            f"{lat['p50_ms'] / raw['notify_p50_ms']:.1f} / {lat['p99_ms'] / raw['notify_p99_ms']:.1f} | <= 3 / <= 15 |"
        )
        if "million" in figures:
            log(
                f"| 1M bulk+drain, total s | {figures['million']['total_s']:.1f} | | | (Rails original: 12 h) |"
            )
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2, default=str))
            log(f"figures written to {args.json}")
    finally:
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
