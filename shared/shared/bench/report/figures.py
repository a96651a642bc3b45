"""The named figures of a run, and what the report and the web derive from runs: per-case estimates,
comparisons, the recording overhead. Pure: the rows come from `views` (or a caller's own).

Every figure has one name, one unit and one direction (higher is better or not), used alike by
`summary.md`, `results.csv`, the charts and the admin pages.
"""

from __future__ import annotations

import re
from typing import Any

from shared.bench import stats, terms
from shared.bench.spec import family_of, who_of

_SIZED = re.compile(r"/t[0-9.]+s/")
"""A sized drain's key names its time budget where others name their size (`Case.key`)."""
# (figure, where it is in a run's metrics, higher is better, unit)
FIGURES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    ("throughput", ("throughput",), True, "jobs/s"),
    ("drain_seconds", ("drain_seconds",), False, "s"),
    ("wall_seconds", ("wall_seconds",), False, "s"),
    ("enqueue_rate", ("enqueue_rate",), True, "jobs/s"),
    ("enqueue_seconds", ("enqueue_seconds",), False, "s"),
    ("worker_startup_s", ("worker_startup_s",), False, "s"),
    ("e2e_p50_ms", ("latency_ms", "end_to_end", "p50"), False, "ms"),
    ("e2e_p95_ms", ("latency_ms", "end_to_end", "p95"), False, "ms"),
    ("e2e_p99_ms", ("latency_ms", "end_to_end", "p99"), False, "ms"),
    ("e2e_p99.9_ms", ("latency_ms", "end_to_end", "p99.9"), False, "ms"),
    ("wait_p50_ms", ("latency_ms", "queue_wait", "p50"), False, "ms"),
    ("wait_p95_ms", ("latency_ms", "queue_wait", "p95"), False, "ms"),
    ("wait_p99_ms", ("latency_ms", "queue_wait", "p99"), False, "ms"),
    ("wait_p99.9_ms", ("latency_ms", "queue_wait", "p99.9"), False, "ms"),
    ("exec_p50_ms", ("latency_ms", "execution", "p50"), False, "ms"),
    ("exec_p99_ms", ("latency_ms", "execution", "p99"), False, "ms"),
    ("worker_cpu_s", ("_worker_cpu_s",), False, "s"),
    ("postgres_cpu_s", ("_postgres_cpu_s",), False, "s"),
    ("broker_cpu_s", ("_broker_cpu_s",), False, "s"),
    ("worker_mem_mb_peak", ("_worker_mem_mb",), False, "MB"),
    ("db_transactions", ("db", "transactions"), False, ""),
    ("db_wal_mb", ("_wal_mb",), False, "MB"),
    ("queue_dead_rows", ("db", "queue_dead_rows"), False, ""),
    ("lost", ("audit", "lost"), False, ""),
    ("duplicates", ("audit", "duplicates"), False, ""),
)
SUMMARY_FIGURES = (
    "throughput",
    "drain_seconds",
    "enqueue_rate",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "wait_p99_ms",
    "worker_cpu_s",
    "postgres_cpu_s",
    "worker_mem_mb_peak",
    "db_wal_mb",
    "lost",
    "duplicates",
)
PERCENTILE_FIGURES = frozenset(name for name, path, _hib, _unit in FIGURES if path[0] == "latency_ms")
SIZED_FIGURES = ("throughput", "enqueue_rate", "lost", "duplicates")
"""What a comparison of sized drains compares: rates and the audit. Each adapter drained its own number of
jobs, so times and a drain's latencies (which grow with the batch) are not comparable across them."""
ONE_BY_ONE_FIGURES = ("enqueue_rate", "lost", "duplicates")
"""What a comparison of sized drains enqueued one by one compares: the enqueue rate, the figure such a case
exists for, and the audit. Its drain is the bulk case's drain again (the workers are held until the whole
batch is in), and its size is bound by the enqueue's time budget, so a fast queue drains it in well under the
drains' time budget: its throughput is reported, not compared (docs/benchmark.md, "Runs long enough to
measure")."""
WORKLOAD_FIGURES = ("throughput", "lost", "duplicates")
"""What a comparison of sized bulk drains of a workload other than noop compares: the drain and the audit.
Its bulk enqueue is the noop bulk case's again at the size of a drain of slower jobs (some 1,000 jobs,
enqueued by the fastest queues in tens of milliseconds, too short to measure): its rate is reported, not
compared; the noop bulk case, sized to its drain of fast jobs, carries the bulk enqueue verdict."""
RUN_COLUMNS = (
    "run_id",
    "experiment_id",
    "case_key",
    "who",
    "family",
    "repetition",
    "adapter",
    "broker",
    "celery_config",
    "scenario",
    "workload",
    "scheduling_mode",
    "job_count",
    "processes",
    "slots",
    "recording",
    "status",
)


