"""Acceptance: the parts of the harness the default matrix does not run.

- the burst scenario, end to end against real pgqueue workers;
- the PostgreSQL-restart fault, on the embedded PostgreSQL the harness starts itself (never the
  machine's): pgqueue's workers reconnect and the run loses no job;
- attached mode, against a pgqueue worker this test started the way `make dev` does.

The attached run is recounted from `job_events` with the test's own SQL; the embedded PostgreSQL of the
first test is stopped with the harness, so that test reads the report the harness wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import psycopg
import pytest

from shared.bench import experiments, spec
from shared.bench.workers import WorkerProcess, worker_env

from ..conftest import create_database, drop_database
from ..pgqueue.conftest import Workers
from ..support import ROOT, VENV_BIN, service_env, wait_until
from .test_cli import bench, recount

pytestmark = pytest.mark.slow


def runs_of(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, status, scenario, job_count, metrics FROM benchmark_runs ORDER BY id"
        ).fetchall()


def test_burst_and_postgres_restart_on_the_harness_own_postgres(tmp_path):
    cases = {
        "repetitions": 1,
        "cases": [
            {"adapter": "pgqueue", "jobs": 300, "scenario": "burst", "bursts": 3, "processes": 2, "slots": 2},
            {
                "adapter": "pgqueue",
                "jobs": 200,
                "workload": "sleep",
                "params": {"ms": 20},
                "scenario": "fault",
                "fault": "restart_postgres",
                "processes": 2,
                "slots": 2,
            },
        ],
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(cases))
    env = service_env("", BENCH_DATA_DIR=str(tmp_path / "data"))
    env.pop("DATABASE_URL")  # the harness starts (and stops) its own embedded PostgreSQL
    out = tmp_path / "report"
    result = bench(
        ["--spec", str(spec_file), "--output", str(out), "--no-calibration", "--stall-seconds", "20"],
        env,
        300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "embedded PostgreSQL at" in result.stderr
    runs = {r["scenario"]: r for r in json.loads((out / "results.json").read_text())["runs"]}

    burst = runs["burst"]
    assert burst["status"] == "completed", burst["error"]
    assert burst["audit"]["lost"] == 0 and burst["audit"]["executed"] == 300, burst["audit"]

    fault = runs["fault"]
    print("PostgreSQL-restart fault:", fault["fault"], "audit:", fault["audit"])
    assert fault["fault"]["kind"] == "restart_postgres" and fault["fault"]["downtime_s"] > 0, fault["fault"]
    assert fault["audit"]["lost"] == 0, fault["audit"]
    assert fault["audit"]["executed"] == 200, fault["audit"]


@pytest.fixture
def attached_db(pg_server, template_db):
    name = f"bench_a_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    yield url
    drop_database(pg_server, name)


def test_attached_mode_measures_a_worker_it_did_not_start(attached_db, output_dir, tmp_path):
    url = attached_db
    workers = Workers(url, output_dir, tmp_path / "spool")
    workers.start(processes=1, threads=4)
    try:
        the_spec = spec.validate_spec(
            {"repetitions": 2, "cases": [{"adapter": "pgqueue", "jobs": 200, "processes": 1, "slots": 4}]}
        )
        eid = experiments.start_experiment(the_spec, "attached", database_url=url)
        env = service_env(url)
        result = bench_execute(eid, tmp_path / "report", env)
        assert result.returncode == 0, result.stderr[-4000:]
        runs = runs_of(url)
        assert [(r[1], r[2], r[3]) for r in runs] == [("completed", "drain", 200)] * 2
        for run_id, _status, _scenario, n, metrics in runs:
            assert metrics["worker_startup_s"] is None, "attached mode starts no worker"
            counts = recount(url, run_id, n)
            assert counts["lost"] == 0 and counts["executed"] == n, counts
            assert metrics["audit"]["lost"] == 0
        assert workers.procs[0].alive(), "the harness leaves an attached worker running"
    finally:
        workers.stop_all()


def bench_execute(eid: int, out, env) -> subprocess.CompletedProcess:
    """`python -m shared.bench execute ID`, as the web starts a stored experiment."""
    return subprocess.run(
        [sys.executable, "-m", "shared.bench", "execute", str(eid), "--output", str(out)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_attached_across_two_hosts_records_the_fleet_that_ran(attached_db, output_dir, tmp_path):
    """`make bench ARGS=--attached` against two worker groups per adapter, started as separate hosts on this
    machine (`BENCH_HOST`): each run records 2 × 4 slots per adapter, and the report names both hosts."""
    url = attached_db
    hosts = ("host-a", "host-b")
    celery_queue = f"attached-{uuid.uuid4().hex[:8]}"
    procs = []
    for host in hosts:
        env = worker_env(url, tmp_path / f"spool-{host}", BENCH_HOST=host)
        pgqueue_argv = [
            str(VENV_BIN / "bench-pgqueue-worker"), "--processes", "2", "--threads", "2",
            "--heartbeat-interval", "0.5", "--poll-interval", "0.5",
        ]  # fmt: skip
        celery_argv = [
            str(VENV_BIN / "bench-celery-worker"), "--broker", "redis", "--pool", "threads",
            "--concurrency", "4", "--queues", celery_queue,
        ]  # fmt: skip
        procs.append(WorkerProcess(pgqueue_argv, env, output_dir / f"pgqueue-{host}.log"))
        procs.append(WorkerProcess(celery_argv, env, output_dir / f"celery-{host}.log"))

    def live() -> dict[str, set[str]]:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT adapter, host FROM queue.workers WHERE stopped_at IS NULL "
                "AND coalesce(info->>'role', '') <> 'process'"
            ).fetchall()
        out: dict[str, set[str]] = {}
        for adapter, host in rows:
            out.setdefault(adapter, set()).add(host)
        return out

    try:
        wait_until(
            lambda: (
                live() == {"pgqueue": set(hosts), "celery": set(hosts)} or not all(p.alive() for p in procs)
            ),
            90,
            message="both adapters' workers heartbeat on both hosts",
        )
        assert all(p.alive() for p in procs), [p.log()[-1500:] for p in procs if not p.alive()]
        out = tmp_path / "report"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "shared.bench",
                "--attached",
                "--adapters",
                "pgqueue,celery",
                "--brokers",
                "redis",
                "--parts",
                "noop-bulk",
                "--jobs",
                "200",
                "--repetitions",
                "2",
                "--no-calibration",
                "--no-progress",
                "--output",
                str(out),
            ],  # fmt: skip
            env=service_env(url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-4000:]
        data = json.loads((out / "results.json").read_text())
        assert data["experiment"]["mode"] == "attached"
        runs = data["runs"]
        assert {r["adapter"] for r in runs} == {"pgqueue", "celery"} and all(
            r["status"] == "completed" for r in runs
        ), [(r["case_key"], r["status"], r["error"]) for r in runs]
        with psycopg.connect(url) as conn:
            fleets = conn.execute(
                "SELECT adapter, metrics->'fleet' FROM benchmark_runs WHERE status = 'completed'"
            ).fetchall()
        assert len(fleets) == len(runs)
        for adapter, f in fleets:
            assert f["slots"] == 2 * 4 and f["workers"] == 2, (adapter, f)
            assert sorted(f["hosts"]) == list(hosts) and all(h["slots"] == 4 for h in f["hosts"].values())
            assert all(h["cpus"] and h["memory_mb"] for h in f["hosts"].values())
        assert data["fleets_equal"] is True
        summary = (out / "summary.md").read_text()
        assert "host-a" in summary and "host-b" in summary and "Equal total slots: yes" in summary
        for p in procs:
            assert p.alive(), "the harness leaves attached workers running"
        print(result.stdout[-2000:])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.stop(30)


def test_attached_mode_runs_your_workload_only_on_workers_that_import_it(attached_db, output_dir, tmp_path):
    """`--attached --workloads MODULE`: the live workers that announce the module (started with the same
    BENCH_WORKLOADS) run its workload; a worker started without it gets one clear line, not failed jobs."""
    url = attached_db
    module = f"attached_jobs_{uuid.uuid4().hex[:6]}"
    (tmp_path / f"{module}.py").write_text(
        "from shared.workloads import workload\n\n\n"
        "@workload('attached_echo')\n"
        "def attached_echo(ctx):\n"
        "    return None\n"
    )
    args = ["--attached", "--adapters", "pgqueue", "--workloads", module, "--parts", "workloads"]
    args += ["--workload-jobs", "50", "--repetitions", "1", "--no-calibration"]
    workers = Workers(url, output_dir, tmp_path / "spool")
    workers.start(processes=1, threads=2)  # without the module
    try:
        result = bench(
            [*args, "--output", str(tmp_path / "without")], service_env(url), timeout=120, cwd=tmp_path
        )
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        runs = json.loads((tmp_path / "without" / "results.json").read_text())["runs"]
        assert [r["status"] for r in runs] == ["failed"], runs
        assert f"do not import {module}" in runs[0]["error"], runs[0]["error"]
        assert f"BENCH_WORKLOADS={module}" in (tmp_path / "without" / "summary.md").read_text()
    finally:
        workers.stop_all()

    workers = Workers(url, output_dir, tmp_path / "spool2")
    workers.start(processes=1, threads=2, env={"BENCH_WORKLOADS": module, "PYTHONPATH": str(tmp_path)})
    try:
        out = tmp_path / "with"
        result = bench([*args, "--output", str(out)], service_env(url), timeout=180, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-4000:]
        runs = json.loads((out / "results.json").read_text())["runs"]
        assert [(r["workload"], r["status"]) for r in runs] == [("attached_echo", "completed")], runs
        assert runs[0]["audit"]["lost"] == 0 and runs[0]["audit"]["executed"] == 50, runs[0]["audit"]
    finally:
        workers.stop_all()


def test_a_worker_without_the_module_is_named():
    from shared.bench import fleet

    rows = [
        {"host": "a", "pid": 1, "queues": ["q"], "info": {"workload_modules": ["mine"]}},
        {"host": "b", "pid": 2, "queues": ["q"], "info": {}},
        {"host": "c", "pid": 3, "queues": ["other"], "info": {}},
    ]
    assert fleet.without_module(rows, "q", "mine") == ["b/2"]
    assert fleet.without_module(rows[:1], "q", "mine") == []


def test_a_lost_machine_and_the_relaxed_commit_end_to_end(attached_db, tmp_path):
    """The whole-worker kill (main process and children, as a lost machine): pgqueue's replacement worker
    rescues the dead worker's jobs, Celery `reliable` on RabbitMQ gets its unacknowledged tasks back when the
    connection closes; none is lost. And pgqueue's relaxed variant (synchronous_commit off) drains like the
    other, its durability read-out saying what it gives up."""
    from shared import settings
    from shared.bench.adapters.brokers import check_broker

    cases = [
        {"adapter": "pgqueue", "options": {"commit": "relaxed"}, "jobs": 300, "processes": 2, "slots": 2},
        {
            "adapter": "pgqueue",
            "jobs": 150,
            "workload": "sleep",
            "params": {"ms": 50},
            "scenario": "fault",
            "fault": "kill_whole_worker",
            "processes": 2,
            "slots": 2,
        },
    ]
    rabbit = check_broker("rabbitmq", settings.load()) is None
    if rabbit:
        cases.append(
            {
                **cases[1],
                "adapter": "celery",
                "options": {"broker": "rabbitmq", "config": "reliable"},
                "processes": 1,
                "slots": 4,
            }
        )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"repetitions": 1, "cases": cases}))
    out = tmp_path / "report"
    env = service_env(attached_db, PGQUEUE_RESCUE_AFTER="3", PGQUEUE_RESCUE_INTERVAL="0.5")
    result = bench(
        ["--spec", str(spec_file), "--output", str(out), "--no-calibration", "--stall-seconds", "15"],
        env,
        300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    relaxed = next(r for r in runs if r["scenario"] == "drain")
    assert relaxed["who"] == "pgqueue.relaxed" and relaxed["status"] == "completed", relaxed["error"]
    assert relaxed["audit"]["lost"] == 0 and relaxed["audit"]["executed"] == 300, relaxed["audit"]
    assert relaxed["environment"]["durability"]["synchronous_commit"] == "off", relaxed["environment"][
        "durability"
    ]
    faults = [r for r in runs if r["scenario"] == "fault"]
    assert len(faults) == (2 if rabbit else 1), [r["case_key"] for r in faults]
    for r in faults:
        print(r["case_key"], r["fault"], r["audit"])
        assert r["status"] == "completed" and r["fault"]["kind"] == "kill_whole_worker", (
            r["error"],
            r["fault"],
        )
        assert r["fault"]["victim_held_job"], r["fault"]
        assert r["audit"]["lost"] == 0 and r["audit"]["executed"] == 150, r["audit"]
