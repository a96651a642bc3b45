"""The worker runtime with real processes: run, order, retries, timeouts, unknown tasks, shutdown."""

from __future__ import annotations

import datetime as dt
import signal
import time

from shared import pgqueue

from ..support import VENV_BIN, service_env, wait_until
from .conftest import all_finished, events_by_seq, states


def test_committed_job_runs_and_unique_key_frees_after_it_ends(workers, qconn, database_url):
    with qconn.transaction():
        first = pgqueue.enqueue(qconn, "noop", unique_key="only-one", meta={"run_id": 1, "seq": 1})
    assert pgqueue.enqueue(qconn, "noop", unique_key="only-one") is None
    workers.start()
    wait_until(lambda: states(qconn).get("completed") == 1, 30, message="job completed")
    second = pgqueue.enqueue(qconn, "noop", unique_key="only-one")
    assert second is not None and second != first
    wait_until(lambda: states(qconn).get("completed") == 2, 30, message="second job completed")
    job = pgqueue.get_job(qconn, first)
    assert job["attempt"] == 1 and job["finished_at"] is not None and job["worker_id"].startswith("pgqueue-")
    wait_until(
        lambda: events_by_seq(qconn, 1).get(1) == {"start": 1, "finish": 1}, 20, message="spool loaded"
    )


def test_priority_order_and_run_at_are_honoured(workers, qconn):
    run_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    delayed = pgqueue.enqueue(qconn, "noop", run_at=run_at, meta={"run_id": 2, "seq": 100})
    jobs = [
        pgqueue.JobSpec("noop", priority=p, meta={"run_id": 2, "seq": i})
        for i, p in enumerate([9, 5, 0, 7, 0, 3, 9, 1])
    ]
    pgqueue.enqueue_many(qconn, jobs)
    workers.start(threads=1)
    wait_until(lambda: all_finished(qconn, 9), 30, message="all done")
    # execution order from the workers' own start records (attempted_at is one value per claim)
    wait_until(lambda: len(events_by_seq(qconn, 2)) == 9, 20, message="records loaded")
    order = [
        seq
        for (seq,) in qconn.execute(
            "SELECT seq FROM job_events WHERE run_id = 2 AND kind = 'start' AND seq < 100 ORDER BY ts_us"
        ).fetchall()
    ]
    priorities = [jobs[s].priority for s in order]
    assert priorities == sorted(priorities), order
    started = qconn.execute(
        "SELECT attempted_at FROM queue.pgqueue_jobs WHERE id = %s", (delayed,)
    ).fetchone()[0]
    assert started >= run_at


def test_failing_job_retries_with_growing_delays_then_is_discarded(workers, qconn):
    flaky = pgqueue.enqueue(qconn, "fail_then_succeed", {"fail_attempts": 1})
    doomed = pgqueue.enqueue(qconn, "always_fail", {"message": "boom"}, max_attempts=4)
    workers.start(threads=2)
    wait_until(lambda: all_finished(qconn, 2), 60, message="both finished")
    ok = pgqueue.get_job(qconn, flaky)
    assert ok["state"] == "completed" and ok["attempt"] == 2 and len(ok["errors"]) == 1
    job = pgqueue.get_job(qconn, doomed)
    assert job["state"] == "discarded" and job["attempt"] == 4
    errors = job["errors"]
    assert [e["attempt"] for e in errors] == [1, 2, 3, 4]
    assert all(e["class"] == "RuntimeError" and e["message"] == "boom" for e in errors)
    assert all("Traceback" in e["traceback"] and "always_fail" in e["traceback"] for e in errors)
    assert errors[-1]["retry_at"] is None
    parse = dt.datetime.fromisoformat
    planned = [parse(e["retry_at"]) - parse(e["failed_at"]) for e in errors[:-1]]
    assert planned[0] < planned[1] < planned[2], planned
    for before, after in zip(errors, errors[1:], strict=False):
        # the next attempt did not start before its retry time
        assert parse(after["attempted_at"]) >= parse(before["retry_at"])


def test_timeout_fails_the_attempt_and_the_late_completion_changes_nothing(workers, qconn):
    job_id = pgqueue.enqueue(
        qconn,
        "sleep",
        {"ms": 1500, "honour_deadline": False},
        timeout=0.3,
        max_attempts=2,
        meta={"run_id": 4, "seq": 1},
    )
    proc = workers.start(threads=3)  # two stuck threads leave one free slot: the process stays
    wait_until(lambda: all_finished(qconn, 1), 30, message="job finished")
    job = pgqueue.get_job(qconn, job_id)
    assert job["state"] == "discarded", job
    assert [e["class"] for e in job["errors"]] == ["JobTimeout", "JobTimeout"]
    # both threads finish their sleep later; their completions must not resurrect the job
    wait_until(
        lambda: proc.log().count("finished after its timeout") == 2, 20, message="late completions sent"
    )
    time.sleep(0.3)  # one completion flush interval (20 ms) and then some
    assert pgqueue.get_job(qconn, job_id)["state"] == "discarded"


