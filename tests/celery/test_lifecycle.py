"""A worker's life: warm shutdown on SIGTERM, bad brokers at start, and a broker that goes away mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil
import pytest

from shared import celery_app, db, embedded, settings
from shared.bench.adapters.celery import WorkerOptions
from shared.bench.records import read_spool, wait_finished
from shared.bench.workers import WorkerProcess, worker_env

from ..support import VENV_BIN, service_env, wait_until
from .conftest import WORKER_ENV, RedisServer, concurrently, running_worker, unique

pytestmark = pytest.mark.slow


def test_sigterm_is_a_warm_shutdown_that_finishes_the_running_task(database_url, tmp_path, output_dir):
    queue = unique("warm")
    spec = WorkerOptions(
        broker="postgres",
        pool="prefork",
        concurrency=1,
        queues=[queue],
        polling_interval=0.1,
        loglevel="INFO",
    )
    worker = WorkerProcess(
        spec.argv(), worker_env(database_url, tmp_path, **WORKER_ENV), output_dir / "w.log"
    )
    try:
        worker.wait_ready(database_url, timeout=90)
        app = celery_app.make_app("postgres", polling_interval=0.1, s=settings.load())
        celery_app.send(
            app, "sleep", {"ms": 2000}, {"run_id": 7, "seq": 1, "enqueued_at": time.time()}, queue=queue
        )
        wait_until(
            lambda: any(e.kind == "start" for e in read_spool(tmp_path, 7)), 60, message="the start record"
        )
        # SIGTERM to the main process alone, as a process manager does (docs/deploy.md: `kill_signal` on Fly).
        term_at = time.time()
        os.kill(worker.pid, signal.SIGTERM)
        assert worker.popen.wait(60) == 0, worker.log()
    finally:
        worker.stop(5)
    events = read_spool(tmp_path, 7)
    assert [e.kind for e in events] == ["start", "finish"]
    assert events[1].ts > term_at  # it was still running when the signal came, and it finished
    with db.connect(database_url) as conn:
        stopped, loaded = conn.execute(
            "SELECT stopped_at IS NOT NULL, spool_loaded_at IS NOT NULL FROM queue.workers WHERE pid = %s",
            (worker.pid,),
        ).fetchone()
        recorded = conn.execute("SELECT count(*) FROM job_events WHERE run_id = 7").fetchone()[0]
    assert stopped and loaded
    assert recorded == 2  # the final spool load ran during shutdown


def connection_owners(database_url: str, application_name: str) -> set[int]:
    """The local processes that hold this database's connections opened as `application_name`, found by the
    client's TCP port that the server reports."""
    with db.connect(database_url, autocommit=True) as conn:
        ports = {
            port
            for (port,) in conn.execute(
                "SELECT client_port FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s",
                (application_name,),
            )
        }
    return {c.pid for c in psutil.net_connections(kind="tcp") if c.pid and c.laddr and c.laddr.port in ports}


def test_the_process_that_consumes_jobs_loads_no_spool_and_writes_no_count(
    database_url, tmp_path, output_dir
):
    queue = unique("loader")
    spec = WorkerOptions(broker="postgres", concurrency=2, queues=[queue], polling_interval=0.1)
    with running_worker(database_url, spec, tmp_path, output_dir / "worker.log", **WORKER_ENV) as worker:
        [consumer] = psutil.Process(worker.pid).children()
        pool = {c.pid for c in consumer.children()}
        assert len(pool) == 2
        app = celery_app.make_app("postgres", polling_interval=0.1, s=settings.load())
        celery_app.send(app, "noop", {}, {"run_id": 11, "seq": 1, "enqueued_at": time.time()}, queue=queue)
        app.close()
        [finish] = [e for e in wait_finished(tmp_path, 11, 1, 60) if e.kind == "finish"]
        with db.connect(database_url, autocommit=True) as conn:
            [worker_id] = conn.execute(
                "SELECT id FROM queue.workers WHERE pid = %s", (worker.pid,)
            ).fetchone()

            def arrived() -> bool:
                loaded = conn.execute("SELECT count(*) FROM job_events WHERE run_id = 11").fetchone()[0]
                counted = conn.execute(
                    "SELECT completed FROM queue.worker_completions WHERE worker_id = %s", (worker_id,)
                ).fetchone()
                return loaded == 2 and counted == (1,)

            # the record and the count arrive in the database ...
            wait_until(arrived, 30, message="the record loaded and the job counted")
        # ... through the connections of the worker's main process, which runs no job: not through
        # `celery worker`, which consumes, nor its pool, which ran the job
        assert finish.pid in pool
        assert connection_owners(database_url, "bench-spool-loader") == {worker.pid}
        assert connection_owners(database_url, "bench-celery-completions") == {worker.pid}
        assert connection_owners(database_url, "bench-celery-heartbeat") == {worker.pid}


