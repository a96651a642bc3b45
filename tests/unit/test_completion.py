"""Unit: how often the end of a run counts its finish records (`completion.wait_for_end`), on a virtual clock.

Each count reads every finish record of the run, so counting every 0.1 s through a long drain took CPU from
the workers of the queues that keep no count of their own (docs/benchmarks.md, "Why the peers' sized
drains are slower than their probes"); the end must still be seen at once.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shared.bench import completion


class Clock:
    """`time` for the module under test: sleeping moves the clock, nothing waits."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Records:
    """A run's finish records as the harness's store counts them: `rate` jobs a second from `start`."""

    def __init__(self, clock: Clock, n: int, rate: float) -> None:
        self.clock, self.n, self.rate, self.start = clock, n, rate, clock.now
        self.counts = 0

    def end(self) -> float:
        return self.start + self.n / self.rate

    def one(self, name: str, params: dict) -> int:
        assert name == "events_finished"
        self.counts += 1
        return min(self.n, int((self.clock.now - self.start) * self.rate))


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(completion, "time", c)
    return c


def wait(records: Records, n: int) -> dict:
    # A queue that keeps no count of its own (no baseline): its records are the only signal.
    case = SimpleNamespace(adapter="procrastinate", recording=True)
    return completion.wait_for_end(records, 1, case, n, "q", None, 30.0, lambda: False)  # type: ignore[arg-type]


def test_a_long_drain_is_counted_a_few_times_and_its_end_seen_at_once(clock):
    records = Records(clock, n=20_000, rate=1_000.0)  # a 20 s drain
    waited = wait(records, 20_000)
    assert not waited["stalled"]
    assert waited["done_when_waiting_ended"] == 20_000
    # every 0.1 s would be 200 counts; at most once a second, then closer as the end nears
    assert records.counts <= 40, records.counts
    assert waited["observed_done_at"] - records.end() <= completion.RECORDS_POLL_SECONDS + 1e-6


def test_a_short_drain_is_still_counted_every_tenth_of_a_second(clock):
    records = Records(clock, n=500, rate=1_000.0)  # 0.5 s
    waited = wait(records, 500)
    assert waited["observed_done_at"] - records.end() <= completion.RECORDS_POLL_SECONDS + 1e-6


def test_a_stalled_run_still_ends_after_its_stall_limit(clock):
    records = Records(clock, n=1_000, rate=1_000.0)
    waited = wait(records, 2_000)  # half of the jobs never finish
    assert waited["stalled"] and waited["done_when_waiting_ended"] == 1_000
    assert 30.0 <= clock.now - records.end() <= 30.0 + completion.RECORDS_POLL_MAX_SECONDS + 1e-6


@pytest.mark.parametrize(
    ("done", "n", "elapsed", "expected"),
    [
        (0, 1_000, 5.0, completion.RECORDS_POLL_SECONDS),  # nothing finished yet: no rate to go by
        (1_000, 20_000, 1.0, completion.RECORDS_POLL_MAX_SECONDS),  # 19 s left: once a second
        (19_000, 20_000, 19.0, 0.5),  # 1 s left: half of it
        (19_990, 20_000, 19.99, completion.RECORDS_POLL_SECONDS),  # 10 ms left: the shortest
        (2_000, 1_000, 1.0, completion.RECORDS_POLL_SECONDS),  # more than sent (duplicates): the shortest
    ],
)
def test_the_interval_is_half_the_time_left_within_its_bounds(done, n, elapsed, expected):
    assert completion.records_poll_interval(done, n, elapsed) == pytest.approx(expected)
