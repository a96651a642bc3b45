"""Unit: the correctness audit on synthetic records, including lost and duplicate jobs."""

from __future__ import annotations

from shared.bench.audit import audit
from shared.bench.records import Record


def run(seq: int, t: float, worker: str = "w1", attempt: int = 1, end: str | None = "finish") -> list[Record]:
    evs = [Record(seq, "start", t, attempt, worker)]
    if end:
        evs.append(Record(seq, end, t + 0.01, attempt, worker))
    return evs


def test_a_clean_run_has_nothing_lost_or_duplicated():
    events = [e for s in range(10) for e in run(s, float(s))]
    a = audit(range(10), events)
    assert (a.enqueued, a.executed, a.completed, a.lost, a.duplicates) == (10, 10, 10, 0, 0)
    assert a.ok


def test_lost_jobs_are_those_without_a_finish():
    events = [e for s in range(8) for e in run(s, float(s))]
    events += run(8, 8.0, end=None)  # started, its process died, never redelivered
    a = audit(range(10), events)  # 9 never even started
    assert a.lost == 2 and a.lost_seqs == [8, 9]
    assert a.executed == 9 and a.completed == 8
    assert not a.ok


def test_a_second_execution_after_a_finish_is_a_duplicate():
    events = [e for s in range(5) for e in run(s, float(s))]
    events += run(3, 10.0, worker="w2")  # ran again after it had finished: nothing caused it
    events += run(3, 11.0, worker="w3")  # and a third time
    a = audit(range(5), events)
    assert a.duplicates == 2 and a.duplicate_jobs == 1 and a.duplicate_seqs == [3]
    assert a.lost == 0 and a.completed == 5
    assert not a.ok


def test_a_retry_after_a_recorded_failure_is_not_a_duplicate():
    events = run(0, 0.0, end="fail") + run(0, 1.0, attempt=2)
    a = audit([0], events)
    assert a.duplicates == 0 and a.retried == 1 and a.failed_attempts == 1 and a.completed == 1
    assert a.ok


def test_a_redelivery_after_a_crash_is_not_a_duplicate():
    events = run(0, 0.0, worker="killed", end=None) + run(0, 20.0, worker="w2", attempt=2)
    a = audit([0], events)
    assert a.duplicates == 0 and a.redelivered == 1 and a.lost == 0
    assert a.ok


def test_two_finishes_of_overlapping_executions_count_as_a_duplicate():
    # Two workers ran the same job at the same time (e.g. a visibility timeout expired).
    events = [
        Record(0, "start", 0.0, 1, "w1"),
        Record(0, "start", 0.1, 1, "w2"),
        Record(0, "finish", 0.2, 1, "w1"),
        Record(0, "finish", 0.3, 1, "w2"),
    ]
    assert audit([0], events).duplicates == 1


def test_records_of_jobs_never_enqueued_are_unexpected():
    a = audit([0], run(0, 0.0) + run(99, 1.0))
    assert a.unexpected == 1 and not a.ok
