"""Unit: the open-loop schedule, the burst schedule, latencies from scheduled arrival, throughput bins."""

from __future__ import annotations

import pytest

from shared.bench import metrics, scenarios


def test_open_loop_arrivals_are_evenly_spaced_from_the_start():
    s = scenarios.open_loop_schedule(5, 200.0, 100.0)
    assert s == pytest.approx([100.0, 100.005, 100.01, 100.015, 100.02])
    assert len(scenarios.open_loop_schedule(2000, 200.0, 0.0)) == 2000
    assert scenarios.open_loop_schedule(2000, 200.0, 0.0)[-1] == pytest.approx(9.995)
    with pytest.raises(ValueError):
        scenarios.open_loop_schedule(5, 0, 0.0)


def test_burst_schedule_splits_all_jobs_into_spaced_groups():
    b = scenarios.burst_schedule(10, 3, 50.0, gap=1.0)
    assert [t for t, _ in b] == [50.0, 51.0, 52.0]
    assert [list(r) for _, r in b] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_steady_latency_counts_from_the_scheduled_arrival():
    # The sender fell 0.5 s behind: the job was enqueued late, and that lateness is latency.
    t = metrics.Timing(seq=0, enqueued_at=10.5, scheduled_at=10.0, first_start=10.6, start=10.6, finish=10.7)
    open_loop = metrics.latencies([t], from_scheduled=True)
    closed = metrics.latencies([t], from_scheduled=False)
    assert open_loop["end_to_end"] == [pytest.approx(700.0)]
    assert closed["end_to_end"] == [pytest.approx(200.0)]
    assert open_loop["queue_wait"] == [pytest.approx(600.0)]
    assert open_loop["execution"] == [pytest.approx(100.0)]


def test_throughput_series_bins_completions_per_second():
    s = metrics.throughput_series([0.1, 0.2, 0.3, 1.5, 2.9], origin=0.0, bin_seconds=1.0)
    assert s["t"] == [0.0, 1.0, 2.0]
    assert s["jobs_per_second"] == [3.0, 1.0, 1.0]


def test_cdf_points_keep_the_tail():
    pts = metrics.cdf_points([float(i) for i in range(10_000)], points=50)
    assert len(pts) <= 60
    assert pts[-1] == (9999.0, 1.0)
    assert pts[0][0] == 0.0
