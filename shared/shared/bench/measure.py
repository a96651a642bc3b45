"""The figures of one run, as its row's `metrics` holds them (docs/benchmark.md, "What is measured").

From what the sender did (`scenarios.EnqueueResult`), how the wait ended (`completion.wait_for_end`), the
sampled resources, the database counters before and after, and the job records: enqueue rate, time to
drain (first start to last finish) and throughput, throughput over time, latency percentiles and CDF,
and a provisional audit (the final one runs once every record is in).
"""

from __future__ import annotations

from typing import Any

import psycopg

from shared.bench import audit, dbload, metrics, stats, store, terms
from shared.bench.scenarios import EnqueueResult
from shared.bench.spec import Case


def run_metrics(
    conn: psycopg.Connection,
    run_id: int,
    case: Case,
    sent: EnqueueResult | None,
    waited: dict[str, Any],
    resources: dict[str, Any],
    before_db: dict[str, float],
    after_db: dict[str, float],
) -> dict[str, Any]:
    """Every figure of run `run_id`."""
    n_sent = sent.sent if sent else 0
    m: dict[str, Any] = {
        "jobs": case.jobs,
        "enqueued": n_sent,
        "enqueue_seconds": round(sent.seconds, 4) if sent else None,
        "enqueue_rate": round(sent.rate, 1) if sent else None,
        "sender_max_lag_s": round(sent.max_lag_s, 4) if sent else None,
        "sender_processes": sent.sender_processes if sent else None,
        "sender_lag_p99_s": round(sent.lag_p99_s, 4) if sent and sent.lag_p99_s is not None else None,
        "db": dbload.delta(before_db, after_db),
        "resources": resources["totals"],
        "resource_samples": resources["samples"],
        "wait": waited,
    }
    if sent and waited.get("observed_done_at"):
        m["wall_seconds"] = round(waited["observed_done_at"] - sent.started_at, 4)
    if not case.recording:
        m["audit"] = None
        if m.get("wall_seconds"):
            # Not `throughput`: without records it spans the enqueue too, unlike the drain figure.
            m["wall_throughput"] = round(n_sent / m["wall_seconds"], 1)
        span = waited.get("queue_span")
        if span:
            # the queue's own first claim and last completion (Adapter.drain_span), database clock
            first, last, done = span
            drain = max(last - first, 1e-6)
            m["first_start_ts"], m["last_finish_ts"] = first, last
            m["drain_seconds"] = round(drain, 4)
            m["throughput"] = round(done / drain, 1)
            m["drain_timed_by"] = "queue"
        return m
    timings = metrics.job_timings(conn, run_id)
    lat = metrics.latencies(timings, from_scheduled=case.scenario in ("steady", "sweep"))
    m["latency_ms"] = metrics.latency_summary(lat)
    m["latency_cdf"] = {k: metrics.cdf_points(v) for k, v in lat.items()}
    starts = [t.first_start for t in timings if t.first_start is not None]
    finishes = sorted(t.finish for t in timings if t.finish is not None)
    if starts and finishes:
        first, last = min(starts), max(finishes)
        m["first_start_ts"], m["last_finish_ts"] = first, last
        drain = max(last - first, 1e-6)
        m["drain_seconds"] = round(drain, 4)
        m["throughput"] = round(len(finishes) / drain, 1)
        m["throughput_series"] = metrics.throughput_series(finishes, first)
    if case.scenario == "sweep" and sent is not None:
        m["sweep"] = sweep_point(case, sent, finishes)
    m["audit"] = audit.audit_run(conn, run_id, range(n_sent)).to_dict()
    return m


def gate_check(conn: psycopg.Connection, run_id: int, gate: dict[str, Any]) -> dict[str, Any]:
    """The drain gate as the records saw it: how many jobs started before the enqueue ended (0 when the
    workers were held or started after it; docs/benchmark.md, "Drain means drain")."""
    end = gate.get("enqueue_finished_at")
    if end is None:
        return gate
    early = conn.execute(store.q("events_started_before"), {"run_id": run_id, "ts": end}).fetchone()
    return {**gate, "jobs_started_before_enqueue_end": int(early[0] if early else 0)}


def sweep_point(case: Case, sent: EnqueueResult, finishes: list[float]) -> dict[str, Any]:
    """One rate of a load sweep: the offered and delivered rates and whether it saturated
    (docs/benchmark.md, "The load sweep"). `sender`: the harness's sender fell
    `terms.SWEEP_MAX_LAG_SECONDS` behind its schedule, so the rate was not offered; `queue`: jobs finished
    at less than `terms.SWEEP_MIN_DELIVERED` of the offered rate (the queue fell behind), or not all did."""
    rate = float(case.rate or 0)
    delivered = (
        (len(finishes) - 1) / (finishes[-1] - finishes[0])
        if len(finishes) > 2 and finishes[-1] > finishes[0]
        else None
    )
    saturation = None
    if sent.fell_behind:
        saturation = "sender"
    elif len(finishes) < sent.sent or (
        delivered is not None and delivered < terms.SWEEP_MIN_DELIVERED * rate
    ):
        saturation = "queue"
    return {
        "offered_rate": rate,
        "delivered_rate": round(delivered, 1) if delivered is not None else None,
        "sent": sent.sent,
        "saturation": saturation,
        "p99_bound_ms": case.p99_bound_ms,
        "bound_percentile": stats.highest_carried(case.jobs, terms.SWEEP_PERCENTILES),
    }
