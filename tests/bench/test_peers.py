"""Acceptance: the peer queues (procrastinate, pgqueuer) through the one benchmark program, against the real
libraries and the real PostgreSQL; the user's own workload module under every adapter.

Each peer enqueues, drains and audits a small run (bulk and one by one), survives a killed worker process
with no job lost (each through its own crash recovery), and gives its figures beside the raw ceiling in
the `queue` command.
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest

from ..conftest import create_database, drop_database
from ..support import ROOT, service_env
from .test_cli import bench, recount

PEERS = ("procrastinate", "pgqueuer")


@pytest.fixture
def bench_db(pg_server, template_db):
    name = f"bench_p_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    yield url
    drop_database(pg_server, name)


def runs_of(out) -> list[dict]:
    data = json.loads((out / "results.json").read_text())
    return data["runs"]


@pytest.mark.parametrize("peer", PEERS)
def test_a_peer_enqueues_drains_and_audits_a_small_run(peer, bench_db, tmp_path):
    out = tmp_path / "report"
    # fmt: off
    args = [
        "--adapters", peer, "--parts", "noop-bulk,noop-one,sleep", "--jobs", "50", "--sleep-jobs", "30",
        "--repetitions", "1", "--no-calibration", "--stall-seconds", "15", "--output", str(out),
    ]
    # fmt: on
    result = bench(args, service_env(bench_db))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(out)
    assert len(runs) == 3 and {r["adapter"] for r in runs} == {peer}, [r["case_key"] for r in runs]
    for r in runs:
        assert r["status"] == "completed", (r["case_key"], r["error"])
        a = r["audit"]
        assert (a["lost"], a["duplicates"]) == (0, 0), a
        assert recount(bench_db, r["run_id"], a["enqueued"])["completed"] == a["enqueued"]
        assert r["figures"]["throughput"] > 0
        assert r["environment"]["packages"][peer], r["environment"]["packages"]
        assert peer in r["slot_mapping"]


def max_overlap(url: str, run_id: int) -> int:
    """The most jobs of a run whose bodies ran at the same time, by their start and finish records."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """
            WITH spans AS (
              SELECT s.seq, s.ts_us AS t0, f.ts_us AS t1
                FROM job_events s
                JOIN job_events f ON f.run_id = s.run_id AND f.seq = s.seq AND f.attempt = s.attempt
                                 AND f.kind = 'finish'
               WHERE s.run_id = %(run)s AND s.kind = 'start')
            SELECT max(n) FROM (
              SELECT count(*) AS n FROM spans a JOIN spans b ON b.t0 <= a.t0 AND a.t0 < b.t1 GROUP BY a.seq
            ) per_start
            """,
            {"run": run_id},
        ).fetchone()
    return int(row[0] or 0)


@pytest.mark.parametrize("peer", PEERS)
def test_a_peers_inline_variant_enqueues_drains_and_audits_a_small_run(peer, bench_db, tmp_path):
    # The job body called on the event loop, no thread hand-off (docs/benchmarks.md, "The peers' settings"):
    # what --full adds beside the threads. A spec names the variant, so only it runs here.
    base = {"adapter": peer, "options": {"execution": "inline"}, "processes": 2, "slots": 5}
    cases = [
        {**base, "jobs": 40, "scheduling": "bulk"},
        {**base, "jobs": 40, "scheduling": "one_by_one"},
        {**base, "jobs": 30, "workload": "sleep", "params": {"ms": 20}},
    ]
    (tmp_path / "spec.json").write_text(json.dumps({"cases": cases, "repetitions": 1}))
    out = tmp_path / "report"
    args = ["--spec", str(tmp_path / "spec.json"), "--no-calibration", "--stall-seconds", "15"]
    result = bench([*args, "--output", str(out)], service_env(bench_db))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(out)
    assert len(runs) == 3 and {r["who"] for r in runs} == {f"{peer}.inline"}, [r["case_key"] for r in runs]
    for r in runs:
        assert r["status"] == "completed", (r["case_key"], r["error"])
        a = r["audit"]
        assert (a["enqueued"], a["lost"], a["duplicates"]) == (r["job_count"], 0, 0), a
        assert recount(bench_db, r["run_id"], a["enqueued"])["completed"] == a["enqueued"]
        assert r["figures"]["throughput"] > 0
        assert "one at a time per process" in r["environment"]["configuration"]["execution"]
    # a blocking body holds its process's loop: at most one sleep job per process at a time
    sleep = next(r for r in runs if r["workload"] == "sleep")
    assert 1 <= max_overlap(bench_db, sleep["run_id"]) <= 2


@pytest.mark.parametrize("peer", PEERS)
def test_a_peer_takes_part_in_the_open_loop_scenarios(peer, bench_db, tmp_path):
    """Steady arrivals, bursts and a sweep of two rates: every job runs once, and each gets its figures."""
    base = {"adapter": peer, "processes": 1, "slots": 4}
    cases = [
        {**base, "scenario": "steady", "rate": 40, "jobs": 40},
        {**base, "scenario": "burst", "bursts": 2, "jobs": 40},
        *({**base, "scenario": "sweep", "rate": rate, "jobs": 40} for rate in (20, 40)),
    ]
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"cases": cases, "repetitions": 1}))
    out = tmp_path / "report"
    args = ["--spec", str(spec), "--no-calibration", "--stall-seconds", "20", "--output", str(out)]
    result = bench(args, service_env(bench_db))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(out)
    assert sorted(r["scenario"] for r in runs) == ["burst", "steady", "sweep", "sweep"], runs
    for r in runs:
        assert r["status"] == "completed", (r["case_key"], r["error"])
        a = r["audit"]
        assert (a["enqueued"], a["lost"], a["duplicates"]) == (40, 0, 0), (r["case_key"], a)
        assert recount(bench_db, r["run_id"], 40)["completed"] == 40
    (line,) = json.loads((out / "results.json").read_text())["sweep"]
    assert [p["rate"] for p in line["points"]] == [20, 40] and line["who"] == peer, line


@pytest.mark.parametrize("peer", PEERS)
def test_a_peer_loses_no_job_when_a_worker_process_is_killed(peer, bench_db, tmp_path):
    out = tmp_path / "report"
    # fmt: off
    args = [
        "--adapters", peer, "--parts", "fault", "--fault-jobs", "80", "--fault-ms", "50",
        "--repetitions", "1", "--no-calibration", "--stall-seconds", "25", "--output", str(out),
    ]
    # fmt: on
    result = bench(args, service_env(bench_db))
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    faults = [f for f in data["faults"] if f["adapter"] == peer]
    assert len(faults) == 1, data["faults"]
    f = faults[0]
    assert f["fault"]["pid"] and f["fault"]["jobs_started_before"] >= 1, f["fault"]
    # the killed process's jobs come back through the peer's own recovery (stalled-job retry, heartbeat)
    assert f["audit"]["lost"] == 0, f["audit"]
    assert recount(bench_db, f["run_id"], f["audit"]["enqueued"])["lost"] == 0


@pytest.mark.parametrize("peer", PEERS)
def test_the_queue_command_gives_a_peers_figures_beside_the_raw_ceiling(peer, bench_db, tmp_path):
    args = ["queue", "--adapter", peer, "--repeat", "1", "--jobs", "300", "--one-by-one-jobs", "20"]
    args += ["--rate", "50", "--latency-seconds", "1", "--skip-large", "--json", str(tmp_path / "q.json")]
    if peer == "pgqueuer":
        args += ["--pgqueuer-batches", "500"]
    result = bench(args, service_env(bench_db), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads((tmp_path / "q.json").read_text())
    assert figures["raw"]["drain"] > 0, figures
    assert list(figures["variants"]) == [peer], figures["variants"]
    variant = figures["variants"][peer]
    assert variant["drain"]["jobs"] == 300 and variant["drain"]["jobs_per_s"] > 0, variant
    assert 0 < variant["ratios"]["drain_vs_raw_drain"], variant["ratios"]
    assert variant["one_by_one_enqueue"] > 0, variant


def docs_example() -> str:
    """The workload module docs/benchmark.md shows ("Your own workload")."""
    text = (ROOT / "docs" / "benchmark.md").read_text()
    section = text[text.index("## Your own workload") :]
    return section[section.index("```python\n") + len("```python\n") :].split("```", 1)[0]


def test_the_docs_workload_module_runs_from_another_folder_under_every_adapter(bench_db, tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "jobs.py").write_text(docs_example())
    out = tmp_path / "report"
    # fmt: off
    args = [
        "--workloads", "mypkg.jobs", "--adapters", "pgqueue,procrastinate,pgqueuer,celery",
        "--brokers", "postgres", "--parts", "workloads", "--workload-jobs", "20", "--repetitions", "1",
        "--min-seconds", "0.2", "--no-calibration", "--stall-seconds", "15", "--output", str(out),
    ]
    # fmt: on
    result = bench(args, service_env(bench_db), timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = runs_of(out)
    assert {r["adapter"] for r in runs} == {"pgqueue", "procrastinate", "pgqueuer", "celery"}, runs
    for r in runs:
        assert r["status"] == "completed" and r["workload"] == "place_order", (r["case_key"], r["error"])
        assert r["audit"]["lost"] == 0, r["audit"]
    with psycopg.connect(bench_db) as conn:
        rows = conn.execute("SELECT adapter, count(DISTINCT seq) FROM my_orders GROUP BY adapter").fetchall()
    # the user's code ran in every adapter's workers, once per job at least (a drain is sized from a probe of
    # --workload-jobs jobs, so a run has at least that many; the probe's jobs wrote rows too)
    enqueued = {r["adapter"]: r["audit"]["enqueued"] for r in runs}
    assert all(n >= 20 for n in enqueued.values()), enqueued
    assert {a: n >= enqueued[a] for a, n in rows} == dict.fromkeys(enqueued, True), (rows, enqueued)


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        (None, "'nosuch_jobs_module' does not import: ModuleNotFoundError"),
        ("raise RuntimeError('boom at import')", "does not import: RuntimeError: boom at import"),
        ("X = 1", "registers no workload"),
    ],
)
def test_a_broken_workload_module_gets_one_clear_line_before_anything_starts(source, needle, tmp_path):
    module = "nosuch_jobs_module"
    if source is not None:
        module = f"broken_{uuid.uuid4().hex[:6]}"
        (tmp_path / f"{module}.py").write_text(source + "\n")
    env = service_env("postgresql://postgres@127.0.0.1:1/none")  # nothing may be contacted
    for args in (["--workloads", module], ["queue", "--adapter", "pgqueue", f"--workloads={module}"]):
        result = bench(args, env, timeout=60, cwd=tmp_path)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # the same through the environment variable the web passes
    result = bench([], {**env, "BENCH_WORKLOADS": module}, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and needle in result.stderr, result.stderr
