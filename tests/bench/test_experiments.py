"""Integration: one experiment at a time, dead executors reaped, progress, report from stored rows, the
checkpoint before large runs."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid

import pytest
from psycopg.types.json import Jsonb

from shared import db, settings
from shared.bench import experiments, report

from ..support import wait_until

SPEC = {"cases": [{"adapter": "pgqueue", "jobs": 10}, {"adapter": "celery", "jobs": 10}], "repetitions": 2}


def test_one_experiment_at_a_time_and_a_dead_executor_is_reaped(database_url):
    spec = experiments.validate_spec(SPEC)
    eid = experiments.start_experiment(spec)
    p = experiments.progress(eid)
    assert p["status"] == "pending" and p["runs_total"] == 4 and p["runs_done"] == 0
    with pytest.raises(experiments.ExperimentBusy, match=f"experiment {eid} is pending"):
        experiments.start_experiment(spec)
    # An executor that died: its experiment is marked failed, which frees the slot.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with db.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE experiments SET executor_pid = %s, executor_host = %s WHERE id = %s",
            (dead.pid, settings.host_name(), eid),
        )
        assert experiments.reap_dead_executors(conn) == 1
        assert experiments.reap_dead_executors(conn) == 0
    p = experiments.progress(eid)
    assert p["status"] == "failed" and "died" in p["error"]
    assert p["runs_by_status"] == {"cancelled": 4}
    assert experiments.start_experiment(spec) > eid


def test_attached_mode_refuses_faults(database_url):
    spec = experiments.validate_spec({"cases": [{"adapter": "pgqueue", "jobs": 5, "scenario": "fault"}]})
    with pytest.raises(experiments.SpecError):
        experiments.start_experiment(spec, mode="attached")


def test_report_functions_read_stored_runs(database_url, tmp_path):
    eid = experiments.start_experiment(experiments.validate_spec(SPEC))
    with db.connect(database_url, autocommit=True) as conn:
        runs = conn.execute(
            "SELECT id, adapter FROM benchmark_runs WHERE experiment_id = %s ORDER BY id", (eid,)
        ).fetchall()
        for i, (run_id, adapter) in enumerate(runs):
            tp = (1000.0 if adapter == "pgqueue" else 100.0) + i
            m = {
                "throughput": tp,
                "latency_ms": {"end_to_end": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "p99.9": 4.0}},
                "latency_cdf": {"end_to_end": [[1.0, 0.5], [3.0, 1.0]]},
                "throughput_series": {"bin_seconds": 1.0, "t": [0.0, 1.0], "jobs_per_second": [tp, tp]},
                "resources": {f"{adapter}-worker": {"cpu_s": 1.0, "mem_mb_peak": 50.0, "mem_mb_mean": 40.0}},
                "resource_samples": [{"t": 0.0, f"{adapter}-worker": {"cpu_s": 0.5, "mem_mb": 45.0}}],
                "audit": {"enqueued": 10, "lost": 0, "duplicates": 0},
            }
            conn.execute(
                "UPDATE benchmark_runs SET status = 'completed', metrics = %s WHERE id = %s",
                (Jsonb(m), run_id),
            )
        conn.execute("UPDATE experiments SET status = 'completed' WHERE id = %s", (eid,))
        files = report.write(conn, eid, tmp_path)
    assert {p.name for p in files} >= {
        "results.json",
        "results.csv",
        "summary.md",
        "throughput.png",
        "latency_cdf.png",
        "resources.png",
    }
    series = report.run_series(runs[0][0])
    assert series["throughput"]["jobs_per_second"] and series["latency_cdf"]["end_to_end"]["ms"] == [1.0, 3.0]
    assert "pgqueue-worker" in series["resources"]
    case_key = report.run_summary(runs[0][0])["case_key"]
    cs = report.case_summary(eid, case_key)
    assert cs["estimates"]["throughput"]["n"] == 2 and len(cs["repetitions"]) == 2
    comp = report.compare([runs[0][0], runs[1][0]])
    row = next(r for r in comp["rows"] if r["figure"] == "throughput")
    assert row["winner"] == "pgqueue" and row["ratio"] > 5
    assert "pgqueue" in (tmp_path / "summary.md").read_text()


def _checkpoints_requested(conn) -> int:
    # PostgreSQL 17 moved the counter from pg_stat_bgwriter to pg_stat_checkpointer
    if conn.execute("SELECT to_regclass('pg_catalog.pg_stat_checkpointer')").fetchone()[0]:
        return conn.execute("SELECT num_requested FROM pg_stat_checkpointer").fetchone()[0]
    return conn.execute("SELECT checkpoints_req FROM pg_stat_bgwriter").fetchone()[0]


def test_the_checkpoint_before_a_large_run_and_a_role_that_may_not_checkpoint_told_once(
    database_url, pg_server, caplog
):
    from psycopg import sql
    from sqlalchemy.engine import make_url

    from shared.bench.executor import Executor

    with db.connect(pg_server, autocommit=True) as conn:
        before = _checkpoints_requested(conn)
        executor = Executor(1, database_url=database_url)
        executor.checkpoint()
        executor.db.close()
        # the checkpointer reports its counters just after it wakes the requester: wait for them
        wait_until(lambda: _checkpoints_requested(conn) > before, 30, message="a requested checkpoint")

        role = f"bench_nocheckpoint_{uuid.uuid4().hex[:8]}"
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            url = make_url(database_url).set(username=role).render_as_string(hide_password=False)
            executor = Executor(1, database_url=url)
            with caplog.at_level(logging.WARNING, logger="shared.bench.executor"):
                executor.checkpoint()
                executor.checkpoint()
            executor.db.close()
            warned = [r.getMessage() for r in caplog.records if "no checkpoint" in r.getMessage()]
            assert len(warned) == 1 and "pg_checkpoint" in warned[0]
        finally:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
