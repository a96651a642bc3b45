"""Procfile.dev end to end: honcho starts the three services; nothing is left (`make dev`: test_dev.py).

The first test runs on an embedded PostgreSQL that it starts itself, after running the migrations,
so every CI run covers the fresh-machine path whatever server the rest of the suite uses.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

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
