"""The three services as real processes, started by their console scripts."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from shared import celery_app, db, embedded, settings

from ..conftest import drop_database
from ..support import VENV_BIN, Proc, service_env, wait_until

SERVICES = ["bench-web", "bench-celery-worker", "bench-pgqueue-worker"]


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_web_up_answers_200_only_while_the_database_answers(database_url, pg_server, output_dir):
    port = embedded.free_port()
    web = Proc(
        [str(VENV_BIN / "bench-web")],
        service_env(database_url, PORT=str(port), WEB_CONCURRENCY="1"),
        output_dir / "web.log",
    )
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/up") == 200, 30, message="/up 200")
        drop_database(pg_server, database_url.rsplit("/", 1)[1])
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/up") == 503, 15, message="/up 503")
    finally:
        web.stop()


def test_celery_worker_runs_a_noop_sent_from_the_web_side(database_url, output_dir, spool_dir):
    queue = f"t-{time.time_ns()}"
    env = service_env(database_url, BENCH_SPOOL_DIR=str(spool_dir))
    worker = Proc(
        [
            str(VENV_BIN / "bench-celery-worker"),
            "--pool",
            "threads",
            "--concurrency",
            "2",
            "--queues",
            queue,
            "--polling-interval",
            "0.1",
        ],
        env,
        output_dir / "celery.log",
    )
    try:
        wait_until(lambda: "ready" in worker.log(), 30, message="celery worker ready")
        app = celery_app.make_app("postgres", s=settings.load())
        celery_app.send(app, "noop", {}, {"run_id": 42, "seq": 1, "enqueued_at": time.time()}, queue=queue)

        def finished():
            with db.connect(database_url) as conn:
                return conn.execute(
                    "SELECT array_agg(kind ORDER BY ts_us) FROM job_events WHERE run_id = 42 AND seq = 1"
                ).fetchone()[0]

        assert wait_until(finished, 30, message="start and finish records") == ["start", "finish"]
        with db.connect(database_url) as conn:
            info = conn.execute("SELECT info FROM queue.workers WHERE adapter = 'celery'").fetchone()[0]
        assert info["broker"] == "postgres" and info["pool"] == "threads"
    finally:
        assert worker.stop() == 0, worker.log()


def test_pgqueue_worker_connects_logs_its_identity_and_stops_on_sigterm(database_url, output_dir):
    worker = Proc(
        [str(VENV_BIN / "bench-pgqueue-worker")], service_env(database_url), output_dir / "pgqueue.log"
    )
    try:
        wait_until(lambda: "pgqueue worker pgqueue-" in worker.log(), 30, message="identity logged")

        def registered():
            with db.connect(database_url) as conn:
                return conn.execute(
                    "SELECT count(*) FROM queue.workers WHERE adapter = 'pgqueue'"
                ).fetchone()[0]

        wait_until(registered, 10)
        worker.popen.send_signal(signal.SIGTERM)
        assert worker.popen.wait(20) == 0
    finally:
        worker.stop()
    with db.connect(database_url) as conn:
        assert conn.execute(
            "SELECT stopped_at IS NOT NULL FROM queue.workers WHERE adapter = 'pgqueue'"
        ).fetchone()[0]


def run_service(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def assert_one_clear_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("script", SERVICES)
def test_malformed_database_url(script, tmp_path):
    env = service_env("mysql://user@host/db")
    assert_one_clear_line(run_service(script, env), "DATABASE_URL", "postgres://")


@pytest.mark.parametrize("script", SERVICES)
def test_unreachable_database(script):
    env = service_env(f"postgresql://postgres@127.0.0.1:{embedded.free_port()}/nothing")
    assert_one_clear_line(run_service(script, env), "cannot connect to PostgreSQL", "make db-up")


@pytest.mark.parametrize("script", SERVICES)
def test_database_not_migrated(script, empty_database_url):
    assert_one_clear_line(
        run_service(script, service_env(empty_database_url)), "has not been migrated", "make migrate"
    )


def test_unknown_broker_scheme(database_url):
    env = service_env(database_url, CELERY_BROKER_URL="kafka://127.0.0.1:9092")
    assert_one_clear_line(run_service("bench-celery-worker", env), "CELERY_BROKER_URL", "'kafka'")


def test_migrate_command_reports_an_unreachable_database_in_one_line():
    env = service_env(f"postgresql://postgres@127.0.0.1:{embedded.free_port()}/nothing")
    proc = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "shared.migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_clear_line(proc, "cannot connect to PostgreSQL")
