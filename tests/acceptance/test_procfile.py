"""Procfile.dev end to end: honcho (and `make dev` / `make dev-stop`) start the three services; nothing is left.

The first test runs on an embedded PostgreSQL that it starts itself, after running the migrations,
so every CI run covers the fresh-machine path whatever server the rest of the suite uses.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shared import celery_app, db, embedded, settings
from shared import migrate as migrate_mod

from ..support import ROOT, VENV_BIN, Proc, service_env, session_processes, wait_until


def up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/up", timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def send_and_wait(url: str, run_id: int) -> list[str]:
    app = celery_app.make_app("postgres", s=settings.load({"DATABASE_URL": url}))
    celery_app.send(app, "noop", {}, {"run_id": run_id, "seq": 1, "enqueued_at": time.time()})

    def finished():
        with db.connect(url) as conn:
            return conn.execute(
                "SELECT array_agg(kind ORDER BY ts_us) FROM job_events WHERE run_id = %s", (run_id,)
            ).fetchone()[0]

    return wait_until(finished, 60, message="celery task start and finish records")


@pytest.fixture
def embedded_cluster(tmp_path_factory):
    cluster = embedded.EmbeddedCluster(tmp_path_factory.mktemp("embedded-pg"))
    cluster.start()
    yield cluster
    cluster.destroy()


@pytest.mark.embedded
def test_honcho_runs_the_procfile_on_the_embedded_postgres(embedded_cluster, output_dir, tmp_path):
    url = embedded_cluster.url
    migrate_mod.upgrade(url, url)
    port = embedded.free_port()
    env = service_env(
        url,
        PORT=str(port),
        WEB_CONCURRENCY="1",
        BENCH_SPOOL_DIR=str(tmp_path / "spool"),
        BENCH_CELERY_POLLING_INTERVAL="0.2",
        BENCH_CELERY_CONCURRENCY="2",
    )
    honcho = Proc(
        [str(VENV_BIN / "honcho"), "start", "-f", str(ROOT / "Procfile.dev"), "-d", str(ROOT)],
        env,
        output_dir / "honcho.log",
    )
    sid = honcho.pid  # start_new_session: the session id is honcho's PID
    try:
        wait_until(lambda: up(port), 60, message="web /up")
        assert send_and_wait(url, 4242) == ["start", "finish"]
        names = {p.name() for p in session_processes(sid)}
        assert len(session_processes(sid)) >= 4, names  # honcho + web + celery + pgqueue (and children)
    finally:
        honcho.stop()
    wait_until(lambda: not session_processes(sid), 30, message="no process left in the session")


def test_make_dev_then_dev_stop_leaves_nothing_running(database_url, output_dir, tmp_path):
    data = ROOT / ".data"
    assert not list(data.glob("dev-*.pid")), "another make dev is running in this checkout"
    port = embedded.free_port()
    env = service_env(
        database_url, PORT=str(port), WEB_CONCURRENCY="1", BENCH_SPOOL_DIR=str(tmp_path / "spool")
    )
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if "overmind" not in p)
    make = Proc(["make", "-s", "dev"], env, output_dir / "make-dev.log")
    sid = make.pid
    try:
        wait_until(lambda: up(port), 90, message="web /up under make dev")
        assert list(data.glob("dev-*.pid"))
        stop = subprocess.run(
            ["make", "-s", "dev-stop"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=90
        )
        assert stop.returncode == 0, stop.stderr
        wait_until(
            lambda: not [p for p in session_processes(sid) if p.pid != make.pid],
            30,
            message="no process of make dev left",
        )
        honcho_groups = [Path(p) for p in data.glob("dev-*.pid")]
        assert not honcho_groups
    finally:
        make.stop()
