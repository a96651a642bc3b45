"""Helpers for pgqueue's tests: start real workers with short intervals, read jobs and job records."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import db, embedded, spool
from shared import migrate as migrate_mod

from ..support import VENV_BIN, Proc, service_env, wait_until

# Short intervals so that rescue, scheduling, retries and cron happen within seconds (the defaults are
# production values; see docs/pgqueue.md).
FAST = {
    "--heartbeat-interval": "0.3",
    "--rescue-after": "2",
    "--rescue-interval": "0.3",
    "--leader-interval": "0.3",
    "--scheduler-interval": "0.1",
    "--poll-interval": "0.5",
    "--cron-interval": "0.2",
    "--retry-base": "0.2",
    "--shutdown-timeout": "10",
    "--counts-interval": "1",
}


FAULTY_TASKS = {"PYTHONPATH": str(Path(__file__).parent / "faulty_tasks")}
"""The environment of a worker that also knows the failing tasks of `faulty_tasks/sitecustomize.py`."""


def worker_args(**overrides: object) -> list[str]:
    opts = dict(FAST)
    for key, value in overrides.items():
        opts["--" + key.replace("_", "-")] = str(value)
    args: list[str] = []
    for key, value in opts.items():
        if value is True:
            args.append(key)
        elif value is not None and value is not False:
            args += [key, value]
    return args


class Workers:
    """Starts `bench-pgqueue-worker` supervisors for one test and stops them all at the end."""

    def __init__(self, database_url: str, output_dir: Path, spool_dir: Path) -> None:
        self.database_url = database_url
        self.output_dir = output_dir
        self.spool_dir = spool_dir
        self.procs: list[Proc] = []

    def start(
        self,
        *,
        name: str = "worker",
        wait: bool = True,
        env: dict[str, str] | None = None,
        **overrides: object,
    ) -> Proc:
        env = service_env(self.database_url, BENCH_SPOOL_DIR=str(self.spool_dir), **(env or {}))
        proc = Proc(
            [str(VENV_BIN / "bench-pgqueue-worker"), *worker_args(**overrides)],
            env,
            self.output_dir / f"{name}-{len(self.procs)}.log",
        )
        self.procs.append(proc)
        if wait:
            processes = int(overrides.get("processes", 1))
            wait_until(
                lambda: proc.log().count("started: queues=") >= processes or not proc.alive(),
                60,
                message="worker processes started",
            )
            assert proc.alive(), proc.log()
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


@pytest.fixture
def workers(database_url, output_dir, spool_dir):
    w = Workers(database_url, output_dir, spool_dir)
    yield w
    w.stop_all()


@pytest.fixture
def own_cluster(monkeypatch) -> Iterator[embedded.EmbeddedCluster]:
    """An embedded PostgreSQL of the test's own, migrated, as `DATABASE_URL`: a test may stop and start it."""
    cluster = embedded.EmbeddedCluster(Path(tempfile.mkdtemp(prefix="pgq-cluster-", dir="/tmp")))
    cluster.start()
    try:
        migrate_mod.upgrade(cluster.url, cluster.url)
        monkeypatch.setenv("DATABASE_URL", cluster.url)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def qconn(database_url):
    with db.connect(database_url, autocommit=True) as conn:
        yield conn


def states(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT state::text, count(*) FROM queue.pgqueue_jobs GROUP BY 1").fetchall())


def all_finished(conn, total: int) -> bool:
    s = states(conn)
    return sum(s.get(k, 0) for k in ("completed", "discarded", "cancelled")) == total


def load_spools(conn, spool_dir: Path) -> int:
    """Load every spool file (the harness's job after a worker died); exactly once per line."""
    return sum(spool.load_file(conn, p, p.stem.rsplit("-", 1)[0]) for p in sorted(spool_dir.glob("*.spool")))


def completed_run_events(url: str, spool_dir: Path, total: int, run_id: int) -> dict[int, dict[str, int]]:
    """After a run of `total` jobs on `url`: every job completed; the spools loaded; the records by seq."""
    with db.connect(url, autocommit=True) as conn:
        assert states(conn) == {"completed": total}
        load_spools(conn, spool_dir)
        return events_by_seq(conn, run_id)


def events_by_seq(conn, run_id: int) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for seq, kind, n in conn.execute(
        "SELECT seq, kind, count(*) FROM job_events WHERE run_id = %s GROUP BY 1, 2", (run_id,)
    ).fetchall():
        out.setdefault(seq, {})[kind] = n
    return out