def _dig(d: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _derived(m: dict[str, Any]) -> dict[str, Any]:
    """Per-run figures computed from the stored metrics (CPU and memory grouped by service kind)."""
    res = m.get("resources") or {}
    worker = [v for k, v in res.items() if k.endswith("-worker")]
    pg = [v for k, v in res.items() if k.startswith("postgres:")]
    broker = [v for k, v in res.items() if k.endswith("-server")]
    out = dict(m)
    out["_worker_cpu_s"] = sum(v["cpu_s"] for v in worker) if worker else None
    out["_postgres_cpu_s"] = sum(v["cpu_s"] for v in pg) if pg else None
    out["_broker_cpu_s"] = sum(v["cpu_s"] for v in broker) if broker else None
    out["_worker_mem_mb"] = sum(v["mem_mb_peak"] for v in worker) if worker else None
    wal = _dig(m, ("db", "wal_bytes"))
    out["_wal_mb"] = round(wal / 2**20, 3) if wal is not None else None
    return out


def figures_of(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The named figures of one run."""
    d = _derived(metrics or {})
    out: dict[str, float | None] = {}
    for name, path, _hib, _unit in FIGURES:
        v = _dig(d, path)
        out[name] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    return out


def run_view(r: dict[str, Any]) -> dict[str, Any]:
    m = r["metrics"] or {}
    return {
        "run_id": r["id"],
        "experiment_id": r["experiment_id"],
        "case_key": r["case_key"],
        "who": who_of(r["case_key"]),
        "family": family_of(r["case_key"]),
        "repetition": r["repetition"],
        "adapter": r["adapter"],
        "broker": r["broker"],
        "celery_config": r["celery_config"],
        "scenario": r["scenario"],
        "workload": r["workload"],
        "workload_params": r["workload_params"],
        "scheduling_mode": r["scheduling_mode"],
        "job_count": r["job_count"],
        "processes": r["processes"],
        "slots": r["slots"],
        "recording": r["recording"],
        "status": r["status"],
        "error": r["error"],
        "slot_mapping": m.get("slot_mapping"),
        "figures": figures_of(m),
        "latency_ms": m.get("latency_ms"),
        "audit": m.get("audit"),
        "db": m.get("db"),
        "resources": m.get("resources"),
        "fault": m.get("fault"),
        "gate": m.get("gate"),
        "sizing": m.get("sizing"),
        "sweep": m.get("sweep"),
        "worker_startup_s": m.get("worker_startup_s"),
        "calibration": m.get("calibration"),
        "wait": m.get("wait"),
        "environment": r["environment"],
    }


def estimates(runs: list[dict[str, Any]], seed: int = 1) -> dict[str, dict[str, Any]]:
    done = [r for r in runs if r["status"] == "completed"]
    out = {}
    for name, _path, hib, unit in FIGURES:
        vals = [v for v in (figures_of(r["metrics"])[name] for r in done) if v is not None]
        if not vals:
            continue
        est = stats.bootstrap_ci(vals, seed=seed)
        out[name] = {**est.to_dict(), "unit": unit, "higher_is_better": hib, "values": vals}
    return out


def case_from_runs(key: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    m: dict[str, Any] = next((r["metrics"] for r in runs if r["metrics"]), {}) or {}
    return {
        "case_key": key,
        "who": who_of(key),
        "family": family_of(key),
        "adapter": first["adapter"],
        "broker": first["broker"],
        "celery_config": first["celery_config"],
        "scenario": first["scenario"],
        "workload": first["workload"],
        "workload_params": first["workload_params"],
        "scheduling_mode": first["scheduling_mode"],
        "job_count": first["job_count"],
        "recording": first["recording"],
        "slot_mapping": m.get("slot_mapping"),
        "repetitions": [
            {
                "run_id": r["id"],
                "repetition": r["repetition"],
                "status": r["status"],
                **figures_of(r["metrics"]),
            }
            for r in runs
        ],
        "estimates": estimates(runs),
    }


def compare_cases(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's results side by side and its verdict (`stats.verdict`). A latency percentile that
    some case could not report (fewer than `stats.MIN_TAIL` samples beyond it) shows as "n too small"."""
    rows = []
    sized = any(_SIZED.search(c["case_key"]) for c in cases)
    compared: tuple[str, ...] | None = SIZED_FIGURES if sized else None
    if sized and all(c.get("scheduling_mode") == "one_by_one" for c in cases):
        compared = ONE_BY_ONE_FIGURES
    elif sized and all(c.get("scheduling_mode") == "bulk" and c.get("workload") != "noop" for c in cases):
        compared = WORKLOAD_FIGURES

    def name_of(c: dict[str, Any]) -> str:
        return c["who"] if len({x["who"] for x in cases}) == len(cases) else c["case_key"]

    for name, _path, hib, unit in FIGURES:
        if compared is not None and name not in compared:
            continue
        ests = {
            name_of(c): stats.Estimate(
                c["estimates"][name]["median"],
                c["estimates"][name]["ci_low"],
                c["estimates"][name]["ci_high"],
                c["estimates"][name]["n"],
            )
            for c in cases
            if name in c["estimates"]
        }
        results: dict[str, dict[str, Any]] = {k: e.to_dict() for k, e in ests.items()}
        if name in PERCENTILE_FIGURES:
            for c in cases:
                if name not in c["estimates"] and "throughput" in c["estimates"]:
                    results[name_of(c)] = {"median": None, "ci_low": None, "ci_high": None, "n": 0}
                    results[name_of(c)]["note"] = stats.N_TOO_SMALL
        if not results:
            continue
        rows.append(
            {
                "figure": name,
                "unit": unit,
                "higher_is_better": hib,
                "results": results,
                **stats.verdict(ests, hib),
            }
        )
    return {"cases": [c["case_key"] for c in cases], "rows": rows, "sized": sized}


def overhead(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Paired runs with recording on and off: the recording's cost on wall time to drain.

    The two runs of a round run side by side (`Spec.schedule`), so the overhead is taken pair by pair,
    `on / off - 1` per round, and summarised by its median with a bootstrap interval: a machine whose
    speed drifts from round to round moves both runs of a pair alike. The medians of each side are
    reported too. "No clear difference" when the interval holds 0.
    """
    out = []
    norec = {c["case_key"].replace(".norec", ""): c for c in cases if not c["recording"]}
    for c in cases:
        pair = norec.get(c["case_key"])
        if pair is None or not c["recording"]:
            continue
        on_by_round, off_by_round = (
            {r["repetition"]: r["wall_seconds"] for r in x["repetitions"] if r.get("wall_seconds")}
            for x in (c, pair)
        )
        rounds = sorted(set(on_by_round) & set(off_by_round))
        per_round = [round(100 * (on_by_round[r] / off_by_round[r] - 1), 2) for r in rounds]
        est = stats.bootstrap_ci(per_round)
        out.append(
            {
                "case_key": c["case_key"],
                "wall_seconds_recording_on": c["estimates"].get("wall_seconds", {}).get("median"),
                "wall_seconds_recording_off": pair["estimates"].get("wall_seconds", {}).get("median"),
                "pairs": len(per_round),
                "per_round_percent": per_round,
                "overhead_percent": round(est.median, 1) if est.median is not None else None,
                "ci_low": round(est.low, 1) if est.low is not None else None,
                "ci_high": round(est.high, 1) if est.high is not None else None,
                "no_clear_difference": est.low is None or est.high is None or est.low <= 0 <= est.high,
            }
        )
    return out


def sweep(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The load sweeps: per variant (and workload and slots), each rate's p50, p95, p99 and p99.9 from the
    scheduled arrival, whether it saturated, and the verdict: the highest rate sustained (not saturated)
    with its bound percentile (`percentile`: p99, or p95 in a sweep whose jobs per rate carry no p99) under
    the bound. A rate whose percentile is "n too small" does not count as under the bound; rates not run (a
    lower one saturated) are listed as such (docs/benchmark.md, "The load sweep")."""
    lines: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r["scenario"] != "sweep":
            continue
        m = r["metrics"] or {}
        point = m.get("sweep") or {}
        key = re.sub(r"@[0-9.e+]+/s", "", r["case_key"])
        line = lines.setdefault(
            key,
            {"line": key, "who": who_of(key), "family": family_of(key), "points": [], "bound_ms": None},
        )
        line["bound_ms"] = line["bound_ms"] or point.get("p99_bound_ms")
        line["percentile"] = line.get("percentile") or point.get("bound_percentile")
        e2e = (m.get("latency_ms") or {}).get("end_to_end") or {}
        rate = point.get("offered_rate") or _rate_of(r["case_key"])
        status = r["status"] if r["status"] != "completed" else (point.get("saturation") or "sustained")
        line["points"].append(
            {
                "rate": rate,
                "status": status,
                "n": e2e.get("n"),
                "p50_ms": e2e.get("p50"),
                "p95_ms": e2e.get("p95"),
                "p99_ms": e2e.get("p99"),
                "p99.9_ms": e2e.get("p99.9"),
                "delivered_rate": point.get("delivered_rate"),
                "sender_processes": m.get("sender_processes"),
                "sender_lag_p99_ms": None
                if m.get("sender_lag_p99_s") is None
                else m["sender_lag_p99_s"] * 1000,
                "note": r["error"],
            }
        )
    out = []
    for line in lines.values():
        line["points"].sort(key=lambda p: p["rate"] or 0)
        bound = line["bound_ms"] or terms.P99_BOUND_MS
        pct = line["percentile"] = line.get("percentile") or "p99"  # runs recorded before p95 could be
        ok = [
            p["rate"]
            for p in line["points"]
            if p["status"] == "sustained" and p[f"{pct}_ms"] is not None and p[f"{pct}_ms"] < bound
        ]
        line["bound_ms"] = bound
        line["highest_rate_under_bound"] = max(ok) if ok else None
        out.append(line)
    return sorted(out, key=lambda x: x["line"])


def _rate_of(key: str) -> float | None:
    m = re.search(r"@([0-9.e+]+)/s", key)
    return float(m[1]) if m else None


HEADLINE_FIGURES = {
    "throughput": "drain throughput",
    "enqueue_rate": "enqueue rate",
    "e2e_p50_ms": "end-to-end p50",
    "e2e_p99_ms": "end-to-end p99",
    "worker_mem_mb_peak": "worker peak memory",
}
"""The figures whose verdicts the headline states, and how it names them."""


def headline(comparisons: dict[str, Any], sweeps: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The verdicts a reader looks for first: one sentence per significant one (who wins, by what ratio,
    the ratio's range from the two intervals, on which work at which size), then the comparisons with no
    clear difference, then each sweep's highest rate under its bound. `summary.md` and the web's
    experiment page print the same sentences."""
    significant: list[str] = []
    unclear: list[str] = []
    for fam, comp in sorted(comparisons.items()):
        for row in comp["rows"]:
            what = HEADLINE_FIGURES.get(row["figure"])
            if what is None:
                continue
            known = {k: r for k, r in row["results"].items() if r.get("median") is not None}
            if len(known) < 2:
                continue
            if not row.get("winner"):
                unclear.append(f"{what}, {fam}")
                continue
            hib = row["higher_is_better"]
            ranked = sorted(known.items(), key=lambda kv: kv[1]["median"], reverse=hib)
            (best, b), (second, r) = ranked[0], ranked[1]
            bounds = (b["ci_low"], b["ci_high"], r["ci_low"], r["ci_high"])
            span = ""
            if all(bounds):  # the ratio's range: the leader's interval against the runner-up's
                bl, bh, rl, rh = bounds
                lo, hi = (bl / rh, bh / rl) if hib else (rl / bh, rh / bl)
                span = f" (intervals give {lo:.2f}-{hi:.2f}x)"
            better = "higher" if hib else "lower"
            significant.append(
                f"**{best}** has the {better} {what} on `{fam}`: {row['ratio']:.2f}x the runner-up {second}{span}."
            )
    sweep_lines = []
    for line in sweeps:
        best = line["highest_rate_under_bound"]
        sweep_lines.append(
            f"`{line['line']}`: "
            + (
                f"sustains **{best:,.0f} jobs/s** with {line['percentile']} under {line['bound_ms']:g} ms"
                if best
                else f"no rate of the sweep with {line['percentile']} under {line['bound_ms']:g} ms"
            )
            + "."
        )
    return {"significant": significant, "no_clear_difference": unclear, "sweep": sweep_lines}


def comparisons(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Every comparison of an experiment: per family of two cases or more (fault, sweep and recording-off
    cases are reported on their own), the figures side by side with their verdicts."""
    families: dict[str, list[dict[str, Any]]] = {}
    for c in cases:
        if c["scenario"] not in ("fault", "sweep") and c["recording"]:
            families.setdefault(c["family"], []).append(c)
    return {f: compare_cases(cs) for f, cs in families.items() if len(cs) > 1}
