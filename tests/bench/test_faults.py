"""The fault's victim: one rule for every adapter, a process that holds a running job of the run."""

from __future__ import annotations

import time

from shared.bench import faults
from shared.job import Ctx
from shared.spool import SpoolRecorder


def _meta(run_id: int, seq: int) -> dict:
    return {"run_id": run_id, "seq": seq, "enqueued_at": time.time()}


def test_the_victim_is_the_first_process_that_holds_a_running_job(tmp_path):
    # Three job-running processes as the adapter lists them: 101 finished its job, 102 is idle, 103 runs one.
    recorders = {pid: SpoolRecorder(tmp_path / f"w1-{pid}.spool", "w1", "any") for pid in (101, 102, 103)}
    ctx = Ctx(adapter="any", worker_id="w1")
    done = recorders[101].start(_meta(7, 0), ctx)
    recorders[101].finish(done)
    running = recorders[103].start(_meta(7, 1), ctx)
    # A job of another run that 102 still holds does not make it this run's victim.
    recorders[102].start(_meta(6, 0), ctx)
    try:
        assert faults.running_jobs(tmp_path / "w1-101.spool", 7) == 0
        assert faults.running_jobs(tmp_path / "w1-103.spool", 7) == 1
        assert faults.choose_victim([101, 102, 103], tmp_path, 7) == 103
        # Once its job finishes, no process holds one: the rule says so rather than pick an idle one.
        recorders[103].finish(running)
        assert faults.choose_victim([101, 102, 103], tmp_path, 7) is None
        # A failed attempt releases the job as a finish does; a retry's new attempt holds it again.
        failed = recorders[102].start(_meta(7, 2), ctx)
        assert faults.choose_victim([101, 102, 103], tmp_path, 7) == 102
        recorders[102].record("fail", _meta(7, 2), ctx, time.time(), "boom")
        assert faults.choose_victim([101, 102, 103], tmp_path, 7) is None
        recorders[101].start(_meta(7, 2), Ctx(adapter="any", worker_id="w1", attempt=2))
        assert faults.choose_victim([101, 102, 103], tmp_path, 7) == 101
        assert failed
    finally:
        for r in recorders.values():
            r.close()


def test_no_spool_directory_or_file_means_no_victim(tmp_path):
    assert faults.choose_victim([1, 2], None, 1) is None
    assert faults.choose_victim([1, 2], tmp_path, 1) is None
