"""Unit: the fleet an attached run records, from heartbeat rows, and the equal-fleet check."""

from __future__ import annotations

from shared.bench import fleet


def row(adapter, host, queues, processes, slots, **info):
    return {
        "adapter": adapter,
        "host": host,
        "queues": queues,
        "processes": processes,
        "slots": slots,
        "info": {"machine": {"cpus": 2, "memory_mb": 2048}, **info},
    }


ROWS = [
    # two pgqueue supervisors of 2 processes × 2 threads, each with its processes' own rows
    row("pgqueue", "host-a", ["default"], 2, 2, role="supervisor"),
    row("pgqueue", "host-a", ["default"], 1, 2, role="process", supervisor="s-a"),
    row("pgqueue", "host-a", ["default"], 1, 2, role="process", supervisor="s-a"),
    row("pgqueue", "host-b", ["default"], 2, 2, role="supervisor"),
    row("pgqueue", "host-b", ["default"], 1, 2, role="process", supervisor="s-b"),
    # another queue, another adapter: not this fleet
    row("pgqueue", "host-c", ["other"], 2, 2),
    row("celery", "host-a", ["default"], 4, 1, broker="redis"),
]


def test_a_fleet_counts_each_worker_once_per_host_with_its_slots():
    f = fleet.of_queue(ROWS, "pgqueue", "default")
    assert f["workers"] == 2 and f["processes"] == 4 and f["slots"] == 8
    assert list(f["hosts"]) == ["host-a", "host-b"]
    assert f["hosts"]["host-a"] == {
        "workers": 1,
        "processes": 2,
        "slots": 4,
        "cpus": 2,
        "memory_mb": 2048,
        "fly_machine_id": None,
    }
    assert "8 slots: 2 workers on 2 hosts (host-a: 4, host-b: 4)" == fleet.describe(f)
    assert fleet.of_queue(ROWS, "celery", "default")["slots"] == 4


def test_the_equal_fleet_check_says_plainly_when_slots_differ():
    pg = fleet.of_queue(ROWS, "pgqueue", "default")
    celery = fleet.of_queue(ROWS, "celery", "default")
    assert fleet.check({"pgqueue": pg, "celery.redis": {**celery, "slots": 8}}) is None
    msg = fleet.check({"pgqueue": pg, "celery.redis": celery})
    assert msg is not None and "differ" in msg
    assert "celery.redis 4 slots" in msg and "pgqueue 8 slots" in msg


def test_of_runs_keeps_each_contenders_largest_recorded_fleet():
    small = {"slots": 4, "workers": 1, "hosts": {}}
    large = {"slots": 8, "workers": 2, "hosts": {}}
    runs = [
        {"metrics": {"fleet": small}, "who": "p"},
        {"metrics": {"fleet": large}, "who": "p"},
        {"metrics": {}},
    ]
    assert fleet.of_runs(runs, lambda r: r["who"]) == {"p": large}
