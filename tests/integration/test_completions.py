"""A worker's own completion count (`shared.completions`): each process counts in a file of its own, and the
worker's main process writes the sum to `queue.worker_completions`, which the harness reads for a queue."""

from __future__ import annotations

import threading

from shared import completions, db
from shared.bench import adapters


def written(url: str, worker_id: str) -> int | None:
    with db.connect(url) as conn:
        row = conn.execute(
            "SELECT completed FROM queue.worker_completions WHERE worker_id = %s", (worker_id,)
        ).fetchone()
    return None if row is None else row[0]


def test_the_sum_of_every_process_count_is_written_and_outlives_a_dead_process(database_url, spool_dir):
    first = completions.Counter(completions.path_for("w1", 101))
    second = completions.Counter(completions.path_for("w1", 102))
    other = completions.Counter(completions.path_for("w2", 103))  # another worker's: not summed
    for counter, n in ((first, 3), (second, 4), (other, 50)):
        for _ in range(n):
            counter.add()
    flusher = completions.Flusher("w1", "celery", ["q1"], database_url)
    assert flusher.flush() and written(database_url, "w1") == 7
    del first  # its process is gone: the count stays in its file
    second.add()
    flusher._scanned_at = float("-inf")  # look for files now, not at the next rescan
    assert flusher.flush() and written(database_url, "w1") == 8
    # a process that got a dead one's PID goes on from its count
    assert completions.Counter(completions.path_for("w1", 101)).count == 3
    # what the harness reads for the queue
    with db.connect(database_url) as conn:
        assert adapters.get("celery").completed(conn, "q1") == 8
        assert adapters.get("celery").completed(conn, "q2") == 0
    flusher.stop()
    assert written(database_url, "w1") == 8
    assert sorted(p.name for p in spool_dir.glob("*.count")) == ["w2-103.count"]


def test_jobs_completed_in_many_threads_are_each_counted(database_url, spool_dir):
    counter = completions.Counter(completions.path_for("w3", 7))
    flusher = completions.Flusher("w3", "celery", ["q3"], database_url)

    def work() -> None:
        for _ in range(2000):
            counter.add()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flusher.stop()
    assert written(database_url, "w3") == 16_000
