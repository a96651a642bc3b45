"""`python -m shared.bench web` (`make bench-web`): the admin pages on a pgqueue table of 1,000,000 jobs,
over loopback (docs/benchmark.md, "The admin pages").

Measures the median answer time of the pgqueue overview and the jobs list (first page, filtered, a later
page), then sends 200 requests/s to the overview for 30 s and counts errors. The load is open loop: each
request leaves on schedule whether or not earlier ones have answered, from sender processes of its own
(`shared.bench.openloop`: one event loop and a pool of keep-alive connections each), so that it measures
the web service, not its own threads competing for the cores. Prints figures; asserts nothing.

PostgreSQL: a fresh database on the server of DATABASE_URL when it is set (dropped afterwards), else an
embedded cluster of its own. The web service is the real one (`bench-web`: gunicorn, its default workers
and threads), bound to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from shared import embedded, pgqueue, settings
from shared.bench import databases, openloop, stats
from shared.bench.httpload import CONNECTION_SECONDS, HttpOpener

BIN = Path(sys.executable).parent
PASSWORD = "bench-web-" + uuid.uuid4().hex[:8]
QUEUES = ("q0", "q1", "q2", "q3", "q4")
TASKS = ("noop", "sleep", "cpu", "mixed")


def log(msg: str) -> None:
    print(msg, flush=True)


def seed(url: str, jobs: int) -> dict[str, float]:
    """`jobs` jobs through pgqueue's client (COPY), spread over five queues and four tasks; then q3's are
    discarded and q4's cancelled (bulk actions), so the listing and counts see several states."""
    engine = sa.create_engine(settings.sqlalchemy_url(url))
    started = time.monotonic()
    batch = 100_000
    params = {"ms": 1}
    done = 0
    while done < jobs:
        n = min(batch, jobs - done)
        specs = [
            pgqueue.JobSpec(task=TASKS[i % len(TASKS)], params=params, queue=QUEUES[i % len(QUEUES)])
            for i in range(done, done + n)
        ]
        with engine.begin() as conn:
            pgqueue.enqueue_many(conn, specs)
        done += n
    enqueued = time.monotonic() - started
    with engine.begin() as conn:
        pgqueue.bulk_action(conn, "discard", queue="q3")
        pgqueue.bulk_action(conn, "cancel", queue="q4")
        pgqueue.enqueue_many(
            conn, [pgqueue.JobSpec(task="noop", queue="q0", run_at=3600.0 + i) for i in range(1000)]
        )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE queue.pgqueue_jobs")
    with engine.begin() as conn:
        refresh = pgqueue.refresh_counts(conn)
    engine.dispose()
    return {"seed_s": time.monotonic() - started, "enqueue_s": enqueued, "refresh_ms": refresh["duration_ms"]}


