"""Acceptance: `python -m shared.bench` against real worker processes, and bad input.

One small matrix runs once for the module (start-up is most of its cost): it must write every output
file, and its fault runs must report what really happened, recounted here with our own SQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import psycopg
import pytest

from shared import embedded

from ..conftest import create_database, drop_database
from ..support import ROOT, service_env

OUTPUTS = ("results.json", "results.csv", "summary.md", "throughput.png", "latency_cdf.png", "resources.png")


def bench(
    args: list[str], env: dict[str, str], timeout: float = 240, cwd: os.PathLike | str = ROOT
) -> subprocess.CompletedProcess:
    """Run the CLI (from `cwd`); past `timeout`, SIGTERM it (it stops its workers and keeps what it measured)."""
    quiet = [] if args[:1] in (["web"], ["report"], ["execute"]) else ["--no-progress"]
    argv = [sys.executable, "-m", "shared.bench", *args, *quiet]
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        err += f"\n(timed out after {timeout} s and was stopped)"
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@pytest.fixture(scope="module")
def small_matrix(pg_server, template_db, tmp_path_factory):
    name = f"bench_b_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    out = tmp_path_factory.mktemp("bench-report")
    # fmt: off
    args = [
        "--adapters", "pgqueue,celery", "--brokers", "postgres", "--parts", "noop-bulk,steady,fault",
        "--jobs", "60", "--min-seconds", "0.3", "--rate", "50", "--duration", "1",
        "--fault-jobs", "100", "--fault-ms", "50",
        "--repetitions", "2", "--stall-seconds", "8", "--output", str(out),
    ]
    # fmt: on
    # pgqueue rescues a dead worker's jobs after 15 s by default; the test does not wait that long.
    result = bench(
        args, service_env(url, PGQUEUE_RESCUE_AFTER="3", PGQUEUE_RESCUE_INTERVAL="0.5"), timeout=420
    )
    yield url, out, result
    drop_database(pg_server, name)


def test_a_small_matrix_writes_every_output_file(small_matrix):
    url, out, result = small_matrix
    assert result.returncode == 0, result.stderr[-3000:]
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    assert runs and all(r["status"] == "completed" for r in runs), [
        (r["case_key"], r["status"], r["error"]) for r in runs
    ]
    drains = [r for r in runs if r["scenario"] == "drain"]
    for r in drains:
        assert r["audit"]["lost"] == 0 and r["audit"]["duplicates"] == 0
        assert r["figures"]["throughput"] > 0 and r["latency_ms"]["end_to_end"]["n"] == r["job_count"]
        # sized from a probe of the 60 jobs asked for, never below it; a probe that drained in under 0.25 s
        # (pgqueue takes 60 jobs in a claim or two) is followed by a second one, whose rates count
        first = r["sizing"].get("first_probe", {"jobs": r["sizing"]["probe_jobs"]})
        assert first["jobs"] == 60 and r["job_count"] >= 60, r["sizing"]
        if "first_probe" in r["sizing"]:
            assert r["sizing"]["probe_jobs"] > 60, r["sizing"]
        # the batch's table was analyzed between the enqueue and the release (pgqueue's; Celery's SQL
        # broker keeps its messages in a database of its own)
        assert (r["gate"].get("analyzed_s") is not None) == (r["adapter"] == "pgqueue"), r["gate"]
        assert r["environment"]["postgres"]["fsync"] and r["environment"]["packages"]["celery"]
        assert "prefork" in r["slot_mapping"] or "--threads" in r["slot_mapping"]
    celery = [r for r in runs if r["adapter"] == "celery"]
    assert celery[0]["environment"]["configuration"]["task_default_queue"]
    assert data["calibration"]["median_jobs_per_second"] > 0
    assert "## Fault runs" in (out / "summary.md").read_text()
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == len(runs) + 1
    # Between runs the harness deleted each pgqueue run's finished jobs from its queue (docs/benchmark.md).
    with psycopg.connect(url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM queue.pgqueue_jobs WHERE queue IN "
            "(SELECT metrics->>'queue' FROM benchmark_runs WHERE adapter = 'pgqueue' AND id = ANY(%s))",
            ([r["run_id"] for r in runs],),
        ).fetchone()[0]
    assert left == 0


def assert_no_job_started_before_the_enqueue_ended(url: str, runs: list[dict]) -> None:
    """The drain gate, recounted with our own SQL: every drain's first start is after its enqueue's end."""
    drains = [r for r in runs if r["scenario"] == "drain" and r["status"] == "completed"]
    assert drains
    with psycopg.connect(url) as conn:
        for r in drains:
            gate = r["gate"]
            assert gate["workers_start"] == "held" and gate["held"] is True, gate
            assert gate["enqueue_finished_at"] <= gate["released_at"], gate
            first = conn.execute(
                "SELECT min(ts_us) / 1e6::float8 FROM job_events WHERE run_id = %s AND kind = 'start'",
                (r["run_id"],),
            ).fetchone()[0]
            assert first >= gate["enqueue_finished_at"], (r["case_key"], first, gate)
            assert gate["jobs_started_before_enqueue_end"] == 0, gate


def test_no_drain_job_starts_before_its_enqueue_ended(small_matrix):
    url, out, result = small_matrix
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_job_started_before_the_enqueue_ended(
        url, json.loads((out / "results.json").read_text())["runs"]
    )


def test_the_drain_gate_holds_on_redis_and_rabbitmq(
    pg_server, template_db, tmp_path, redis_available, rabbitmq_available
):
    name = f"bench_g_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    try:
        # fmt: off
        args = [
            "--adapters", "celery", "--brokers", "redis,rabbitmq", "--parts", "noop-bulk,noop-one",
            "--jobs", "50", "--min-seconds", "0.2", "--repetitions", "1", "--no-calibration",
            "--output", str(tmp_path),
        ]
        # fmt: on
        result = bench(args, service_env(url))
        assert result.returncode == 0, result.stderr[-3000:]
        runs = json.loads((tmp_path / "results.json").read_text())["runs"]
        assert {r["broker"] for r in runs} == {"redis", "rabbitmq"}
        assert all(r["audit"]["lost"] == 0 for r in runs)
        assert_no_job_started_before_the_enqueue_ended(url, runs)
    finally:
        drop_database(pg_server, name)


def test_the_sweep_finds_where_a_deliberately_slow_queue_saturates(pg_server, template_db, tmp_path):
    """pgqueue with one slot and jobs of 20 ms finishes at most 50 jobs/s: 10/s is sustained, 200/s
    saturates (the jobs finish at the queue's pace), and 400/s is then not run."""
    name = f"bench_s_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    slow = {"adapter": "pgqueue", "processes": 1, "slots": 1, "workload": "sleep", "params": {"ms": 20}}
    cases = [{**slow, "scenario": "sweep", "rate": rate, "jobs": 30} for rate in (10, 200, 400)]
    spec_file = tmp_path / "sweep.json"
    spec_file.write_text(json.dumps({"cases": cases, "repetitions": 1}))
    try:
        result = bench(["--spec", str(spec_file), "--output", str(tmp_path / "out")], service_env(url))
        assert result.returncode == 0, result.stderr[-3000:]
        data = json.loads((tmp_path / "out" / "results.json").read_text())
        (line,) = data["sweep"]
        status = {p["rate"]: p["status"] for p in line["points"]}
        assert status == {10: "sustained", 200: "queue", 400: "cancelled"}, line["points"]
        # 30 samples are too few for any percentile: none counts as under the bound
        assert line["highest_rate_under_bound"] is None
        summary = (tmp_path / "out" / "summary.md").read_text()
        assert "## Load sweep" in summary and "n too small" in summary
        assert (tmp_path / "out" / "sweep.png").stat().st_size > 0
    finally:
        drop_database(pg_server, name)


def recount(url: str, run_id: int, n: int) -> dict[str, int]:
    """Starts and finishes per (run_id, seq), counted with our own SQL."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """
            WITH per_seq AS (
              SELECT s.seq,
                     count(e.*) FILTER (WHERE e.kind = 'start') AS starts,
                     count(e.*) FILTER (WHERE e.kind = 'finish') AS finishes
                FROM generate_series(0, %(n)s - 1) AS s(seq)
                LEFT JOIN job_events e ON e.run_id = %(run)s AND e.seq = s.seq
               GROUP BY s.seq)
            SELECT count(*) FILTER (WHERE starts > 0),
                   count(*) FILTER (WHERE finishes > 0),
                   count(*) FILTER (WHERE finishes = 0),
                   count(*) FILTER (WHERE finishes > 1)
              FROM per_seq
            """,
            {"n": n, "run": run_id},
        ).fetchone()
    return {"executed": row[0], "completed": row[1], "lost": row[2], "finished_twice": row[3]}


def _fault(out, who: str) -> dict:
    data = json.loads((out / "results.json").read_text())
    faults = [f for f in data["faults"] if f["who"] == who]
    assert len(faults) == 1, data["faults"]
    return faults[0]


def test_a_celery_fault_run_reports_what_really_happened(small_matrix):
    url, out, result = small_matrix
    assert result.returncode == 0, result.stderr[-3000:]
    f = _fault(out, "celery.postgres.defaults")
    assert f["fault"]["kind"] == "kill_worker" and f["fault"]["pid"]
    # the victim rule: a process that held a running job of the run when it was killed
    assert f["fault"]["victim_held_job"] is True, f["fault"]
    # mid-run: the worker was seen running jobs before it was struck, and the report says when
    assert f["fault"]["jobs_started_before"] >= 1, f["fault"]
    assert f"struck after {f['fault']['jobs_started_before']} started" in (out / "summary.md").read_text()
    a = f["audit"]
    mine = recount(url, f["run_id"], a["enqueued"])
    assert a["enqueued"] == 100
    assert (a["executed"], a["completed"], a["lost"]) == (mine["executed"], mine["completed"], mine["lost"])
    assert a["duplicate_jobs"] >= mine["finished_twice"]


def test_a_pgqueue_fault_run_loses_no_job(small_matrix):
    url, out, result = small_matrix
    assert result.returncode == 0, result.stderr[-3000:]
    f = _fault(out, "pgqueue")
    assert f["fault"]["victim_held_job"] is True, f["fault"]
    a = f["audit"]
    assert f["fault"]["pid"] and f["fault"]["jobs_started_before"] >= 1, f["fault"]
    assert a["lost"] == 0, a
    # pgqueue is at least once: a job the killed process finished but whose completion was still in its buffer is
    # rescued and runs again. The bound is the killed process's slots plus its completion buffer (tests/pgqueue
    # checks it tightly); here the run is small, so at most every job it held.
    from pgqueue_worker.config import Config

    assert a["duplicates"] <= min(a["enqueued"], Config().completion_buffer), a
    assert recount(url, f["run_id"], a["enqueued"])["lost"] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--jobs", "0"], "--jobs must be a positive number"),
        (["--adapters", "sidekiq"], "unknown adapter 'sidekiq'"),
        (["--parts", "everything"], "unknown part 'everything'"),
        (["--repetitions", "0"], "--repetitions must be a positive number"),
        (["--attached", "--parts", "noop-bulk,fault"], "--attached cannot run the parts fault"),
    ],
)
def test_bad_input_gets_one_clear_line_before_anything_starts(args, needle, tmp_path):
    env = service_env("postgresql://postgres@127.0.0.1:1/none")  # nothing may be contacted
    result = bench(args, env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_attached_without_live_workers_is_one_clear_line(database_url):
    result = bench(["--attached", "--parts", "noop-bulk"], service_env(database_url), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "no live worker heartbeats" in result.stderr and "Traceback" not in result.stderr


def test_a_broker_that_does_not_answer_is_refused_before_anything_starts():
    closed = embedded.free_port()
    env = service_env("postgresql://postgres@127.0.0.1:1/none", REDIS_URL=f"redis://127.0.0.1:{closed}/0")
    result = bench(["--adapters", "celery", "--brokers", "postgres,redis"], env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "redis broker does not answer" in result.stderr and str(closed) in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(ROOT / ".data" / "bench-pg" / "unused")


def test_a_database_migrated_by_another_version_is_one_clear_line(pg_server, template_db):
    name = f"bench_m_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE alembic_version SET version_num = 'a9999'")  # a revision this checkout lacks
        result = bench(["--adapters", "pgqueue", "--parts", "noop-bulk"], service_env(url), timeout=120)
        assert result.returncode == 2, result.stderr
        assert "cannot migrate the database" in result.stderr and "a9999" in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    finally:
        drop_database(pg_server, name)


def test_the_queue_command_gives_pgqueue_figures_beside_the_raw_ceiling(pg_server, template_db, tmp_path):
    name = f"bench_q_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    try:
        args = ["queue", "--adapter", "pgqueue", "--repeat", "1", "--jobs", "300", "--one-by-one-jobs", "20"]
        args += [
            "--rate",
            "250",
            "--latency-seconds",
            "1",
            "--skip-large",
            "--json",
            str(tmp_path / "q.json"),
        ]
        result = bench(args, service_env(url), timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "| drain of 300 noop jobs, jobs/s |" in result.stdout, result.stdout
        figures = json.loads((tmp_path / "q.json").read_text())
        assert figures["raw"]["drain"] > 0 and figures["raw"]["copy"] > 0, figures
        # the floor of a queue's wait: a committed INSERT and its NOTIFY, claimed by a listener
        assert 0 < figures["raw"]["pickup_p50_ms"] <= figures["raw"]["pickup_p99_ms"], figures["raw"]
        assert "(INSERT+NOTIFY to claim)" in result.stdout
        assert list(figures["variants"]) == ["pgqueue"], figures["variants"]
        variant = figures["variants"]["pgqueue"]
        assert variant["drain"]["jobs"] == 300 and variant["drain"]["jobs_per_s"] > 0, variant
        wait = variant["latency"]
        # 250 samples: enough for the p50 (100 beyond it), not for the p99 ("n too small")
        assert wait["p50"] is not None and wait["p99"] is None, wait
        assert "n too small" in result.stdout
    finally:
        drop_database(pg_server, name)


def test_the_queue_command_with_the_recorder_off_times_the_drain_by_the_queue(
    pg_server, template_db, tmp_path
):
    name = f"bench_q_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    try:
        args = ["queue", "--adapter", "pgqueue", "--repeat", "1", "--jobs", "300", "--one-by-one-jobs", "0"]
        args += ["--no-record", "--skip-large", "--no-progress", "--json", str(tmp_path / "q.json")]
        result = bench(args, service_env(url), timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "recorder: OFF" in result.stdout and "--no-record" in result.stdout, result.stdout
        figures = json.loads((tmp_path / "q.json").read_text())
        assert figures["recording"] is False, figures
        variant = figures["variants"]["pgqueue"]
        # timed from the queue's own table: first claim to last completion
        assert variant["drain"]["jobs"] == 300 and variant["drain"]["jobs_per_s"] > 0, variant
        assert variant["drain"]["seconds"] > 0 and "latency" not in variant, variant
        with psycopg.connect(url, autocommit=True) as conn:
            (recorded,) = conn.execute("SELECT count(*) FROM job_events").fetchone()
        assert recorded == 0
    finally:
        drop_database(pg_server, name)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["queue"], "--adapter"),
        (["queue", "--adapter", "celery", "--no-record"], "recorder off"),
        (["queue", "--adapter", "sidekiq"], "sidekiq"),
        (["queue", "--adapter", "pgqueue", "--jobs", "0"], "--jobs"),
        (["web", "--rate", "-1"], "--rate"),
        (["web", "--sender-processes", "0"], "--sender-processes"),
        (["--sender-processes", "999"], "--sender-processes"),
        (["report"], "experiment"),
        (["nonsense"], "nonsense"),
    ],
)
def test_each_command_refuses_bad_input_in_one_line(args, needle):
    env = service_env("postgresql://postgres@127.0.0.1:1/none")  # nothing may be contacted
    result = bench(args, env, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in result.stderr and "Traceback" not in result.stderr, result.stderr
