"""Latencies and throughput over time of one run, from its job records.

Times are the acting process's wall clock (docs/architecture.md, "The job contract"): queue wait = first
start - enqueued_at, execution = finish - its start, end to end = finish - enqueued_at; in the steady
scenario both are counted from `scheduled_at`, the open-loop arrival time, so a sender that fell behind
shows up as latency. Percentiles follow the one rule of `shared.bench.stats`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from shared.bench import stats, store

CDF_POINTS = 200


@dataclass(frozen=True)
class Timing:
    """The timestamps of one job that latencies are computed from (seconds, wall clock)."""

    seq: int
    enqueued_at: float | None
    scheduled_at: float | None
    first_start: float | None
    start: float | None
    finish: float | None


def job_timings(conn: psycopg.Connection, run_id: int) -> list[Timing]:
    """Per job of run `run_id`: enqueue, first start, and the start and finish of its completed attempt."""
    rows = conn.execute(store.q("job_times"), {"run_id": run_id}).fetchall()
    # The completed attempt's start: the last start before the first finish.
    starts = conn.execute(store.q("job_starts"), {"run_id": run_id}).fetchall()
    by_seq: dict[int, list[float]] = defaultdict(list)
    for seq, ts in starts:
        by_seq[int(seq)].append(float(ts))
    out = []
    for seq, enq, sched, first, fin in rows:
        own = None
        if fin is not None:
            before = [t for t in by_seq.get(int(seq), []) if t <= fin]
            own = before[-1] if before else None
        out.append(Timing(int(seq), enq, sched, first, own, fin))
    return out


def latencies(timings: Iterable[Timing], *, from_scheduled: bool = False) -> dict[str, list[float]]:
    """Queue wait, execution and end-to-end latencies in milliseconds.

    `from_scheduled`: count queue wait and end to end from `scheduled_at` (steady scenario).
    """
    out: dict[str, list[float]] = {"queue_wait": [], "execution": [], "end_to_end": []}
    for t in timings:
        origin = t.scheduled_at if from_scheduled and t.scheduled_at is not None else t.enqueued_at
        if origin is not None and t.first_start is not None:
            out["queue_wait"].append((t.first_start - origin) * 1000)
        if t.start is not None and t.finish is not None:
            out["execution"].append((t.finish - t.start) * 1000)
        if origin is not None and t.finish is not None:
            out["end_to_end"].append((t.finish - origin) * 1000)
    return out


def latency_summary(lat: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    """p50, p95, p99, p99.9 of each latency kind, and its number of samples `n`; a percentile with fewer
    than `stats.MIN_TAIL` samples beyond it is None ("n too small")."""
    return {
        kind: {**stats.percentiles(vals, tail=stats.MIN_TAIL), "n": len(vals)} for kind, vals in lat.items()
    }


def cdf_points(values: Sequence[float], points: int = CDF_POINTS) -> list[tuple[float, float]]:
    """At most `points` (value, fraction <= value) pairs of the empirical CDF, tail kept."""
    s = sorted(values)
    n = len(s)
    if n == 0:
        return []
    if n <= points:
        idx = list(range(n))
    else:
        # Even spacing in rank, plus the last few ranks so p99.9 shows.
        idx = sorted({round(i * (n - 1) / (points - 1)) for i in range(points)} | set(range(n - 5, n)))
    return [(round(s[i], 4), round((i + 1) / n, 6)) for i in idx]


def throughput_series(
    finishes: Sequence[float], origin: float, bin_seconds: float | None = None
) -> dict[str, Any]:
    """Completions per second in consecutive bins from `origin` (the first start)."""
    if not finishes:
        return {"bin_seconds": bin_seconds or 1.0, "t": [], "jobs_per_second": []}
    span = max(finishes) - origin
    if bin_seconds is None:
        # About 50 bins, at least 50 ms wide.
        bin_seconds = max(0.05, round(span / 50, 2) or 0.05)
    nbins = int(span // bin_seconds) + 1
    counts = [0] * nbins
    for f in finishes:
        counts[max(0, min(nbins - 1, int((f - origin) // bin_seconds)))] += 1
    return {
        "bin_seconds": bin_seconds,
        "t": [round(i * bin_seconds, 4) for i in range(nbins)],
        "jobs_per_second": [round(c / bin_seconds, 2) for c in counts],
    }
