"""One run of one case: its workers and queue, the enqueue, the wait, the fault, the figures, the row.

Steps, in order (docs/benchmark.md, "One run"):
1. the workers: the experiment's running group (managed), fresh ones for a fault run, none yet for a run
   whose workers start after the enqueue, or the queue a live worker announces (attached);
2. before the timed window: a checkpoint before a large run, the enqueuer's connection, the database
   counters, the queue's own completed count, the resource sampler, the fault's thread;
3. the enqueue, as the scenario says (`scenarios.enqueue`); a drain's workers are held (stopped) during it
   and released after it, or, for a gated run, started after it;
4. the wait for the end (`completion.wait_for_end`); the fault's workers stop;
5. the figures (`measure.run_metrics`) into the run's row; between runs, the queue is settled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from shared.bench import adapters, completion, dbload, environment, fleet, measure, scenarios
from shared.bench.faults import FaultInjector
from shared.bench.sampler import ResourceSampler, server_pid
from shared.bench.spec import Case
from shared.bench.workers import WorkerGroup

if TYPE_CHECKING:  # pragma: no cover - types only
    from shared.bench.executor import Executor

STALL_SECONDS = 20.0
"""A run whose completions stop moving for this long ends (its missing jobs count as lost)."""
FAULT_STALL_SECONDS = 30.0
"""Fault runs wait longer: pgqueue rescues a dead worker's jobs after its `rescue_after` (15 s) plus
one rescuer interval (5 s)."""
FAULT_STOP_SECONDS = 10.0
LARGE_RUN_JOBS = 10_000
"""Runs of at least this many jobs start after a checkpoint and are followed by a VACUUM (ANALYZE) of the
tables they wrote, in managed mode."""


def execute(
    x: Executor, run_id: int, case: Case, rep: int, sizing: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Execute run `run_id` (repetition `rep` of `case`), store its figures and return them."""
    adapter = adapters.get(case.adapter)
    group: WorkerGroup | None = None
    startup = None
    the_fleet = None
    if x.mode == "attached":
        queue, pids, the_fleet = x.attached_queue(case)
        roots: Callable[[], list[int]] = lambda: pids  # noqa: E731
    elif x.workers.shares(case):
        group, fresh = x.workers.shared(case)
        startup = x.workers.startup_of(case, group, fresh)
        queue, roots = group.queue, group.root_pids
    elif case.workers_start == "after_enqueue":
        group = x.workers.spawn(case, start=False)
        queue, roots = group.queue, group.root_pids
    else:
        group = x.workers.wait(case, x.workers.spawn(case))
        startup = x.workers.startup_of(case, group, True)
        queue, roots = group.queue, group.root_pids
    servers = {
        name: pid
        for name, port in adapter.servers(case.options, x.settings).items()
        if (pid := server_pid(port)) is not None
    }
    sampler = ResourceSampler(
        x.url,
        roots={f"{case.adapter}-worker": roots},
        backend_services={p: case.adapter for p in adapter.backend_prefixes}
        | {"bench-spool-loader": case.adapter, "bench-harness": "harness"},
        servers=servers,
    )
    if x.mode == "managed" and case.jobs >= LARGE_RUN_JOBS:
        x.checkpoint()
    enqueuer = adapter.enqueuer(case, queue, group.env if group else x.workers.env())
    before_db = dbload.snapshot(x.db.conn())
    # The queue serves every run of its group: count what it completed before this run sends anything.
    baseline = completion.completed_in_queue(x.db, case, queue)
    env = environment.of_run(x.env_info, case, x.settings)
    # In attached mode the slots are the fleet's, not the case's processes × slots.
    slot_mapping = fleet.describe(the_fleet) if the_fleet else case.slot_mapping()
    env["slot_mapping"] = slot_mapping
    x.db.run("run_scheduling", {"id": run_id, "environment": Jsonb(env)})
    held = case.workers_start == "held" and x.mode == "managed" and group is not None
    gate: dict[str, Any] = {"workers_start": case.workers_start if x.mode == "managed" else "attached"}
    injector = None
    interrupted = False
    sent = None
    try:
        # Inside the try: a hold cut short (Ctrl-C while it waits) still ends in the release below.
        if held:
            assert group is not None
            gate["held"] = group.hold()
        sampler.start()
        if case.scenario == "fault":
            replace = None
            if group is not None and case.fault == "kill_whole_worker":
                replace = lambda: x.workers.add_worker(case, group)  # noqa: E731
            injector = FaultInjector(
                x.url, run_id, case, group, x.cluster, x.should_stop, spool_dir=x.spool_dir, replace=replace
            )
            injector.start()
        sent = scenarios.enqueue(case, enqueuer, run_id, x.should_stop)
        if injector is not None:
            injector.enqueue_done_at = sent.finished_at
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if held:
            assert group is not None
            try:
                if sent is not None and not interrupted:
                    gate["analyzed_s"] = analyze_queue(x, case)
            finally:
                # released whatever the analyze did: a held group left stopped would stall every later run
                gate["released_at"] = group.release()
        # Closed after the release: a connection's goodbye is not the workers' to wait for.
        enqueuer.close()
    if sent is not None:
        gate["enqueue_finished_at"] = sent.finished_at
    x.db.run("run_running", {"id": run_id})
    waited: dict[str, Any] = {}
    try:
        if not interrupted and case.workers_start == "after_enqueue" and x.mode == "managed":
            assert group is not None
            gate["released_at"] = time.time()
            x.workers.wait(case, x.workers.start_workers(case, group))
            startup = group.startup_seconds
        if not interrupted and sent is not None:
            stall = x.stall_seconds or (FAULT_STALL_SECONDS if case.scenario == "fault" else STALL_SECONDS)
            waited = completion.wait_for_end(
                x.db, run_id, case, sent.sent, queue, baseline, stall, x.should_stop
            )
    except KeyboardInterrupt:
        interrupted = True
    fault_info = injector.finish() if injector is not None else {}
    if fault_info:
        fault_info["redelivery"] = adapter.redelivery(case)
    if group is not None and not x.workers.shares(case):
        # A fault's workers go: a clean stop flushes their spools, then dead workers' spools load. A
        # Celery worker whose pool child was SIGKILLed can hang in its warm shutdown: a short wait.
        group.stop(timeout=FAULT_STOP_SECONDS)
    resources = sampler.stop()
    if case.scenario == "fault":
        x.load_leftover_spools()
    after_db = dbload.snapshot(x.db.conn())
    m = measure.run_metrics(x.db.conn(), run_id, case, sent, waited, resources, before_db, after_db)
    if fault_info.get("at") and m.get("last_finish_ts"):
        fault_info["last_finish_after_s"] = round(m["last_finish_ts"] - fault_info["at"], 3)
    m.update(
        gate=measure.gate_check(x.db.conn(), run_id, gate) if case.recording else gate,
        fault=fault_info or None,
        sizing=sizing,
        worker_startup_s=startup,
        slot_mapping=slot_mapping,
        queue=queue,
        calibration=x.calibration.get(rep),
        # attached: the workers that announced the queue, from their heartbeats, not the case's numbers
        fleet=the_fleet,
    )
    status = "cancelled" if interrupted or x.should_stop() else "completed"
    x.db.run(
        "run_finish",
        {
            "id": run_id,
            "status": status,
            "metrics": Jsonb(m),
            "first_start": m.get("first_start_ts"),
            "last_finish": m.get("last_finish_ts"),
            "error": "interrupted" if status == "cancelled" else None,
        },
    )
    if interrupted:
        raise KeyboardInterrupt
    if x.mode == "managed":
        settle(x, case, queue)
    return m


