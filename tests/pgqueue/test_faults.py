"""Faults with real processes: SIGKILLed workers and supervisors, a PostgreSQL restart, concurrency, cron."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from shared import db, pgqueue

from ..support import plan_nodes, session_processes, wait_until
from .conftest import FAST, Workers, all_finished, completed_run_events, events_by_seq, load_spools, states

pytestmark = pytest.mark.slow


def dead_workers_running(conn, prefix: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM queue.pgqueue_jobs WHERE state = 'running' AND worker_id LIKE %s",
        (prefix + "%",),
    ).fetchone()[0]


def supervisor_id(conn, pid: int) -> str:
    return conn.execute(
        "SELECT id FROM queue.workers WHERE pid = %s AND info->>'role' = 'supervisor'", (pid,)
    ).fetchone()[0]


def test_sigkilled_worker_loses_no_job_and_duplicates_are_bounded(workers, qconn, spool_dir):
    P, N, bound = 2, 4, 50
    B = 2 * bound  # the completion buffer's bound plus one flush in progress
    total = 1000
    pgqueue.enqueue_many(
        qconn, [pgqueue.JobSpec("sleep", {"ms": 20}, meta={"run_id": 11, "seq": i}) for i in range(total)]
    )
    victim = workers.start(
        name="victim", processes=P, threads=N, completion_bound=bound, prefetch=20, batch_size=20
    )
    wait_until(lambda: states(qconn).get("completed", 0) >= 150, 60, message="some jobs done")
    victim_id = supervisor_id(qconn, victim.pid)
    victim.signal_group(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.popen.wait(10)
    held = dead_workers_running(qconn, victim_id)
    rescuer = workers.start(name="rescuer", processes=P, threads=N, completion_bound=bound, wait=False)
    # the clock of the rescue starts when a rescuer can run: start-up time is not rescue time
    wait_until(
        lambda: qconn.execute("SELECT count(*) FROM queue.workers WHERE pid = %s", (rescuer.pid,)).fetchone()[
            0
        ],
        60,
    )
    ready_at = time.monotonic()
    wait_until(lambda: dead_workers_running(qconn, victim_id) == 0, 60, message="rescued")
    since_kill = time.monotonic() - killed_at
    rescue_seconds = time.monotonic() - max(killed_at, ready_at)
    wait_until(lambda: all_finished(qconn, total), 120, message="every job finished")
    assert states(qconn) == {"completed": total}
    wait_until(lambda: load_spools(qconn, spool_dir) == 0 and len(events_by_seq(qconn, 11)) == total, 30)
    events = events_by_seq(qconn, 11)
    lost = [seq for seq in range(total) if events.get(seq, {}).get("finish", 0) == 0]
    twice = sum(1 for e in events.values() if e.get("start", 0) > 1)
    limit = (
        float(FAST["--rescue-after"])
        + float(FAST["--rescue-interval"])
        + float(FAST["--leader-interval"])
        + 10
    )
    print(
        f"\nP={P} N={N} B={B} held_by_killed_worker={held} ran_twice={twice} bound={P * (N + B)} "
        f"rescue_after={FAST['--rescue-after']}s rescue_interval={FAST['--rescue-interval']}s "
        f"leader_interval={FAST['--leader-interval']}s rescued_in={rescue_seconds:.1f}s after the new worker "
        f"registered ({since_kill:.1f}s after the kill) limit={limit:.1f}s"
    )
    assert lost == []
    assert twice <= P * (N + B)
    assert rescue_seconds <= limit


def test_sigkilled_supervisor_leaves_no_child_and_its_jobs_are_rescued(workers, qconn):
    pgqueue.enqueue_many(qconn, [pgqueue.JobSpec("sleep", {"ms": 3000}) for _ in range(4)])
    victim = workers.start(name="victim", processes=2, threads=2, prefetch=0)
    wait_until(lambda: states(qconn).get("running", 0) == 4, 30, message="jobs running")
    victim_id = supervisor_id(qconn, victim.pid)
    children = [p for p in session_processes(victim.pid) if p.pid != victim.pid]
    assert len(children) == 2, children
    os.kill(victim.pid, signal.SIGKILL)  # the supervisor alone: the kernel must take its children
    victim.popen.wait(10)

    def gone(p: psutil.Process) -> bool:
        try:
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(lambda: all(gone(p) for p in children), 10, message="children died with their supervisor")
    assert session_processes(victim.pid) == []
    workers.start(name="rescuer")
    wait_until(lambda: all_finished(qconn, 4), 60, message="rescued and run")
    rows = qconn.execute("SELECT attempt, errors->0->>'class' FROM queue.pgqueue_jobs").fetchall()
    assert rows == [(2, "WorkerLost")] * 4
    assert dead_workers_running(qconn, victim_id) == 0


def test_two_worker_processes_never_run_the_same_job(workers, qconn, spool_dir):
    total = 20_000
    pgqueue.enqueue_many(
        qconn, [pgqueue.JobSpec("noop", meta={"run_id": 12, "seq": i}) for i in range(total)]
    )
    workers.start(processes=2, threads=4)
    wait_until(lambda: all_finished(qconn, total), 120, message="drained")
    wait_until(lambda: sum(len(e) for e in [events_by_seq(qconn, 12)]) == total, 30, message="records loaded")
    starts = dict(
        qconn.execute(
            "SELECT seq, count(*) FROM job_events WHERE run_id = 12 AND kind = 'start' GROUP BY 1"
        ).fetchall()
    )
    assert len(starts) == total and set(starts.values()) == {1}
    per_worker = qconn.execute(
        "SELECT count(DISTINCT worker_id) FROM job_events WHERE run_id = 12 AND kind = 'start'"
    ).fetchone()[0]
    assert per_worker == 2  # both processes took part
    assert qconn.execute("SELECT max(attempt) FROM queue.pgqueue_jobs").fetchone()[0] == 1


def test_cron_fires_each_tick_once_with_two_workers(workers, qconn):
    pgqueue.register_cron(qconn, "every-second", "* * * * * *", "noop", {}, queue="cron")
    first = workers.start(name="a", queues="cron")
    workers.start(name="b", queues="cron")
    started = time.monotonic()
    wait_until(lambda: time.monotonic() - started >= 7, 10)
    first.stop()  # the leader may change: ticks must neither repeat nor stop
    wait_until(lambda: time.monotonic() - started >= 15, 20)
    rows = qconn.execute(
        "SELECT unique_key, meta->>'tick' FROM queue.pgqueue_jobs WHERE queue = 'cron' ORDER BY id"
    ).fetchall()
    keys = [r[0] for r in rows]
    ticks = [r[1] for r in rows]
    print(f"\ncron fired {len(rows)} ticks in 15 s")
    assert all(k == f"cron:every-second:{t}" for k, t in zip(keys, ticks, strict=True))
    assert len(set(ticks)) == len(ticks)
    assert len(rows) >= 10


def test_postgresql_restart_mid_run_loses_nothing(own_cluster, output_dir, spool_dir):
    cluster = own_cluster
    url = cluster.url
    total = 3000
    with db.connect(url, autocommit=True) as conn:
        pgqueue.enqueue_many(
            conn,
            [pgqueue.JobSpec("sleep", {"ms": 5}, meta={"run_id": 13, "seq": i}) for i in range(total)],
        )
    w = Workers(url, output_dir, spool_dir)
    try:
        proc = w.start(processes=2, threads=4)

        def completed() -> int:
            with db.connect(url, autocommit=True) as conn:
                return states(conn).get("completed", 0)

        wait_until(lambda: completed() >= 300, 60, message="some done")
        cluster.restart()
        wait_until(lambda: completed() == total, 120, interval=0.5, message="all done after restart")
        assert proc.alive()
        assert "reconnecting" in proc.log() or "will retry" in proc.log()
    finally:
        w.stop_all()
    events = completed_run_events(url, spool_dir, total, 13)
    assert [s for s in range(total) if not events.get(s, {}).get("finish")] == []


def test_claim_query_uses_its_partial_index_on_a_million_rows(qconn):
    # Building the secondary indexes once after the load is many times faster than maintaining them row
    # by row; the plan is then taken on exactly the migrated schema.
    indexes = qconn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'queue' AND tablename = 'pgqueue_jobs' "
        "AND indexname <> 'pgqueue_jobs_pkey'"
    ).fetchall()
    for name, _ in indexes:
        qconn.execute(f'DROP INDEX queue."{name}"')
    qconn.execute(
        """
        INSERT INTO queue.pgqueue_jobs (state, queue, task, priority, attempt, finished_at, run_at)
        SELECT CASE WHEN g % 10 < 6 THEN 'completed' ELSE 'available' END::queue.pgqueue_job_state,
               (ARRAY['default', 'mail', 'reports'])[1 + g % 3], 'noop', g % 10,
               CASE WHEN g % 10 < 6 THEN 1 ELSE 0 END,
               CASE WHEN g % 10 < 6 THEN now() END,
               now() - make_interval(secs => g % 1000)
          FROM generate_series(1, 1000000) AS g
        """
    )
    for _, definition in indexes:
        qconn.execute(definition)
    qconn.execute("ANALYZE queue.pgqueue_jobs")
    assert qconn.execute("SELECT count(*) FROM queue.pgqueue_jobs").fetchone()[0] == 1_000_000
    from shared.pgqueue import queries

    with qconn.transaction():
        plan = qconn.execute(
            "EXPLAIN (FORMAT JSON) " + queries.get("claim"), {"queue": "mail", "limit": 100, "worker_id": "w"}
        ).fetchone()[0]

    found = plan_nodes(plan[0]["Plan"])
    kinds = {(n["Node Type"], n.get("Index Name")) for n in found}
    assert ("Index Scan", "ix_pgqueue_jobs_claim") in kinds or (
        "Index Only Scan",
        "ix_pgqueue_jobs_claim",
    ) in kinds, kinds
    assert not any(
        n["Node Type"] in ("Seq Scan", "Sort") and n.get("Relation Name") != "pgqueue_queues" for n in found
    ), kinds
