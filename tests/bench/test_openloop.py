"""The open-loop sender (`shared.bench.openloop`): the schedule's split over processes and where a run stops
(unit), and real sender processes sending a run to pgqueue on a real PostgreSQL, or falling behind a
deliberately slow enqueuer (integration)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import psutil
import psycopg
import pytest

from shared.bench import adapters, openloop, scenarios
from shared.bench.spec import Case

# ---- unit: the schedule's split -------------------------------------------------------------------------


def test_one_sender_process_per_250_jobs_a_second_within_the_cap():
    assert openloop.processes_for(200) == 1
    assert openloop.processes_for(250) == 1
    assert openloop.processes_for(300) == 2
    assert openloop.processes_for(1000) == 4
    assert openloop.processes_for(3000) == 12
    assert openloop.processes_for(1e6) == openloop.MAX_PROCESSES
    assert openloop.processes_for(3000, per_process=1000, cap=2) == 2
    with pytest.raises(ValueError):
        openloop.processes_for(0)


@pytest.mark.parametrize(("n", "k"), [(10, 3), (7, 1), (5, 8), (1000, 6)])
def test_the_shares_send_every_arrival_once_each_process_every_kth(n: int, k: int):
    shares = [openloop.share(n, k, i) for i in range(k)]
    assert sorted(seq for s in shares for seq in s) == list(range(n))
    for i, s in enumerate(shares):
        assert all(seq % k == i for seq in s)
    # the processes take turns: arrival j is process j mod k's, so each process's arrivals are k apart
    assert list(openloop.share(10, 3, 1)) == [1, 4, 7]
    with pytest.raises(ValueError):
        openloop.share(n, k, k)


def test_due_times_are_evenly_spaced_whichever_process_sends_them():
    start, rate = 1000.0, 250.0
    dues = [openloop.due_time(start, rate, j) for i in range(3) for j in openloop.share(9, 3, i)]
    assert sorted(dues) == pytest.approx([start + j / rate for j in range(9)])
    assert scenarios.open_loop_schedule(9, rate, start) == pytest.approx(sorted(dues))


@pytest.fixture
def control() -> Iterator[Callable[[int, float | None], openloop.Control]]:
    made: list[openloop.Control] = []

    def make(processes: int, max_lag: float | None) -> openloop.Control:
        made.append(openloop.Control.new(processes, max_lag))
        return made[-1]

    yield make
    for c in made:
        c.remove()


def test_a_sender_that_falls_behind_stops_every_process_after_a_prefix_of_the_schedule(control):
    c = control(2, 1.0)
    # process 0 runs ahead (0, 2, 4 sent on time); process 1 sent 1, then is 1.5 s late with 3
    assert [c.admit(0, d, 0.0) for d in (0.0, 2.0, 4.0)] == [True, True, True]
    assert c.admit(1, 1.0, 0.0)
    assert c.admit(1, 3.0, 1.5)  # late, but due before 4, which was sent: sent, so nothing is skipped
    assert c.behind
    assert not c.admit(1, 5.0, 0.0)
    assert not c.admit(0, 6.0, 0.0)
    # what was sent: 0..4, the schedule's first five
    assert c.stop_due == 4.0


def test_a_late_arrival_after_everything_sent_is_not_sent(control):
    c = control(2, 1.0)
    assert c.admit(0, 0.0, 0.0) and c.admit(1, 1.0, 0.0)
    assert not c.admit(0, 2.0, 2.0)
    assert not c.admit(1, 3.0, 0.0)
    assert c.behind


def test_without_a_lag_bound_late_arrivals_are_sent_and_a_stop_ends_the_run_where_it_is(control):
    c = control(2, None)
    assert c.admit(0, 0.0, 5.0) and c.admit(1, 1.0, 9.0)
    assert not c.behind
    c.stop()
    assert not c.admit(0, 2.0, 0.0)
    fresh = control(1, None)
    fresh.stop()
    assert not fresh.admit(0, 0.0, 0.0)  # stopped before anything was sent: nothing is


# ---- integration: real sender processes ----------------------------------------------------------------


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def test_the_sender_processes_deliver_every_job_once_at_its_due_time(database_url: str, monkeypatch):
    """A steady run on pgqueue from three sender processes (BENCH_SENDER_PROCESSES): every seq is in the
    queue exactly once, with its due time as `scheduled_at`, and none left before it was due."""
    monkeypatch.setenv("BENCH_SENDER_PROCESSES", "3")
    before = _children()
    case = Case(adapter="pgqueue", scenario="steady", rate=300, jobs=600)
    adapter = adapters.get("pgqueue")
    queue = "openloop-test"
    env = {"DATABASE_URL": database_url}
    enq = adapter.enqueuer(case, queue, env)
    try:
        sent = scenarios.enqueue(case, enq, run_id=7, should_stop=lambda: False)
    finally:
        enq.close()
    assert sent.sent == 600 and not sent.fell_behind
    assert sent.sender_processes == 3
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT (meta->>'seq')::int, (meta->>'scheduled_at')::float8, (meta->>'enqueued_at')::float8,"
            " (meta->>'run_id')::int FROM queue.pgqueue_jobs WHERE queue = %s",
            (queue,),
        ).fetchall()
    seqs = sorted(r[0] for r in rows)
    assert seqs == list(range(600)), "every job exactly once"
    assert {r[3] for r in rows} == {7}
    for seq, scheduled, enqueued, _ in rows:
        assert scheduled == pytest.approx(openloop.due_time(sent.started_at, 300, seq), abs=1e-6)
        assert enqueued >= scheduled, f"job {seq} left {scheduled - enqueued:.4f} s before it was due"
    lags = sorted(enqueued - scheduled for _, scheduled, enqueued, _ in rows)
    assert lags[len(lags) // 2] < 0.25, f"median lag {lags[len(lags) // 2]:.3f} s"
    assert sent.seconds == pytest.approx(600 / 300, rel=0.5)
    kept = set(openloop.idle_pids())
    assert len(kept) == 3 and _children() - before == kept, "the run's processes wait for the next run"
    openloop.shutdown()
    assert _children() <= before, "every sender process ended"


class SlowEnqueuer(adapters.Enqueuer):
    """Takes `seconds` per job and sends nothing: a queue that accepts 1/seconds jobs a second."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def send_one(self, run_id: int, seq: int, scheduled_at: float | None = None) -> None:
        time.sleep(self.seconds)

    def send_many(self, run_id: int, seqs: Sequence[int]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None


@dataclass(frozen=True)
class SlowOpener:
    seconds: float

    def __call__(self) -> scenarios.EnqueuerSender:
        return scenarios.EnqueuerSender(SlowEnqueuer(self.seconds), run_id=1)


def test_a_deliberately_slow_enqueuer_makes_the_sender_fall_behind_and_stop():
    """Two processes of 20 ms per job send at most 100 jobs/s: at 200/s each falls a second behind within
    about 2 s, the run stops, and what was sent is the schedule's first jobs."""
    before = _children()
    r = openloop.run(SlowOpener(0.02), 2000, 200.0, processes=2, max_lag=1.0)
    assert r.fell_behind
    assert 0 < r.sent < 2000
    assert [a.seq for a in r.arrivals] == list(range(r.sent))
    assert r.max_lag_s > 1.0
    assert r.seconds < 8, "it stopped soon after it fell behind"
    openloop.shutdown()
    assert _children() <= before


def test_without_a_lag_bound_the_slow_sender_sends_everything_late_and_the_next_run_reuses_its_processes():
    r = openloop.run(SlowOpener(0.02), 60, 200.0, processes=2)
    assert not r.fell_behind and r.sent == 60
    assert r.max_lag_s > 0.05
    assert [a.seq for a in r.arrivals] == list(range(60))
    first = set(openloop.idle_pids())
    again = openloop.run(SlowOpener(0.0), 10, 100.0, processes=2)
    assert again.sent == 10 and set(openloop.idle_pids()) == first
    openloop.shutdown()
    assert not openloop.idle_pids()


def test_a_stop_request_ends_the_run_early_and_stops_every_process():
    before = _children()
    openloop.run(SlowOpener(0.0), 2, 100.0, processes=2)  # started and warm: the next run starts at once
    t0 = time.monotonic()
    r = openloop.run(
        SlowOpener(0.0), 10_000, 100.0, processes=2, should_stop=lambda: time.monotonic() - t0 > 3
    )
    assert 0 < r.sent < 10_000
    assert [a.seq for a in r.arrivals] == list(range(r.sent))
    openloop.shutdown()
    assert _children() <= before


@dataclass(frozen=True)
class BrokenOpener:
    def __call__(self) -> scenarios.EnqueuerSender:
        raise adapters.AdapterUnavailable("the broker does not answer")


def test_a_sender_that_cannot_open_raises_its_error_and_leaves_no_process():
    before = _children()
    with pytest.raises(adapters.AdapterUnavailable, match="does not answer"):
        openloop.run(BrokenOpener(), 100, 1000.0, processes=2)
    assert not openloop.idle_pids(), "a failed run's processes are not kept"
    assert _children() <= before
