"""The benchmark's vocabulary, defined once: every module, the web form, the API schema and the database
checks take these names from here (docs/benchmark.md, "Scenarios").

Each is a `Literal` type, for the spec models and the type checker, and the tuple of its values, for
loops and error messages. The adapters' names are not here: they are the keys of the adapter registry
(`shared.bench.adapters`), so that a new queue joins by registering itself.
"""

from __future__ import annotations

from typing import Literal, get_args

SchedulingMode = Literal["one_by_one", "bulk"]
"""`one_by_one`: one enqueue per transaction or publish; `bulk`: the fastest batch API each queue offers."""
Scenario = Literal["drain", "steady", "sweep", "burst", "fault"]
"""How a run's jobs arrive: all at once, open loop at a fixed rate, one rate of a load sweep (open loop,
stopped once the sender falls behind), in spaced bursts, or with a fault."""
Fault = Literal["kill_worker", "kill_whole_worker", "restart_postgres"]
"""What a fault run does mid-run: SIGKILL one process that holds a running job; SIGKILL that process's
whole worker (main process and children) and start a fresh one; restart PostgreSQL."""
Mode = Literal["managed", "attached"]
"""Managed: the harness starts the workers. Attached: it uses workers that already run."""

SCHEDULING_MODES: tuple[str, ...] = get_args(SchedulingMode)
SCENARIOS: tuple[str, ...] = get_args(Scenario)
FAULTS: tuple[str, ...] = get_args(Fault)
MODES: tuple[str, ...] = get_args(Mode)

MAX_JOBS = 2_000_000
MAX_PROCESSES = 64
MAX_SLOTS = 256
"""Total slots (processes x slots per process) of one case."""
MAX_REPETITIONS = 50
MAX_RATE = 100_000.0
MAX_BURSTS = 1000
MAX_WORKLOAD_MS = 3_600_000.0
SWEEP_MAX_LAG_SECONDS = 1.0
"""A sweep's sender stops once it runs this far behind its schedule: the rate is not sustained."""
SWEEP_MIN_DELIVERED = 0.8
"""A sweep rate is saturated when jobs finish at less than this fraction of the offered rate."""
P99_BOUND_MS = 50.0
"""The default bound of the sweep's verdict: the highest rate sustained with p99 under it (p95 in a sweep
too short for a p99)."""
SWEEP_PERCENTILES = (99.0, 95.0)
"""The percentiles a sweep's bound can apply to, highest first: the first that its jobs per rate carry
(`stats.highest_carried`; p99 needs 10,000 jobs, p95 2,000), else the last."""
