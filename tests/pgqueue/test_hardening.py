"""pgqueue under the faults an operator or a buggy job causes (docs/pgqueue.md, "What holds").

Each `test_defectN_...` reproduces one defect found by trying pgqueue from outside (a real worker, a real
PostgreSQL, the fault injected as it happens in operation) and fails on the code before its fix.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import psutil
import pytest

from pgqueue_worker import maintenance
from pgqueue_worker.completer import Completer
from pgqueue_worker.config import Config
from shared import db, pgqueue

from ..support import session_processes, wait_until
from .conftest import (
    FAULTY_TASKS,
    Workers,
    all_finished,
    completed_run_events,
    states,
)
from .faulty_tasks import sitecustomize as faulty  # noqa: F401 - the enqueuing side knows the tasks too

pytestmark = pytest.mark.slow


def job_rows(conn, ids: list[int]) -> dict[int, tuple]:
    return {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT id, state::text, worker_id, attempt FROM queue.pgqueue_jobs WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    }


def leader_locks(conn) -> int:
    return conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()[0]


# --- 1: one bad cron entry ----------------------------------------------------------------------------


def test_defect1_a_cron_entry_that_cannot_fire_is_set_aside_and_maintenance_goes_on(workers, qconn):
    # Entries written before register_cron refused them (or by hand): croniter's syntax check passes
    # 31 February, and the interval overflows a datetime.
    for name, schedule in (("never", "0 0 31 2 *"), ("absurd", "@every 100000000h")):
        qconn.execute(
            "INSERT INTO queue.pgqueue_cron (name, schedule, task) VALUES (%s, %s, 'noop')", (name, schedule)
        )
    pgqueue.register_cron(qconn, "good", "* * * * * *", "noop", {}, queue="cron")
    scheduled = pgqueue.enqueue(qconn, "noop", run_at=dt.timedelta(seconds=1))
    # a job of a process that died long ago: only the leader's rescuer gives it back
    orphan = pgqueue.enqueue(qconn, "noop")
    qconn.execute(
        "UPDATE queue.pgqueue_jobs SET state = 'running', attempt = 1, worker_id = 'gone-0.1', "
        "attempted_at = now() - interval '1 hour' WHERE id = %s",
        (orphan,),
    )
    proc = workers.start(queues="default,cron")
    wait_until(
        lambda: (
            job_rows(qconn, [scheduled, orphan])
            and all(r[0] == "completed" for r in job_rows(qconn, [scheduled, orphan]).values())
        ),
        30,
        message="the scheduler and the rescuer ran despite the bad entries",
    )
    wait_until(
        lambda: (
            qconn.execute("SELECT count(*) FROM queue.pgqueue_jobs WHERE queue = 'cron'").fetchone()[0] >= 2
        ),
        20,
        message="the good entry fires",
    )
    entries = {e["name"]: e for e in pgqueue.cron_entries(qconn)}  # the admin's listing does not raise
    for name in ("never", "absurd"):
        assert entries[name]["failed_at"] is not None and entries[name]["error"], entries[name]
        assert entries[name]["next_tick"] is None
    assert entries["good"]["error"] is None and entries["good"]["next_tick"] is not None
    assert "set aside" in proc.log()
    # registering the entry again (fixed) clears the error, and it fires again
    pgqueue.register_cron(qconn, "never", "* * * * * *", "noop", {}, queue="cron")
    assert {e["name"]: e for e in pgqueue.cron_entries(qconn)}["never"]["error"] is None


def _maintenance(database_url: str, fn) -> maintenance.Maintenance:
    cfg = Config(leader_interval=0.1, rescue_interval=0.1, scheduler_interval=0.1, cron_interval=0.1)
    m = maintenance.Maintenance(cfg, database_url, "test-supervisor")
    m.services[0] = maintenance.Service("broken", fn, 0.1)
    return m


def test_maintenance_goes_on_with_the_other_services_when_one_raises(database_url, qconn):
    calls = []

    def broken(conn, cfg):
        calls.append(1)
        raise RuntimeError("a bug in one service")

    m = _maintenance(database_url, broken)
    scheduled = pgqueue.enqueue(qconn, "noop", run_at=dt.timedelta(seconds=0.3))
    m.start()
    try:
        wait_until(
            lambda: pgqueue.get_job(qconn, scheduled)["state"] == "available" and len(calls) >= 3,
            20,
            message="the scheduler ran and the broken service was tried again",
        )
        assert m.is_alive() and m.is_leader
        assert next(s for s in m.services if s.name == "broken").failures >= 3
    finally:
        m.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_leader_lock_is_released_when_the_maintenance_thread_dies(database_url, qconn):
    def fatal(conn, cfg):
        raise SystemExit("not an Exception: ends the thread")

    before = leader_locks(qconn)
    m = _maintenance(database_url, fatal)
    m.start()
    m.join(20)
    assert not m.is_alive()
    wait_until(lambda: leader_locks(qconn) == before, 10, message="the leader lock is released")
    # another supervisor can lead at once
    other = _maintenance(database_url, lambda conn, cfg: 0)
    other.start()
    try:
        wait_until(lambda: other.is_leader, 10, message="another leader")
    finally:
        other.stop()


# --- 2: an error PostgreSQL cannot store ----------------------------------------------------------------


def test_defect2_an_error_postgresql_cannot_store_does_not_wedge_the_completions(workers, qconn):
    bad = pgqueue.enqueue(qconn, "fault_unstorable_message", max_attempts=1)
    pgqueue.enqueue_many(qconn, [pgqueue.JobSpec("noop") for _ in range(300)])
    workers.start(env=FAULTY_TASKS, threads=4)
    wait_until(lambda: all_finished(qconn, 301), 30, message="every job finished")
    assert states(qconn) == {"completed": 300, "discarded": 1}
    error = pgqueue.get_job(qconn, bad)["errors"][-1]
    assert error["class"] == "RuntimeError"
    assert error["message"] == "a NUL \\0 and half a pair \\udc80 in the message"


def test_completion_batch_with_a_row_postgresql_refuses_commits_the_good_rows(database_url, qconn):
    ids = [pgqueue.enqueue(qconn, "noop") for _ in range(5)]
    qconn.execute(
        "UPDATE queue.pgqueue_jobs SET state = 'running', attempt = 1, worker_id = 'w-0.1', attempted_at = now() "
        "WHERE id = ANY(%s)",
        (ids,),
    )
    completer = Completer(database_url, "w-0.1", flush_interval=0.01, bound=100, retry_base=0.2)
    completer.start()
    try:
        for job_id in ids[:3]:
            completer.complete(job_id, 1)
        # an error record made without error_record's sanitising: jsonb refuses the NUL
        completer.fail(ids[3], 1, {"attempt": 1, "class": "E", "message": "nul\x00here"}, discard=True)
        completer.fail(ids[4], 1, {"attempt": 1, "class": "E", "message": "fine"}, discard=True)
        wait_until(
            lambda: {r[0] for r in job_rows(qconn, ids).values()} == {"completed", "discarded"},
            10,
            message="the batch written row by row",
        )
    finally:
        completer.stop(timeout=5)
    rows = job_rows(qconn, ids)
    assert [rows[i][0] for i in ids] == ["completed"] * 3 + ["discarded"] * 2
    assert pgqueue.get_job(qconn, ids[3])["errors"][-1]["message"] == "nul\\0here"


# --- 3: an exception that cannot be formatted -----------------------------------------------------------


def test_defect3_an_exception_that_cannot_be_formatted_does_not_kill_the_slot(workers, qconn):
    bad = pgqueue.enqueue(qconn, "fault_unprintable", max_attempts=1)
    pgqueue.enqueue_many(qconn, [pgqueue.JobSpec("noop", priority=5) for _ in range(19)])
    workers.start(env=FAULTY_TASKS, threads=1)
    wait_until(lambda: all_finished(qconn, 20), 30, message="every job finished on the one slot")
    assert states(qconn) == {"completed": 19, "discarded": 1}
    error = pgqueue.get_job(qconn, bad)["errors"][-1]
    assert error["class"] == "Unprintable" and "raised RuntimeError" in error["message"]


def test_a_recorded_failure_keeps_the_class_of_an_exception_that_cannot_be_formatted(workers, qconn):
    # A recorded job (meta with a run id): the failure record was formatted with str(exc) inside the
    # except, so the __str__'s RuntimeError replaced the job's exception, in the record and in the job.
    run_id = 1717
    bad = pgqueue.enqueue(qconn, "fault_unprintable", max_attempts=1, meta={"run_id": run_id, "seq": 0})
    workers.start(env=FAULTY_TASKS, threads=1)
    wait_until(lambda: all_finished(qconn, 1), 30, message="the job finished")
    error = pgqueue.get_job(qconn, bad)["errors"][-1]
    assert error["class"] == "Unprintable" and "raised RuntimeError" in error["message"]
    # the supervisor's spool loader brings the record in (every second)
    wait_until(
        lambda: (
            qconn.execute(
                "SELECT count(*) FROM job_events WHERE run_id = %s AND kind = 'fail'", (run_id,)
            ).fetchone()[0]
            == 1
        ),
        30,
        message="the failure is recorded",
    )
    (text,) = qconn.execute(
        "SELECT error FROM job_events WHERE run_id = %s AND kind = 'fail'", (run_id,)
    ).fetchone()
    assert text.startswith("Unprintable: <str() of this Unprintable raised RuntimeError>"), text


# --- 5: prefetched jobs held behind long ones ----------------------------------------------------------


def _long_then_short(qconn, long_s: float = 8.0, short: int = 19) -> list[int]:
    pgqueue.enqueue_many(
        qconn, [pgqueue.JobSpec("sleep", {"ms": long_s * 1000, "honour_deadline": False}) for _ in range(4)]
    )
    return [pgqueue.enqueue(qconn, "noop", priority=5) for _ in range(short)]


def test_defect5_sigterm_hands_back_prefetched_jobs_at_once(workers, qconn):
    # a first batch of short jobs makes the process prefetch, as it does under load
    pgqueue.enqueue_many(qconn, [pgqueue.JobSpec("noop", priority=0) for _ in range(2000)])
    proc = workers.start(threads=4, prefetch=50, batch_size=50, poll_interval=5)
    wait_until(lambda: states(qconn).get("completed", 0) >= 2000, 60, message="warm")
    short = _long_then_short(qconn)
    wait_until(lambda: states(qconn).get("running", 0) >= 4, 10, message="long jobs running")
    proc.signal_group(signal.SIGTERM)
    signalled = time.monotonic()
    wait_until(
        lambda: all(r[0] != "running" for r in job_rows(qconn, short).values()),
        3,
        message="short jobs handed back at SIGTERM, not after the running ones",
    )
    assert time.monotonic() - signalled < 3
    assert all(r[2] == 0 for r in job_rows(qconn, short).values() if r[0] == "available")


def test_defect5_prefetched_jobs_go_to_an_idle_process_not_behind_long_ones(workers, qconn):
    pgqueue.enqueue_many(qconn, [pgqueue.JobSpec("noop", priority=0) for _ in range(2000)])
    workers.start(name="busy", threads=4, prefetch=50, batch_size=50, poll_interval=5)
    wait_until(lambda: states(qconn).get("completed", 0) >= 2000, 60, message="warm")
    short = _long_then_short(qconn)
    wait_until(lambda: states(qconn).get("running", 0) >= 4, 10, message="long jobs running")
    workers.start(name="idle", threads=4)
    started = time.monotonic()
    wait_until(
        lambda: all(r[0] == "completed" for r in job_rows(qconn, short).values()),
        6,
        message="the short jobs ran on the idle process before the long ones ended",
    )
    assert time.monotonic() - started < 6
    assert all(r[2] == 1 for r in job_rows(qconn, short).values())  # handing back cost no attempt


# --- 6: an outage longer than --rescue-after -------------------------------------------------------------


def test_defect6_an_outage_longer_than_rescue_after_runs_no_live_job_twice(
    own_cluster, output_dir, spool_dir
):
    cluster = own_cluster
    url = cluster.url
    total = 16
    with db.connect(url, autocommit=True) as conn:
        pgqueue.enqueue_many(
            conn,
            [
                pgqueue.JobSpec(
                    "sleep", {"ms": 6000, "honour_deadline": False}, meta={"run_id": 16, "seq": i}
                )
                for i in range(total)
            ],
        )
    w = Workers(url, output_dir, spool_dir)
    try:
        w.start(processes=2, threads=8, prefetch=0)

        def running() -> int:
            with db.connect(url, autocommit=True) as conn:
                return states(conn).get("running", 0)

        wait_until(lambda: running() == total, 30, message="every job running")
        cluster.stop()
        down = time.monotonic()
        wait_until(lambda: time.monotonic() - down >= 4, 10)  # twice --rescue-after
        cluster.start()

        def finished() -> bool:
            with db.connect(url, autocommit=True) as conn:
                return all_finished(conn, total)

        wait_until(finished, 60, interval=0.5, message="every job finished after the outage")
    finally:
        w.stop_all()
    events = completed_run_events(url, spool_dir, total, 16)
    starts = {seq: e.get("start", 0) for seq, e in events.items()}
    assert starts == dict.fromkeys(range(total), 1), starts
    with db.connect(url, autocommit=True) as conn:
        rescued = conn.execute(
            'SELECT count(*) FROM queue.pgqueue_jobs WHERE errors @> \'[{"class": "WorkerLost"}]\''
        ).fetchone()[0]
        assert rescued == 0


def test_a_stalled_process_loses_its_jobs_and_its_late_outcome_changes_nothing(workers, qconn):
    ids = [pgqueue.enqueue(qconn, "sleep", {"ms": 1500, "honour_deadline": False}) for _ in range(2)]
    stalled = workers.start(name="stalled", threads=2, prefetch=0)
    wait_until(lambda: states(qconn).get("running", 0) == 2, 20, message="running")
    child = next(p for p in session_processes(stalled.pid) if p.pid != stalled.pid)
    child.suspend()  # the process stops: no heartbeat, no completion (a VM pause, a stuck GC, SIGSTOP)
    try:
        workers.start(name="rescuer", threads=2)
        wait_until(
            lambda: all(r[0] == "completed" and r[2] == 2 for r in job_rows(qconn, ids).values()),
            30,
            message="rescued and run by the other process",
        )
    finally:
        child.resume()
    finished_by = {r[1] for r in job_rows(qconn, ids).values()}
    # the stalled process wakes and sends its (late) outcomes: the ownership check ignores them
    wait_until(lambda: child.status() != psutil.STATUS_STOPPED, 5)
    time_resumed = time.monotonic()
    wait_until(lambda: time.monotonic() - time_resumed >= 2, 5)
    assert {r[1] for r in job_rows(qconn, ids).values()} == finished_by
    assert all(r[0] == "completed" and r[2] == 2 for r in job_rows(qconn, ids).values())


# --- 7: timeouts fire late -------------------------------------------------------------------------------


def test_defect7_a_timeout_fires_on_time_not_a_poll_interval_late(workers, qconn):
    workers.start(threads=2, poll_interval=10)
    job_id = pgqueue.enqueue(
        qconn, "sleep", {"ms": 3000, "honour_deadline": False}, timeout=0.2, max_attempts=1
    )
    wait_until(lambda: pgqueue.get_job(qconn, job_id)["state"] == "discarded", 20, message="timed out")
    error = pgqueue.get_job(qconn, job_id)["errors"][-1]
    assert error["class"] == "JobTimeout"
    late = dt.datetime.fromisoformat(error["failed_at"]) - dt.datetime.fromisoformat(error["attempted_at"])
    assert late.total_seconds() < 0.2 + 0.5, late


# --- the suspected items ----------------------------------------------------------------------------------


def test_pause_and_cancel_reach_jobs_a_worker_prefetched(workers, qconn):
    pgqueue.enqueue_many(qconn, [pgqueue.JobSpec("noop", queue="bulk") for _ in range(2000)])
    workers.start(queues="bulk,other", threads=4, prefetch=50, batch_size=50, poll_interval=5)
    wait_until(lambda: states(qconn).get("completed", 0) >= 2000, 60, message="warm")
    # 4 long jobs hold the slots; 40 short ones wait in the process's buffer
    pgqueue.enqueue_many(
        qconn,
        [pgqueue.JobSpec("sleep", {"ms": 3000, "honour_deadline": False}, queue="bulk") for _ in range(4)],
    )
    short = [pgqueue.enqueue(qconn, "noop", queue="bulk", priority=5) for _ in range(40)]
    wait_until(lambda: states(qconn).get("running", 0) >= 4, 10, message="long jobs running")
    cancelled = short[:10]
    pgqueue.cancel(qconn, cancelled)
    pgqueue.pause_queue(qconn, "bulk")
    paused_at = qconn.execute("SELECT now()").fetchone()[0]
    wait_until(lambda: states(qconn).get("running", 0) == 0, 20, message="the long jobs ended")
    started_after = qconn.execute(
        "SELECT count(*) FROM queue.pgqueue_jobs WHERE id = ANY(%s) AND attempted_at > %s AND state <> 'available'",
        (short, paused_at),
    ).fetchone()[0]
    assert started_after == 0
    assert all(r[0] == "cancelled" for r in job_rows(qconn, cancelled).values())
    assert all(r[0] == "available" and r[2] == 0 for r in job_rows(qconn, short[10:]).values())


def test_a_prefetched_job_of_a_killed_process_runs_even_with_max_attempts_1(workers, qconn):
    # What a SIGKILLed process leaves: jobs it claimed (attempt counted) and may never have started. The
    # second job's attempt before was lost too: a job that kills its worker is still discarded.
    once = pgqueue.enqueue(qconn, "noop", max_attempts=1)
    poison = pgqueue.enqueue(qconn, "noop", max_attempts=1)
    qconn.execute(
        "UPDATE queue.pgqueue_jobs SET state = 'running', attempt = 1, worker_id = 'killed-0.1', "
        "attempted_at = now() - interval '1 hour' WHERE id = ANY(%s)",
        ([once, poison],),
    )
    qconn.execute(
        "UPDATE queue.pgqueue_jobs SET max_attempts = 2, attempt = 2, errors = jsonb_build_array("
        "jsonb_build_object('attempt', 1, 'class', 'WorkerLost')) WHERE id = %s",
        (poison,),
    )
    workers.start()
    wait_until(lambda: all_finished(qconn, 2), 30, message="rescued")
    job = pgqueue.get_job(qconn, once)
    assert (job["state"], job["attempt"]) == ("completed", 2), job
    assert [e["class"] for e in job["errors"]] == ["WorkerLost"]
    assert pgqueue.get_job(qconn, poison)["state"] == "discarded"


def test_children_killed_at_the_end_of_the_shutdown_grace_are_marked_stopped(workers, qconn):
    job_id = pgqueue.enqueue(qconn, "sleep", {"ms": 60_000, "honour_deadline": False})
    proc = workers.start(threads=1, shutdown_timeout=0.5, rescue_after=600)
    wait_until(lambda: pgqueue.get_job(qconn, job_id)["state"] == "running", 20, message="running")
    worker_id = pgqueue.get_job(qconn, job_id)["worker_id"]
    child = next(p for p in session_processes(proc.pid) if p.pid != proc.pid)
    child.suspend()  # a child that does not stop by itself: the supervisor kills it at the end of the grace
    os.kill(proc.pid, signal.SIGTERM)
    proc.popen.wait(60)
    stopped = qconn.execute("SELECT stopped_at FROM queue.workers WHERE id = %s", (worker_id,)).fetchone()[0]
    assert stopped is not None  # so the rescuer need not wait --rescue-after (here 600 s)
