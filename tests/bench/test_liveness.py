"""Integration: executor liveness in the database, so that several web machines can share one experiment
(docs/deploy.md, "More than one web machine").

Two "hosts" are simulated by distinct host ids: an executor on host-a beats on its experiment row while
host-b's pages reap and cancel. A PID says nothing across machines, so host-b must judge host-a's executor by
its heartbeat only: it neither fails it because its PID is not alive on host-b, nor signals a process of its
own that happens to have that PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import psycopg
import pytest

from shared.bench import experiments

from ..support import wait_until

SPEC = {"cases": [{"adapter": "pgqueue", "jobs": 10}]}


def status_of(url: str, eid: int) -> tuple[str, str | None]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT status, error FROM experiments WHERE id = %s", (eid,)).fetchone()


def reap_as(url: str, host: str, **kw) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return experiments.reap_dead_executors(conn, host=host, **kw)


def test_two_hosts_neither_reaps_nor_cancels_the_others_live_executor(database_url):
    eid = experiments.start_experiment(experiments.validate_spec(SPEC), database_url=database_url)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a PID that is dead here: host-a's executor has it on host-a
    cancelled = threading.Event()
    beat = experiments.ExecutorHeartbeat(
        eid, database_url, cancelled.set, host="host-a", pid=gone.pid, interval=0.2
    )
    beat.start()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with psycopg.connect(database_url) as conn:
            host, machine, pid = conn.execute(
                "SELECT executor_host, executor_machine_id, executor_pid FROM experiments WHERE id = %s",
                (eid,),
            ).fetchone()
        assert (host, pid) == ("host-a", gone.pid) and machine is None  # no FLY_MACHINE_ID here

        # host-b's pages look: the PID is not alive on host-b, but the executor beats.
        assert reap_as(database_url, "host-b") == 0
        assert status_of(database_url, eid)[0] == "pending"
        # On host-a itself the dead PID is conclusive (the old rule, still right on its own host).
        # (not asserted here: it would end the experiment this test goes on with)

        # host-b cancels while host-a's executor has a PID that is a live process on host-b.
        beat.params["pid"] = sleeper.pid
        wait_until(lambda: not beat.is_alive() or _pid_recorded(database_url, eid, sleeper.pid), 10)
        assert experiments.cancel(eid, database_url=database_url) is True
        wait_until(cancelled.is_set, 10, message="host-a's executor reads the cancel flag")
        assert sleeper.poll() is None, "host-b signalled a process of its own that had the executor's PID"
        # Cancel asked; the executor (not host-b) ends the experiment, keeping what it measured.
        assert status_of(database_url, eid)[0] == "pending"
    finally:
        beat.stop()
        sleeper.kill()
        sleeper.wait()

    # Once host-a's executor stops beating, any host reaps it by the heartbeat's age.
    wait_until(
        lambda: reap_as(database_url, "host-b", stale_after=1.0) == 1, 15, message="a stale beat reaped"
    )
    status, error = status_of(database_url, eid)
    assert status == "failed" and "host-a" in error and "stopped beating" in error


def _pid_recorded(url: str, eid: int, pid: int) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT executor_pid FROM experiments WHERE id = %s", (eid,)).fetchone()[0] == pid


def test_an_experiment_never_launched_is_cancelled_at_once_and_reaped_when_stale(database_url):
    eid = experiments.start_experiment(experiments.validate_spec(SPEC), database_url=database_url)
    assert reap_as(database_url, "host-b") == 0, "a new experiment is not stale"
    assert experiments.cancel(eid, database_url=database_url) is True
    assert status_of(database_url, eid)[0] == "cancelled"
    assert experiments.cancel(eid, database_url=database_url) is False

    eid = experiments.start_experiment(experiments.validate_spec(SPEC), database_url=database_url)
    wait_until(lambda: reap_as(database_url, "host-b", stale_after=0.5) == 1, 10, message="reaped")
    assert status_of(database_url, eid)[0] == "failed"


@pytest.mark.slow
def test_a_launched_executor_stops_on_the_cancel_flag(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_REPORTS_DIR", str(tmp_path / "reports"))
    spec = experiments.validate_spec(
        {
            "repetitions": 1,
            "cases": [
                {
                    "adapter": "pgqueue",
                    "jobs": 300,
                    "workload": "sleep",
                    "params": {"ms": 200},
                    "processes": 1,
                    "slots": 1,
                }
            ],
        }
    )
    eid = experiments.start_experiment(spec, database_url=database_url)
    pid = experiments.launch_executor(eid, database_url=database_url, log_dir=tmp_path)

    def progress() -> dict:
        return experiments.progress(eid, database_url=database_url)

    try:
        wait_until(lambda: progress()["runs_by_status"].get("running"), 120, message="the run running")
        assert progress()["executor_pid"] == pid
        assert experiments.cancel(eid, database_url=database_url) is True
        wait_until(lambda: progress()["status"] == "cancelled", 90, message="the experiment cancelled")
        wait_until(lambda: not experiments._alive(pid), 30, message="the executor exits")
        # It kept what it measured: the report is written and stored in the database.
        with psycopg.connect(database_url) as conn:
            names = {
                r[0]
                for r in conn.execute("SELECT name FROM experiment_files WHERE experiment_id = %s", (eid,))
            }
        assert {"results.json", "summary.md"} <= names
    finally:
        print((tmp_path / f"experiment-{eid}.log").read_text()[-4000:])
        if experiments._alive(pid):
            os.killpg(pid, signal.SIGKILL)
