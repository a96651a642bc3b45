"""A sized drain: a short probe on the case's own workers, whose rates give the size of its runs
(docs/benchmark.md, "Runs long enough to measure"). Every sized drain of an experiment is probed before
its first round, in managed mode; attached mode runs the probe's size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from shared.bench import adapters, completion, metrics, run, scenarios, terms
from shared.bench.spec import Case, Spec

if TYPE_CHECKING:  # pragma: no cover - types only
    from shared.bench.executor import Executor

PROBE_ENQUEUE_SECONDS = 2.0
"""A sized drain's enqueue is kept within this (one job per transaction is slow for every queue)."""
PROBE_MARGIN = 1.2
"""A sized drain takes the probe's rate times its time budget times this, so that it lasts the budget."""


PROBE_MIN_SECONDS = 0.25
"""A probe that drained in less than this measured start-up more than a rate (a queue that claims in
batches takes a 500-job probe in one claim): a second probe, sized to last `PROBE_AGAIN_SECONDS`, sizes the
case instead."""
PROBE_AGAIN_SECONDS = 0.5


def probe(x: Executor, case: Case, probe_id: int) -> dict[str, Any]:
    """Short drains on the case's running workers, held during the enqueue as every drain is, whose rates
    size the case's runs (docs/benchmark.md, "Runs long enough to measure"): the size that lasts
    `case.min_seconds` at the probe's drain rate, within `PROBE_ENQUEUE_SECONDS` of enqueue at its enqueue
    rate, never below the first probe's size. The first probe drains `case.jobs`; one that lasted under
    `PROBE_MIN_SECONDS` is followed by a second, sized to last `PROBE_AGAIN_SECONDS`, whose rates count.
    `probe_id` is a run id no run row has (negative; the second probe's is 500 below it): the probes'
    records are deleted afterwards."""
    assert case.min_seconds is not None
    first = _drain(x, case, case.jobs, probe_id)
    info: dict[str, Any] = {"probe_jobs": first["sent"], "probe_enqueue_rate": first["enqueue_rate"]}
    if first.get("rate") is None:
        return {**info, "jobs": case.jobs, "why": "the probe did not complete; the probe's size is kept"}
    measured = first
    if first["drain_s"] < PROBE_MIN_SECONDS:
        again = _fit(case, first, PROBE_AGAIN_SECONDS)
        if again > case.jobs:
            second = _drain(x, case, again, probe_id - 500)
            if second.get("rate") is not None:
                measured = second
                info.update(probe_jobs=second["sent"], probe_enqueue_rate=second["enqueue_rate"])
                info["first_probe"] = {"jobs": first["sent"], "drain_rate": round(first["rate"], 1)}
    rate, enqueue_rate = measured["rate"], measured["enqueue_rate"]
    want = math.ceil(rate * case.min_seconds * PROBE_MARGIN)
    cap = math.ceil(enqueue_rate * PROBE_ENQUEUE_SECONDS)
    jobs = max(case.jobs, min(want, cap, terms.MAX_JOBS))
    why = (
        f"{case.min_seconds:g} s at the probe's {rate:,.0f} jobs/s"
        if want <= cap
        else f"{PROBE_ENQUEUE_SECONDS:g} s of enqueue at the probe's {enqueue_rate:,.0f} jobs/s"
    )
    return {**info, "probe_drain_rate": round(rate, 1), "jobs": jobs, "why": why}


def _fit(case: Case, probe: dict[str, Any], seconds: float) -> int:
    """The jobs that drain in `seconds` at the probe's rate, within the enqueue's time budget."""
    cap = probe["enqueue_rate"] * PROBE_ENQUEUE_SECONDS
    return int(min(probe["rate"] * seconds, cap, terms.MAX_JOBS))


def _drain(x: Executor, case: Case, jobs: int, probe_id: int) -> dict[str, Any]:
    """One held drain of `jobs` jobs under run id `probe_id`: jobs sent, enqueue rate, drain seconds and
    rate (None when it did not complete). Its records are deleted, its queue settled."""
    case = case.model_copy(update={"jobs": jobs})
    group, _ = x.workers.shared(case)
    adapter = adapters.get(case.adapter)
    enqueuer = adapter.enqueuer(case, group.queue, group.env)
    baseline = completion.completed_in_queue(x.db, case, group.queue)
    sent = None
    try:
        group.hold()
        sent = scenarios.enqueue(case, enqueuer, probe_id, x.should_stop)
    finally:
        try:
            if sent is not None:
                run.analyze_queue(x, case)
        finally:
            group.release()
            enqueuer.close()
    waited = completion.wait_for_end(
        x.db,
        probe_id,
        case,
        sent.sent,
        group.queue,
        baseline,
        x.stall_seconds or run.STALL_SECONDS,
        x.should_stop,
    )
    timings = [t for t in metrics.job_timings(x.db.conn(), probe_id) if t.finish is not None]
    x.db.run("events_delete_run", {"run_id": probe_id})
    run.settle(x, case, group.queue)
    out: dict[str, Any] = {"sent": sent.sent, "enqueue_rate": round(sent.rate, 1), "rate": None}
    if waited.get("stalled") or not timings:
        return out
    finishes = [t.finish for t in timings if t.finish is not None]
    starts = [t.first_start for t in timings if t.first_start is not None]
    drain = max(max(finishes) - min(starts or finishes), 1e-3)
    return {**out, "drain_s": drain, "rate": len(timings) / drain}


def size_cases(x: Executor, spec: Spec) -> dict[str, dict[str, Any]]:
    """Each sized drain's size, from a probe on its own workers before the first round (managed mode;
    attached mode runs the probe's size). What sized it goes with every run."""
    sizes: dict[str, dict[str, Any]] = {}
    for n, case in enumerate(c for c in spec.cases if c.min_seconds and c.scenario == "drain"):
        if x.mode != "managed" or x.should_stop() or x.skip_reason(case):
            continue
        try:
            sizes[case.key] = probe(x, case, -(x.experiment_id * 1000 + n + 1))
        except adapters.AdapterUnavailable as exc:
            x.notes.append(f"{case.key}: no probe ({str(exc).splitlines()[0]}); its size is the probe's")
    return sizes
