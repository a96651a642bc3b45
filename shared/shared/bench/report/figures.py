"""The named figures of a run, and what the report and the web derive from runs: per-case estimates,
comparisons, the recording overhead. Pure: the rows come from `views` (or a caller's own).

Every figure has one name, one unit and one direction (higher is better or not), used alike by
`summary.md`, `results.csv`, the charts and the admin pages.
"""

from __future__ import annotations

from typing import Any

from shared.bench import stats
from shared.bench.spec import family_of, who_of

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
    rows = []
    for name, _path, hib, unit in FIGURES:
        ests = {
            c["who"] if len({x["who"] for x in cases}) == len(cases) else c["case_key"]: stats.Estimate(
                c["estimates"][name]["median"],
                c["estimates"][name]["ci_low"],
                c["estimates"][name]["ci_high"],
                c["estimates"][name]["n"],
            )
            for c in cases
            if name in c["estimates"]
        }
        if not ests:
            continue
        rows.append(
            {
                "figure": name,
                "unit": unit,
                "higher_is_better": hib,
                "results": {k: e.to_dict() for k, e in ests.items()},
                **stats.verdict(ests, hib),
            }
        )
    return {"cases": [c["case_key"] for c in cases], "rows": rows}


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