def test_process_whose_slots_are_all_stuck_is_replaced(workers, qconn):
    stuck = pgqueue.enqueue(
        qconn, "sleep", {"ms": 60000, "honour_deadline": False}, timeout=0.3, max_attempts=1
    )
    proc = workers.start(threads=1)
    wait_until(lambda: "every slot stuck; replacing it" in proc.log(), 30, message="stuck process replaced")
    assert pgqueue.get_job(qconn, stuck)["state"] == "discarded"
    after = pgqueue.enqueue(qconn, "noop")
    wait_until(lambda: pgqueue.get_job(qconn, after)["state"] == "completed", 30, message="replacement works")


def test_job_whose_task_no_longer_exists_is_discarded_and_the_worker_goes_on(workers, qconn):
    qconn.execute("INSERT INTO queue.pgqueue_jobs (task, params) VALUES ('retired_task', '{}')")
    workers.start()
    wait_until(lambda: states(qconn).get("discarded") == 1, 30, message="discarded")
    (job,) = pgqueue.list_jobs(qconn, state="discarded")
    detail = pgqueue.get_job(qconn, job["id"])
    assert detail["attempt"] == 1 and "unknown task 'retired_task'" in detail["errors"][0]["message"]
    after = pgqueue.enqueue(qconn, "noop")
    wait_until(lambda: pgqueue.get_job(qconn, after)["state"] == "completed", 30, message="worker still runs")


def test_paused_queue_is_not_claimed_until_resumed(workers, qconn):
    pgqueue.pause_queue(qconn, "default")
    job = pgqueue.enqueue(qconn, "noop")
    workers.start(poll_interval=0.2)
    time.sleep(1.0)  # a few polls: nothing may be claimed from a paused queue
    assert pgqueue.get_job(qconn, job)["state"] == "available"
    pgqueue.resume_queue(qconn, "default")
    wait_until(lambda: pgqueue.get_job(qconn, job)["state"] == "completed", 30, message="runs after resume")


def test_sigterm_lets_running_jobs_finish_and_hands_back_the_rest(workers, qconn):
    pgqueue.enqueue_many(
        qconn, [pgqueue.JobSpec("sleep", {"ms": 1500}, meta={"run_id": 7, "seq": i}) for i in range(10)]
    )
    proc = workers.start(threads=4, prefetch=4)
    wait_until(lambda: states(qconn).get("running", 0) >= 4, 30, message="jobs running")
    running = {
        r[0] for r in qconn.execute("SELECT id FROM queue.pgqueue_jobs WHERE state = 'running'").fetchall()
    }
    started = {
        r[0]
        for r in qconn.execute(
            "SELECT id FROM queue.pgqueue_jobs WHERE state = 'running' AND attempted_at < now() - interval '0.1 s'"
        ).fetchall()
    }
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(40) == 0, proc.log()
    s = states(qconn)
    assert "running" not in s, s
    done = {
        r[0] for r in qconn.execute("SELECT id FROM queue.pgqueue_jobs WHERE state = 'completed'").fetchall()
    }
    assert started <= done and len(done) >= 4, (running, done)
    # handed back without penalty: the attempt counted at claim was given back
    assert (
        qconn.execute(
            "SELECT count(*) FROM queue.pgqueue_jobs WHERE state = 'available' AND attempt <> 0"
        ).fetchone()[0]
        == 0
    )
    assert qconn.execute(
        "SELECT bool_and(stopped_at IS NOT NULL) FROM queue.workers WHERE adapter = 'pgqueue'"
    ).fetchone()[0]


def test_bad_command_line_is_one_clear_line(database_url):
    import subprocess

    for args, fragment in (
        (["--threads", "0"], "--threads must be between 1 and 256"),
        (["--queues", "Bad Name"], "invalid queue name 'Bad Name'"),
        (["--poll-interval", "soon"], "--poll-interval must be a number"),
    ):
        proc = subprocess.run(
            [str(VENV_BIN / "bench-pgqueue-worker"), *args],
            env=service_env(database_url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], proc.stderr