def analyze_queue(x: Executor, case: Case) -> float | None:
    """ANALYZE the tables the case's batch landed in (`Adapter.queue_tables`), outside every timed window:
    a backlog that lands on a table whose statistics say it is empty gets a plan that reads the whole
    backlog per claim (docs/benchmarks.md, "Why the peers' sized drains are slower than their probes"), and
    whether autovacuum came by first would decide the verdict. The seconds it took, or None."""
    tables = adapters.get(case.adapter).queue_tables
    if not tables:
        return None
    started = time.monotonic()
    # The names are the adapters' constants, not input.
    x.db.call(lambda conn: conn.execute(f"ANALYZE {', '.join(tables)}"))  # noqa: S608
    return round(time.monotonic() - started, 3)


def settle(x: Executor, case: Case, queue: str) -> None:
    """Between two runs, outside every measured window: leave the database as the next run should find it,
    so that no repetition pays for its predecessors' rows.

    The adapter deletes the run's finished jobs from its queue where they would stay (pgqueue's cleaner
    would delete them once their retention passed). After a large run the tables it wrote are vacuumed
    and analyzed, so that no autovacuum or autoanalyze of them falls due inside the next run and takes CPU
    from it. Only in managed mode: an attached worker's queue and database are not the harness's to clean.
    """
    tables = x.db.call(lambda conn: adapters.get(case.adapter).settle(conn, queue))
    if case.jobs < LARGE_RUN_JOBS:
        return
    names = (["job_events"] if case.recording else []) + list(tables)
    if names:
        # The names are this module's and the adapters' constants, not input.
        x.db.call(lambda conn: conn.execute(f"VACUUM (ANALYZE) {', '.join(names)}"))  # noqa: S608
