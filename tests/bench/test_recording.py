"""Acceptance: the recording pair for every adapter, through the one benchmark program, against real workers
and the real PostgreSQL (Celery on the SQL broker, and on Redis when it answers).

Each adapter tells the end of a run without the records (its own tables, or for Celery its workers' own
count): a recording-off drain must end when every job completed, with the right count, and leave no record
in the spool files or in `job_events`; its recording twin records every job once; the report gives the
pair one line of its own.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from shared.bench.records import read_spool

from ..conftest import create_database, drop_database, require_service
from ..support import service_env
from .test_cli import bench, recount

JOBS = 300
VARIANTS = [
    ("pgqueue", None),
    ("procrastinate", None),
    ("pgqueuer", None),
    ("celery", "postgres"),
    ("celery", "redis"),
]


@pytest.fixture
def bench_db(pg_server, template_db):
    name = f"bench_r_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    yield url
    drop_database(pg_server, name)


@pytest.mark.parametrize(("adapter", "broker"), VARIANTS, ids=[f"{a}-{b}" if b else a for a, b in VARIANTS])
def test_a_recording_off_drain_ends_with_every_job_counted_and_no_record(adapter, broker, bench_db, tmp_path):
    if broker == "redis":
        require_service("Redis", ("127.0.0.1", 6379))
    out = tmp_path / "report"
    # fmt: off
    args = [
        "--adapters", adapter, "--parts", "overhead", "--overhead-jobs", str(JOBS),
        "--repetitions", "1", "--no-calibration", "--stall-seconds", "15", "--output", str(out),
    ]
    # fmt: on
    if broker:
        args += ["--brokers", broker]
    result = bench(args, service_env(bench_db))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    on = [r for r in runs if r["recording"]]
    off = [r for r in runs if not r["recording"]]
    keys = [r["case_key"] for r in runs]
    assert len(on) == len(off) == 1 and {r["adapter"] for r in runs} == {adapter}, keys
    if broker:
        assert {r["broker"] for r in runs} == {broker}
    for r in on + off:
        assert r["status"] == "completed", (r["case_key"], r["error"])
        assert r["job_count"] == JOBS
        # the harness saw the end, neither early nor by a stall: every job, counted once
        assert r["wait"]["stalled"] is False and r["wait"]["observed_done_at"], r["wait"]
        assert r["wait"]["done_when_waiting_ended"] == JOBS, r["wait"]
        assert r["figures"]["wall_seconds"] and r["figures"]["wall_seconds"] > 0
    off_id, on_id = off[0]["run_id"], on[0]["run_id"]
    # recording off: nothing in the spool files, nothing loaded
    assert read_spool(out / "spool", off_id) == []
    with psycopg.connect(bench_db) as conn:
        loaded = conn.execute("SELECT count(*) FROM job_events WHERE run_id = %s", (off_id,)).fetchone()[0]
    assert loaded == 0
    assert off[0]["audit"] is None
    # recording on: every job recorded once, in the spool and in the database
    assert len({e.seq for e in read_spool(out / "spool", on_id) if e.kind == "finish"}) == JOBS
    counted = recount(bench_db, on_id, JOBS)
    assert (counted["completed"], counted["lost"], counted["finished_twice"]) == (JOBS, 0, 0), counted
    # the report's recording overhead: one line for this variant's pair
    [overhead] = data["recording_overhead"]
    assert overhead["case_key"] == on[0]["case_key"] and overhead["pairs"] == 1