class Client:
    """One keep-alive HTTP connection per thread, with the session cookie of one login."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookie = ""
        self.local = threading.local()

    def conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return c

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None):
        h = {"Cookie": self.cookie, **(headers or {})}
        for attempt in (1, 2):
            c = self.conn()
            try:
                c.request(method, path, body=body, headers=h)
                resp = c.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    c.close()
                    self.local.conn = None
                return resp, data
            except (http.client.HTTPException, ConnectionError):
                c.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def login(self) -> None:
        resp, data = self.request("GET", "/login")
        cookies = [v.split(";", 1)[0] for k, v in resp.getheaders() if k.lower() == "set-cookie"]
        self.cookie = "; ".join(cookies)
        found = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', data)
        if found is None:
            raise RuntimeError("the login page has no CSRF token")
        token = found.group(1).decode()
        body = urllib.parse.urlencode({"username": "admin", "password": PASSWORD, "csrf_token": token})
        resp, _ = self.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status == 302, resp.status
        self.cookie = "; ".join(v.split(";", 1)[0] for k, v in resp.getheaders() if k.lower() == "set-cookie")


def timed(client: Client, path: str, n: int) -> list[float]:
    out = []
    # the API takes HTTP Basic only (the pages' cookie is ignored there)
    basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
    headers = basic if path.startswith("/api/") else None
    for _ in range(n):
        t = time.perf_counter()
        resp, _ = client.request("GET", path, headers=headers)
        out.append((time.perf_counter() - t) * 1000)
        if resp.status != 200:
            raise SystemExit(f"error: GET {path} answered {resp.status}")
    return out


def load(
    host: str, port: int, cookie: str, path: str, rate: float, seconds: float, processes: int | None
) -> dict[str, Any]:
    """Open loop (`openloop.run`): request i is due at start + i/rate and leaves then from one of K sender
    processes, whether or not earlier ones have answered; latency counts from that due time."""
    total = int(rate * seconds)
    k = processes or openloop.processes_for(rate)
    per_process = max(2, math.ceil(rate / k * CONNECTION_SECONDS))
    r = openloop.run(HttpOpener(host, port, path, cookie, per_process), total, rate, processes=k)
    latencies: list[float] = []
    service: list[float] = []  # from the moment the request was written
    lags: list[float] = []  # how late it was written: its sender's lag and any wait for a connection
    errors: list[str] = []
    for a in r.arrivals:
        written, done, status = a.outcome
        latencies.append((done - a.due) * 1000)
        service.append((done - written) * 1000)
        lags.append(max(written - a.due, 0.0) * 1000)
        if status != 200:
            errors.append(f"HTTP {status}" if isinstance(status, int) else str(status))
    elapsed = max(r.finished_at - r.started_at, 1e-9)
    return {
        "requests": r.sent,
        "errors": len(errors),
        "achieved_rps": r.sent / elapsed,
        "processes": r.processes,
        "connections_per_process": per_process,
        **stats.percentiles(latencies, (50.0, 95.0, 99.0)),
        "max": max(latencies),
        "service_p50": stats.median(service),
        "service_p99": stats.percentiles(service, (99.0,))["p99"],
        "send_lag_p50": stats.median(lags),
        "send_lag_p99": stats.percentiles(lags, (99.0,))["p99"],
        "error_kinds": sorted(set(errors)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shared.bench web", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--samples", type=int, default=50, help="sequential requests per page for the medians")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument(
        "--sender-processes",
        type=int,
        default=None,
        help=f"processes of the load generator (default: one per {openloop.PER_PROCESS_RATE:g} requests/s)",
    )
    args = p.parse_args(argv)
    if not 1 <= args.jobs <= 10_000_000 or args.rate <= 0 or args.seconds <= 0:
        print("error: --jobs must be 1..10000000, --rate and --seconds above 0", file=sys.stderr)
        return 2
    if args.sender_processes is not None and not 1 <= args.sender_processes <= settings.MAX_SENDER_PROCESSES:
        print(f"error: --sender-processes must be 1..{settings.MAX_SENDER_PROCESSES}", file=sys.stderr)
        return 2

    try:
        database = databases.throwaway("bench_web")
        url, where = database.__enter__()
    except (settings.ConfigError, psycopg.Error) as exc:
        print(f"error: cannot prepare a database: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    web = None
    try:
        log(f"database: {where}")
        log(f"seeding {args.jobs:,} jobs through pgqueue's client ...")
        seeded = seed(url, args.jobs)
        log(
            f"seeded in {seeded['seed_s']:.1f} s (COPY {seeded['enqueue_s']:.1f} s); "
            f"one refresh of the cached counts took {seeded['refresh_ms']:.0f} ms"
        )
        port = embedded.free_port()
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "ADMIN_USER": "admin",
            "ADMIN_PASSWORD": PASSWORD,
            "SECRET_KEY": uuid.uuid4().hex,
            "PORT": str(port),
            "BENCH_WEB_HOST": "127.0.0.1",
        }
        env.pop("QUEUE_DATABASE_URL", None)
        logfile = open(Path(tempfile.gettempdir()) / f"bench-web-{port}.log", "ab")
        web = subprocess.Popen(
            [str(BIN / "bench-web")],
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = Client("127.0.0.1", port)
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.request("GET", "/up")[0].status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or web.poll() is not None:
                raise SystemExit(f"error: bench-web did not answer /up; see {logfile.name}")
            time.sleep(0.2)
        client.login()
        workers = env.get("WEB_CONCURRENCY", "2")
        log(
            f"bench-web on 127.0.0.1:{port} (gunicorn, {workers} workers x {env.get('WEB_THREADS', '4')} threads)"
        )

        first = client.request("GET", "/pgqueue/jobs?limit=50")[1].decode()
        last_ids = re.findall(r'data-job="(\d+)"', first)
        pages = {
            "overview /pgqueue/": "/pgqueue/",
            "jobs, first page": "/pgqueue/jobs",
            "jobs, state=available": "/pgqueue/jobs?state=available",
            "jobs, queue=q3": "/pgqueue/jobs?queue=q3",
            "jobs, task=cpu": "/pgqueue/jobs?task=cpu",
            f"jobs, a page {args.jobs // 2:,} rows deep": f"/pgqueue/jobs?after={int(last_ids[0]) - args.jobs // 2}",
            "overview JSON /pgqueue/overview.json": "/pgqueue/overview.json",
            "jobs, a task that matches nothing": "/pgqueue/jobs?task=nosuch",
            "jobs, a queue that matches nothing": "/pgqueue/jobs?queue=nosuch",
            "jobs, a task-name prefix that matches nothing": "/pgqueue/jobs?search=nosuch",
            "bulk confirmation, cancel on queue=q0": "/pgqueue/jobs/bulk?action=cancel&queue=q0",
            "bulk confirmation, retry on queue=q3": "/pgqueue/jobs/bulk?action=retry&queue=q3",
            "API jobs, first page": "/api/pgqueue/jobs",
            "API jobs, a task that matches nothing": "/api/pgqueue/jobs?task=nosuch",
            "API count, no filter": "/api/pgqueue/jobs/count",
            "API count, queue=q0": "/api/pgqueue/jobs/count?queue=q0",
            "API count, a task that matches nothing": "/api/pgqueue/jobs/count?task=nosuch",
            "API overview": "/api/pgqueue/overview",
            "runs /runs/": "/runs/",
            "Celery /celery/": "/celery/",
        }
        log("\n| page | median ms | p95 ms | samples |\n|---|---:|---:|---:|")
        for label, path in pages.items():
            timed(client, path, 3)  # warm: connection, plan cache, the process cache of counts
            ms = timed(client, path, args.samples)
            log(
                f"| {label} | {stats.median(ms):.1f} | {stats.percentiles(ms, (95.0,))['p95']:.1f} | {len(ms)} |"
            )

        r = load(
            client.host,
            client.port,
            client.cookie,
            "/pgqueue/",
            args.rate,
            args.seconds,
            args.sender_processes,
        )
        log(
            f"\nload: {args.rate:.0f} requests/s to /pgqueue/ for {args.seconds:.0f} s (open loop, "
            f"{r['processes']} sender processes x {r['connections_per_process']} keep-alive connections to start)"
        )
        log(
            f"| requests | errors | achieved req/s | p50 ms | p95 ms | p99 ms | max ms |\n|---:|---:|---:|---:|---:|---:|---:|\n"
            f"| {r['requests']} | {r['errors']} | {r['achieved_rps']:.1f} | {r['p50']:.1f} | {r['p95']:.1f} | "
            f"{r['p99']:.1f} | {r['max']:.1f} |"
        )
        log(
            f"from the moment each request left: p50 {r['service_p50']:.1f} ms, p99 {r['service_p99']:.1f} ms; "
            f"how late they were written (the load generator, or a wait for one of its connections): p50 "
            f"{r['send_lag_p50']:.1f} ms, p99 {r['send_lag_p99']:.1f} ms"
        )
        if r["errors"]:
            log(f"error kinds: {', '.join(r['error_kinds'])}")
        log(f"\nmachine: {os.cpu_count()} CPUs, shared with other work while measured")
        return 0
    finally:
        if web is not None and web.poll() is None:
            os.killpg(web.pid, 15)
            try:
                web.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(web.pid, 9)
        database.__exit__(None, None, None)
