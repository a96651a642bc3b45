from __future__ import annotations

import time

import pytest

from shared import contract, spool, workloads
from shared.contract import Ctx, Meta


@pytest.fixture
def recorder(tmp_path):
    rec = spool.SpoolRecorder(tmp_path / "w-1.spool", "w", "pgqueue")
    spool.install(rec)
    yield rec
    spool.install(None)
    rec.close()


def written(rec):
    """What the (open) recorder wrote: its file's complete lines."""
    return spool.complete_lines(rec.path.read_bytes()).decode()


def lines(rec):
    return [line.split("\t") for line in written(rec).splitlines()]


def test_every_workload_is_registered():
    assert {"noop", "sleep", "cpu", "db_write", "mixed", "fail_then_succeed"} <= set(workloads.REGISTRY)


def test_execute_records_start_and_finish_with_wall_clock(recorder):
    before = time.time()
    contract.execute(
        "sleep", {"ms": 5}, {"run_id": 7, "seq": 3, "enqueued_at": before}, Ctx("pgqueue", worker_id="w")
    )
    rows = lines(recorder)
    assert [r[0] for r in rows] == ["start", "finish"]
    assert rows[0][1:3] == ["7", "3"]
    start, finish = int(rows[0][6]) / 1e6, int(rows[1][6]) / 1e6
    assert before <= start < finish and finish - start >= 0.005


def test_execute_without_run_id_records_nothing(recorder):
    contract.execute("noop", {}, {}, Ctx("celery"))
    assert written(recorder) == ""


def test_failure_is_recorded_and_reraised(recorder):
    with pytest.raises(workloads.FirstAttemptFailure):
        contract.execute("fail_then_succeed", {}, Meta(run_id=1, seq=1), Ctx("celery", attempt=1))
    contract.execute("fail_then_succeed", {}, Meta(run_id=1, seq=1), Ctx("celery", attempt=2))
    kinds = [(r[0], r[3]) for r in lines(recorder)]
    assert kinds == [("start", "1"), ("fail", "1"), ("start", "2"), ("finish", "2")]
    assert "FirstAttemptFailure" in lines(recorder)[1][9]


def test_error_text_is_escaped_for_copy(recorder):
    with pytest.raises(RuntimeError):
        contract.execute(
            "always_fail", {"message": "tab\there\nnewline\\slash"}, Meta(run_id=1, seq=1), Ctx("celery")
        )
    raw = written(recorder).splitlines()
    assert len(raw) == 2 and "tab\\there\\nnewline\\\\slash" in raw[1]


def test_unknown_task_is_a_clear_error_before_recording(recorder):
    with pytest.raises(workloads.UnknownTask, match="unknown task 'nope'"):
        contract.execute("nope", {}, Meta(run_id=1, seq=1), Ctx("celery"))
    assert written(recorder) == ""


def test_sleep_honours_the_deadline():
    ctx = Ctx("pgqueue", deadline=time.time() + 0.05)
    started = time.monotonic()
    with pytest.raises(contract.JobTimeout):
        workloads.sleep(ctx, ms=5000)
    assert time.monotonic() - started < 1.0


def test_cpu_burns_thread_time():
    started = time.thread_time()
    workloads.cpu(Ctx("pgqueue"), ms=20)
    assert time.thread_time() - started >= 0.02


def test_bad_params_are_rejected():
    with pytest.raises(workloads.InvalidParams):
        workloads.sleep(Ctx("pgqueue"), ms="soon")


def test_retry_delay_grows():
    delays = [contract.retry_delay(a, base=1, jitter=0) for a in (1, 2, 3, 4)]
    assert delays == [1, 2, 4, 8]
    assert all(0.9 <= contract.retry_delay(1, base=1) <= 1.1 for _ in range(50))
