"""Percentiles, the median with a bootstrap 95% confidence interval, and the comparison rule.

Two results differ only where their intervals do not overlap; otherwise the report says
"no clear difference" (docs/benchmark.md). Pure Python: the inputs are a handful of repetitions, or the
latencies of one run.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

NO_CLEAR_DIFFERENCE = "no clear difference"
PERCENTILES = (50.0, 95.0, 99.0, 99.9)
MIN_REPETITIONS = 2
"""Fewer repetitions than this give no interval, so no winner."""


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The `p`-th percentile (0..100) of already sorted values, linear between closest ranks.

    None for no values. p50 of [1, 2, 3, 4] is 2.5; p100 is the maximum.
    """
    n = len(sorted_values)
    if n == 0:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {p}")
    rank = (n - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    return float(sorted_values[lo]) + (float(sorted_values[hi]) - float(sorted_values[lo])) * frac


MIN_TAIL = 100
"""A percentile is reported only with at least this many samples beyond it (p99 needs 10,000): fewer, and
one slow job moves it; the report says "n too small" instead (docs/benchmark.md, "Statistics")."""
N_TOO_SMALL = "n too small"


def enough_for(n: int, p: float, tail: int = MIN_TAIL) -> bool:
    """Whether `n` samples leave at least `tail` beyond the `p`-th percentile."""
    return n * (100.0 - p) / 100.0 >= tail - 1e-9


def highest_carried(n: int, ps: Sequence[float], tail: int = MIN_TAIL) -> str:
    """The name (`"p99"`) of the first percentile of `ps` that `n` samples carry (`enough_for`), else of
    the last: `ps` are listed highest first."""
    return f"p{next((p for p in ps if enough_for(n, p, tail)), ps[-1]):g}"


def percentiles(
    values: Sequence[float], ps: Sequence[float] = PERCENTILES, tail: int = 0
) -> dict[str, float | None]:
    """`{"p50": ..., "p95": ..., "p99": ..., "p99.9": ...}` of unsorted values; None for a percentile
    with fewer than `tail` samples beyond it (`enough_for`; the job latencies take `MIN_TAIL`)."""
    s = sorted(values)
    return {f"p{p:g}": percentile(s, p) if enough_for(len(s), p, tail) else None for p in ps}


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return percentile(sorted(values), 50.0)


@dataclass(frozen=True)
class Estimate:
    """A median with its bootstrap confidence interval over `n` repetitions."""

    median: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {"median": self.median, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 1
) -> Estimate:
    """The median of `values` with a percentile-bootstrap confidence interval.

    Resamples with replacement `resamples` times (seeded: the same input gives the same interval) and
    takes the (1-confidence)/2 and (1+confidence)/2 quantiles of the resampled medians. One value gives
    a zero-width interval; none gives Nones.
    """
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return Estimate(None, None, None, 0)
    med = median(vals)
    if n == 1:
        return Estimate(med, med, med, 1)
    rng = random.Random(seed)
    meds = sorted(median([vals[rng.randrange(n)] for _ in range(n)]) or 0.0 for _ in range(resamples))
    alpha = (1 - confidence) / 2
    return Estimate(med, percentile(meds, 100 * alpha), percentile(meds, 100 * (1 - alpha)), n)


def overlap(a: Estimate, b: Estimate) -> bool:
    """Whether two intervals overlap (missing intervals count as overlapping: nothing is claimed)."""
    if None in (a.low, a.high, b.low, b.high):
        return True
    return not (a.high < b.low or b.high < a.low)  # type: ignore[operator]


def verdict(estimates: dict[str, Estimate], higher_is_better: bool) -> dict[str, object]:
    """The winner among named estimates, and its ratio to the runner-up.

    The best median wins only when its interval does not overlap the runner-up's; otherwise the
    verdict is "no clear difference". Ratio: best / runner-up for higher-is-better figures,
    runner-up / best for lower-is-better ones (so a ratio is always >= 1, "x times better").
    """
    known = {k: e for k, e in estimates.items() if e.median is not None}
    if len(known) < 2:
        return {"winner": None, "ratio": None, "verdict": "not compared (fewer than two results)"}
    few = min(e.n for e in known.values()) < MIN_REPETITIONS
    ranked = sorted(known.items(), key=lambda kv: kv[1].median, reverse=higher_is_better)  # type: ignore[arg-type,return-value]
    (best, eb), (_, es) = ranked[0], ranked[1]
    num, den = (eb.median, es.median) if higher_is_better else (es.median, eb.median)
    ratio = (num / den) if den else None  # type: ignore[operator]
    if few:
        # One repetition has no interval: nothing can be claimed from it.
        return {
            "winner": None,
            "ratio": ratio,
            "verdict": f"{NO_CLEAR_DIFFERENCE} (too few repetitions)",
            "leader": best,
        }
    if overlap(eb, es):
        return {"winner": None, "ratio": ratio, "verdict": NO_CLEAR_DIFFERENCE, "leader": best}
    return {"winner": best, "ratio": ratio, "verdict": f"{best} ({ratio:.2f}x)" if ratio else best}