def run_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "bench-celery-worker"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )


def one_clear_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_an_unreachable_broker_at_start_gives_one_clear_line_and_exit_2(database_url):
    dead = embedded.free_port()
    cases = [
        (
            {"REDIS_URL": f"redis://127.0.0.1:{dead}/0"},
            ["--broker", "redis"],
            ["cannot reach the redis broker", "REDIS_URL"],
        ),
        (
            {"RABBITMQ_URL": f"amqp://guest:secret@127.0.0.1:{dead}//"},
            ["--broker", "rabbitmq"],
            ["cannot reach the rabbitmq broker", "guest:***@", "RABBITMQ_URL"],
        ),
    ]

    def check(case):
        env, args, fragments = case
        line = one_clear_line(run_worker(service_env(database_url, **env, **WORKER_ENV), *args))
        for fragment in fragments:
            assert fragment in line, line
        assert "secret" not in line

    concurrently(check, cases)


@pytest.mark.parametrize(
    ("env", "args", "fragments"),
    [
        (
            {"CELERY_BROKER_URL": "sqla+postgresql://postgres@127.0.0.1:{dead}/nothing"},
            [],
            ["cannot connect to PostgreSQL"],
        ),
        ({}, ["--broker", "kafka"], ["unknown broker 'kafka'", "postgres, redis, rabbitmq"]),
        ({}, ["--broker", "redis", "--visibility-timeout", "-1"], ["visibility timeout must be positive"]),
        ({"BENCH_CELERY_POLLING_INTERVAL": "soon"}, [], ["BENCH_CELERY_POLLING_INTERVAL", "'soon'"]),
    ],
)
def test_bad_worker_settings_give_one_clear_line(database_url, monkeypatch, capsys, env, args, fragments):
    # In process (the same `main` as the console script), to keep the suite fast.
    from celery_worker import cli

    dead = str(embedded.free_port())
    for key, value in env.items():
        monkeypatch.setenv(key, value.replace("{dead}", dead))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_redis_broker_that_goes_down_mid_run_is_survived(database_url, tmp_path, output_dir):
    server = RedisServer(output_dir / "redis.log").start()
    queue = unique("down")
    spec = WorkerOptions(broker="redis", pool="prefork", concurrency=1, queues=[queue], loglevel="INFO")
    s = settings.load({**os.environ, "REDIS_URL": server.url})
    try:
        with running_worker(
            database_url, spec, tmp_path, output_dir / "worker.log", REDIS_URL=server.url
        ) as worker:
            app = celery_app.make_app("redis", s=s)
            meta = {"run_id": 9, "enqueued_at": time.time()}
            celery_app.send(app, "noop", {}, {**meta, "seq": 1}, queue=queue)
            celery_app.send(app, "sleep", {"ms": 1500}, {**meta, "seq": 2}, queue=queue)
            wait_until(
                lambda: any(e.seq == 2 for e in read_spool(tmp_path, 9)), 60, message="task 2 starting"
            )
            server.stop()  # our own server, on its own port: the machine's Redis is never touched
            wait_until(lambda: "Connection to broker lost" in worker.log(), 30, message="the worker noticing")
            assert worker.alive()
            server = RedisServer(output_dir / "redis-2.log", port=server.port).start()
            app = celery_app.make_app("redis", s=s)
            celery_app.send(app, "noop", {}, {**meta, "seq": 3, "enqueued_at": time.time()}, queue=queue)
            events = wait_finished(tmp_path, 9, 3, 90)
            assert worker.alive()
    finally:
        server.stop()
    finished = {e.seq for e in events if e.kind == "finish"}
    # The outcome: the worker stayed up and reconnected; the task running during the outage finished
    # (Celery does not cancel running tasks on a lost connection by default); a task sent after the
    # restart ran. Messages waiting in a Redis without persistence would be gone with it.
    assert finished == {1, 2, 3}
    (output_dir / "outcome.txt").write_text(
        "worker survived the broker restart; running task finished; task sent after restart ran\n"
        + "\n".join(line for line in worker.log().splitlines() if "broker" in line.lower())
    )
