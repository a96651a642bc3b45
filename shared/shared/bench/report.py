"""Results out of the database: per-run figures and chart data, per-case statistics, comparisons, files.

`run_series`, `run_summary`, `case_summary` and `compare` serve the admin pages (the same data the PNGs
plot); `write` produces `results.json`, `results.csv`, `summary.md` and the PNG plots of one experiment.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from shared import db, settings
from shared.bench import spec, statistics

# (figure, where it is in a run's metrics, higher is better, unit)
FIGURES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    ("throughput", ("throughput",), True, "jobs/s"),
    ("drain_seconds", ("drain_seconds",), False, "s"),
    ("wall_seconds", ("wall_seconds",), False, "s"),
    ("enqueue_rate", ("enqueue_rate",), True, "jobs/s"),
    ("e2e_p50_ms", ("latency_ms", "end_to_end", "p50"), False, "ms"),
    ("e2e_p95_ms", ("latency_ms", "end_to_end", "p95"), False, "ms"),
    ("e2e_p99_ms", ("latency_ms", "end_to_end", "p99"), False, "ms"),
    ("e2e_p99.9_ms", ("latency_ms", "end_to_end", "p99.9"), False, "ms"),
    ("wait_p50_ms", ("latency_ms", "queue_wait", "p50"), False, "ms"),
    ("wait_p99_ms", ("latency_ms", "queue_wait", "p99"), False, "ms"),
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


def _who(key: str) -> str:
    return key.split("/", 1)[0]


def _family(key: str) -> str:
    return spec.family_of(key)


def _connect(conn: psycopg.Connection | None) -> tuple[psycopg.Connection, bool]:
    if conn is not None:
        return conn, False
    return db.connect(settings.load().database_url, role="harness-report", autocommit=True), True


RUNS_SELECT = (
    "SELECT id, experiment_id, case_key, repetition, adapter, broker, celery_config, scenario, workload, "
    "workload_params, scheduling_mode, job_count, processes, slots, recording, status, error, metrics, "
    "environment, scheduling_started_at, finished_at FROM benchmark_runs"
)


def _runs(conn: psycopg.Connection, where: str, params: tuple) -> list[dict[str, Any]]:
    # `where` is one of this module's fixed fragments; values go in `params`.
    sql = f"{RUNS_SELECT} WHERE {where} ORDER BY id"  # noqa: S608
    cur = conn.execute(sql, params)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# ---- API for the admin pages -----------------------------------------------------------------------


def run_series(run_id: int, conn: psycopg.Connection | None = None) -> dict[str, Any]:
    """Chart data of one run: throughput over time, latency CDF points, CPU and memory per service."""
    c, own = _connect(conn)
    try:
        rows = _runs(c, "id = %s", (run_id,))
    finally:
        if own:
            c.close()
    if not rows:
        raise LookupError(f"no run {run_id}")
    m = rows[0]["metrics"] or {}
    samples = m.get("resource_samples") or []
    services = sorted({k for s in samples for k in s if k != "t"})
    return {
        "run_id": run_id,
        "case_key": rows[0]["case_key"],
        "throughput": m.get("throughput_series") or {"t": [], "jobs_per_second": []},
        "latency_cdf": {
            kind: {"ms": [p[0] for p in pts], "fraction": [p[1] for p in pts]}
            for kind, pts in (m.get("latency_cdf") or {}).items()
        },
        "resources": {
            svc: {
                "t": [s["t"] for s in samples if svc in s],
                "cpu_s": [s[svc]["cpu_s"] for s in samples if svc in s],
                "mem_mb": [s[svc]["mem_mb"] for s in samples if svc in s],
            }
            for svc in services
        },
    }


def _run_view(r: dict[str, Any]) -> dict[str, Any]:
    m = r["metrics"] or {}
    return {
        "run_id": r["id"],
        "experiment_id": r["experiment_id"],
        "case_key": r["case_key"],
        "who": _who(r["case_key"]),
        "family": _family(r["case_key"]),
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


def run_summary(run_id: int, conn: psycopg.Connection | None = None) -> dict[str, Any]:
    """Every figure of one run (no time series)."""
    c, own = _connect(conn)
    try:
        rows = _runs(c, "id = %s", (run_id,))
    finally:
        if own:
            c.close()
    if not rows:
        raise LookupError(f"no run {run_id}")
    return _run_view(rows[0])


def _estimates(runs: list[dict[str, Any]], seed: int = 1) -> dict[str, dict[str, Any]]:
    done = [r for r in runs if r["status"] == "completed"]
    out = {}
    for name, _path, hib, unit in FIGURES:
        vals = [v for v in (figures_of(r["metrics"])[name] for r in done) if v is not None]
        if not vals:
            continue
        est = statistics.bootstrap_ci(vals, seed=seed)
        out[name] = {**est.to_dict(), "unit": unit, "higher_is_better": hib, "values": vals}
    return out


def _case_from_runs(key: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    m: dict[str, Any] = next((r["metrics"] for r in runs if r["metrics"]), {}) or {}
    return {
        "case_key": key,
        "who": _who(key),
        "family": _family(key),
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
        "estimates": _estimates(runs),
    }


def case_summary(experiment_id: int, case_key: str, conn: psycopg.Connection | None = None) -> dict[str, Any]:
    """One case of an experiment: its repetitions and, per figure, the median with its 95% interval."""
    c, own = _connect(conn)
    try:
        runs = _runs(c, "experiment_id = %s AND case_key = %s", (experiment_id, case_key))
    finally:
        if own:
            c.close()
    if not runs:
        raise LookupError(f"no case {case_key!r} in experiment {experiment_id}")
    return _case_from_runs(case_key, runs)


def _compare_cases(cases: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for name, _path, hib, unit in FIGURES:
        ests = {
            c["who"] if len({x["who"] for x in cases}) == len(cases) else c["case_key"]: statistics.Estimate(
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
                **statistics.verdict(ests, hib),
            }
        )
    return {"cases": [c["case_key"] for c in cases], "rows": rows}


def compare(
    items: list[int] | list[str] | list[tuple[int, str]],
    conn: psycopg.Connection | None = None,
    experiment_id: int | None = None,
) -> dict[str, Any]:
    """Compare cases side by side: given run ids (each run's case in its experiment), case keys (of
    `experiment_id`, else the latest experiment that has them) or (experiment_id, case_key) pairs."""
    c, own = _connect(conn)
    try:
        pairs: list[tuple[int, str]] = []
        for it in items:
            if isinstance(it, tuple):
                pairs.append((int(it[0]), str(it[1])))
            elif isinstance(it, int) or (isinstance(it, str) and it.isdigit()):
                row = c.execute(
                    "SELECT experiment_id, case_key FROM benchmark_runs WHERE id = %s", (int(it),)
                ).fetchone()
                if row is None:
                    raise LookupError(f"no run {it}")
                pairs.append((row[0], row[1]))
            else:
                eid = experiment_id
                if eid is None:
                    row = c.execute(
                        "SELECT max(experiment_id) FROM benchmark_runs WHERE case_key = %s", (it,)
                    ).fetchone()
                    eid = row[0] if row else None
                if eid is None:
                    raise LookupError(f"no case {it!r}")
                pairs.append((eid, it))
        cases = [
            _case_from_runs(k, _runs(c, "experiment_id = %s AND case_key = %s", (e, k))) for e, k in pairs
        ]
    finally:
        if own:
            c.close()
    return _compare_cases([x for x in cases if x["repetitions"]])


# ---- files -----------------------------------------------------------------------------------------


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.3g}"
    return s


def write(
    conn: psycopg.Connection,
    experiment_id: int,
    out: Path,
    *,
    notes: list[str] | None = None,
    calibration: dict[int, dict[str, Any]] | None = None,
) -> list[Path]:
    """Write results.json, results.csv, summary.md and the PNG plots of an experiment into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    exp = conn.execute(
        "SELECT id, status, mode, spec, created_at, started_at, finished_at FROM experiments WHERE id = %s",
        (experiment_id,),
    ).fetchone()
    runs = _runs(conn, "experiment_id = %s", (experiment_id,))
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_case[r["case_key"]].append(r)
    cases = [_case_from_runs(k, rs) for k, rs in by_case.items()]
    families: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in cases:
        if c["scenario"] != "fault" and c["recording"]:
            families[c["family"]].append(c)
    comparisons = {f: _compare_cases(cs) for f, cs in families.items() if len(cs) > 1}
    if not calibration:
        # Rewriting a report from the rows: each run carries its round's calibration.
        calibration = {}
        for r in runs:
            round_calibration = (r["metrics"] or {}).get("calibration")
            if round_calibration and r["repetition"] not in calibration:
                calibration[r["repetition"]] = round_calibration
    calib = [{"round": k, **v} for k, v in sorted(calibration.items())]
    ceiling = statistics.median([c["jobs_per_second"] for c in calib if c.get("jobs_per_second")])
    overhead = _overhead(cases)
    environment: dict[str, Any] = next((r["environment"] for r in runs if r["environment"]), {})
    spec_data = exp[3] if exp else {}
    result = {
        "experiment": {
            "id": experiment_id,
            "status": exp[1] if exp else None,
            "mode": exp[2] if exp else None,
            "created_at": exp[4].isoformat() if exp and exp[4] else None,
            "started_at": exp[5].isoformat() if exp and exp[5] else None,
            "finished_at": exp[6].isoformat() if exp and exp[6] else None,
            "spec": spec_data,
        },
        "environment": {k: v for k, v in environment.items() if k != "celery_config"},
        "notes": notes or [],
        "calibration": {"rounds": calib, "median_jobs_per_second": ceiling},
        "recording_overhead": overhead,
        "cases": cases,
        "comparisons": comparisons,
        "faults": [_run_view(r) for r in runs if r["scenario"] == "fault"],
        "runs": [_run_view(r) for r in runs],
    }
    files = []
    p = out / "results.json"
    p.write_text(json.dumps(result, indent=2, default=str))
    files.append(p)
    files.append(_write_csv(out / "results.csv", runs))
    files.extend(_plots(out, runs, cases))
    files.append(_write_summary(out / "summary.md", result, cases, comparisons, ceiling, runs, files))
    return files


def _overhead(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
        est = statistics.bootstrap_ci(per_round)
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


def _est_args(case: dict[str, Any], name: str) -> dict[str, Any]:
    e = case["estimates"].get(name) or {}
    return {"median": e.get("median"), "low": e.get("ci_low"), "high": e.get("ci_high"), "n": e.get("n", 0)}


def _write_csv(path: Path, runs: list[dict[str, Any]]) -> Path:
    fig_names = [f[0] for f in FIGURES]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*RUN_COLUMNS, "slot_mapping", *fig_names])
        for r in runs:
            v = _run_view(r)
            w.writerow(
                [
                    v["run_id"],
                    v["experiment_id"],
                    v["case_key"],
                    v["who"],
                    v["family"],
                    v["repetition"],
                    v["adapter"],
                    v["broker"],
                    v["celery_config"],
                    v["scenario"],
                    v["workload"],
                    v["scheduling_mode"],
                    v["job_count"],
                    v["processes"],
                    v["slots"],
                    v["recording"],
                    v["status"],
                    v["slot_mapping"],
                    *[v["figures"][n] for n in fig_names],
                ]
            )
    return path


def _cell(est: dict[str, Any] | None) -> str:
    if not est:
        return "–"
    return f"{_fmt(est['median'])} [{_fmt(est['ci_low'])}–{_fmt(est['ci_high'])}]"


def _write_summary(
    path: Path,
    result: dict[str, Any],
    cases: list[dict[str, Any]],
    comparisons: dict[str, Any],
    ceiling: float | None,
    runs: list[dict[str, Any]],
    files: list[Path],
) -> Path:
    e = result["experiment"]
    env = result["environment"]
    pg = env.get("postgres") or {}
    lines = [
        f"# Benchmark: experiment {e['id']} ({e['status']}, {e['mode']} mode)",
        "",
        f"Started {e['started_at']}, finished {e['finished_at']}. "
        f"Python {env.get('python')}, PostgreSQL {pg.get('server_version')} "
        f"(fsync={pg.get('fsync')}, synchronous_commit={pg.get('synchronous_commit')}), "
        f"{env.get('cpu_count')} CPUs, {env.get('memory_mb')} MB; "
        + ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items() if v)
        + f". Database: {env.get('database')}.",
        "",
        "Each cell: median [bootstrap 95% interval] over the repetitions. A winner is named only where the "
        'intervals do not overlap; otherwise "no clear difference". Ratio: how many times better the '
        "leader is than the runner-up.",
        "",
    ]
    spec_data = e.get("spec") or {}
    lines += ["## Sizes", "", f"- repetitions per case: {spec_data.get('repetitions')}"]
    for c in cases:
        reps = len(c["repetitions"])
        lines.append(f"- `{c['case_key']}`: {c['job_count']} jobs, {reps} run(s); {c['slot_mapping'] or ''}")
    lines.append("")
    if ceiling:
        lines += [
            "## Calibration: the raw SQL ceiling",
            "",
            "Claim 100 jobs (`FOR UPDATE SKIP LOCKED`) then complete them, in a loop, from one connection, "
            f"no job body, no recording ({result['calibration']['rounds'][0].get('source')}): "
            f"**{_fmt(ceiling)} jobs/s** (median of {len(result['calibration']['rounds'])} rounds). A queue with "
            "several processes can pass this one-connection figure.",
            "",
            "| case | throughput (jobs/s) | ratio to ceiling |",
            "|---|---|---|",
        ]
        for c in cases:
            t = c["estimates"].get("throughput")
            if t and c["workload"] == "noop" and c["scenario"] == "drain" and c["recording"]:
                lines.append(f"| `{c['case_key']}` | {_fmt(t['median'])} | {t['median'] / ceiling:.3f} |")
        lines.append("")
        rounds = result["calibration"]["rounds"]
        copy = statistics.median([r["copy"] for r in rounds if isinstance(r.get("copy"), int | float)])
        insert = statistics.median([r["insert"] for r in rounds if isinstance(r.get("insert"), int | float)])
        if copy and insert:
            lines += [
                f"Enqueue ceilings: a plain COPY **{_fmt(copy)} jobs/s** (bulk), single-row INSERTs one per "
                f"transaction **{_fmt(insert)} jobs/s** (one_by_one).",
                "",
                "| case | enqueue rate (jobs/s) | ratio to its ceiling |",
                "|---|---|---|",
            ]
            for c in cases:
                e = c["estimates"].get("enqueue_rate")
                if e and c["scenario"] == "drain" and c["recording"] and e["median"]:
                    ref = copy if c["scheduling_mode"] == "bulk" else insert
                    lines.append(f"| `{c['case_key']}` | {_fmt(e['median'])} | {e['median'] / ref:.3f} |")
            lines.append("")
    for fam, comp in sorted(comparisons.items()):
        whos = list({w for row in comp["rows"] for w in row["results"]})
        whos.sort(key=lambda w: (not w.startswith("pgqueue"), w))
        lines += [f"## {fam}", "", "| figure | " + " | ".join(whos) + " | winner (ratio) |"]
        lines.append("|---|" + "---|" * len(whos) + "---|")
        for row in comp["rows"]:
            if row["figure"] not in SUMMARY_FIGURES:
                continue
            cells = []
            for w in whos:
                r = row["results"].get(w)
                cells.append(
                    _cell({"median": r["median"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
                    if r
                    else "–"
                )
            if row.get("winner"):
                verdict = f"**{row['winner']}** ({row['ratio']:.2f}x)" if row.get("ratio") else row["winner"]
            else:
                verdict = row["verdict"]
            unit = f" ({row['unit']})" if row["unit"] else ""
            lines.append(f"| {row['figure']}{unit} | " + " | ".join(cells) + f" | {verdict} |")
        lines.append("")
    if result["recording_overhead"]:
        lines += ["## Recording overhead (paired runs, recording on and off)", ""]
        for o in result["recording_overhead"]:
            interval = f" [{o['ci_low']}–{o['ci_high']}]" if o.get("ci_low") is not None else ""
            lines.append(
                f"- `{o['case_key']}`: **{o['overhead_percent'] if o['overhead_percent'] is not None else '–'}%"
                f"**{interval}, the median of {o.get('pairs', 0)} side-by-side pairs' on/off ratios "
                f"(per round: {', '.join(f'{x:+g}%' for x in o.get('per_round_percent', []))})"
                + ("; no clear difference" if o["no_clear_difference"] else "")
                + f". Median wall time {_fmt(o['wall_seconds_recording_on'])} s with recording, "
                f"{_fmt(o['wall_seconds_recording_off'])} s without."
            )
        lines.append("")
    faults = result["faults"]
    if faults:
        lines += [
            "## Fault runs (single repetitions, reported, not compared)",
            "",
            "| case | status | fault | enqueued | completed | lost | duplicates | redelivered | retried |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for f in faults:
            a = f.get("audit") or {}
            fault = f.get("fault") or {}
            when = (
                f", struck after {fault['jobs_started_before']} started, {fault['jobs_finished_before']} finished"
                if "jobs_started_before" in fault
                else ""
            )
            lines.append(
                f"| `{f['case_key']}` | {f['status']} | {fault.get('kind', '–')} "
                f"{'pid ' + str(fault.get('pid')) if fault.get('pid') else ''}{when} | {a.get('enqueued', '–')} | "
                f"{a.get('completed', '–')} | {a.get('lost', '–')} | {a.get('duplicates', '–')} | "
                f"{a.get('redelivered', '–')} | {a.get('retried', '–')} |"
            )
        lines.append("")
    lines += [
        "## Correctness audit (every run)",
        "",
        "| case | runs | lost | duplicates |",
        "|---|---|---|---|",
    ]
    for c in cases:
        audited = [r for r in runs if r["case_key"] == c["case_key"] and (r["metrics"] or {}).get("audit")]
        lost = sum(r["metrics"]["audit"]["lost"] for r in audited)
        dup = sum(r["metrics"]["audit"]["duplicates"] for r in audited)
        lines.append(f"| `{c['case_key']}` | {len(audited)} | {lost} | {dup} |")
    lines.append("")
    if result["notes"]:
        lines += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    lines += ["## Files", "", *[f"- `{p.name}`" for p in files], ""]
    path.write_text("\n".join(lines))
    return path


def _plots(out: Path, runs: list[dict[str, Any]], cases: list[dict[str, Any]]) -> list[Path]:
    """throughput.png, latency_cdf.png, resources.png: one panel per comparison, one line per adapter
    (the median repetition of each case by throughput)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def representative(key: str) -> dict[str, Any] | None:
        rs = [r for r in runs if r["case_key"] == key and r["status"] == "completed" and r["metrics"]]
        if not rs:
            return None
        rs.sort(key=lambda r: r["metrics"].get("throughput") or 0)
        return rs[len(rs) // 2]

    fams: dict[str, list[str]] = defaultdict(list)
    for c in cases:
        if c["recording"]:
            fams[c["family"]].append(c["case_key"])
    fam_names = sorted(fams)
    files: list[Path] = []
    if not fam_names:
        return files
    ncols = min(2, len(fam_names))
    nrows = math.ceil(len(fam_names) / ncols)

    def grid(title: str) -> tuple[Any, list[Any]]:
        fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 3.6 * nrows), squeeze=False)
        fig.suptitle(title)
        flat = [a for row in axes for a in row]
        for a in flat[len(fam_names) :]:
            a.axis("off")
        return fig, flat

    fig, axes = grid("Throughput over time (completions per second, from the first start)")
    for ax, fam in zip(axes, fam_names, strict=False):
        for key in fams[fam]:
            r = representative(key)
            s = (r or {}).get("metrics", {}).get("throughput_series") if r else None
            if s and s["t"]:
                ax.step(s["t"], s["jobs_per_second"], where="post", label=_who(key))
        ax.set_title(fam, fontsize=8)
        ax.set_xlabel("s")
        ax.set_ylabel("jobs/s")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "throughput.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    files.append(p)

    fig, axes = grid("End-to-end latency CDF (ms, log scale)")
    for ax, fam in zip(axes, fam_names, strict=False):
        for key in fams[fam]:
            r = representative(key)
            pts = ((r or {}).get("metrics", {}).get("latency_cdf") or {}).get("end_to_end") if r else None
            if pts:
                ax.plot([max(p[0], 1e-3) for p in pts], [p[1] for p in pts], label=_who(key))
        ax.set_xscale("log")
        ax.set_title(fam, fontsize=8)
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "latency_cdf.png"
    fig.savefig(p, dpi=90)
    plt.close(fig)
    files.append(p)

    # CPU seconds and peak memory per service, per case (medians over repetitions).
    keys = [c["case_key"] for c in cases if c["recording"] and c["scenario"] != "fault"]
    services = sorted({s for r in runs if r["metrics"] for s in (r["metrics"].get("resources") or {})})
    if keys and services:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, max(3.5, 0.35 * len(keys) + 1.5)))
        fig.suptitle("CPU seconds and peak memory per service (median over repetitions)")
        import numpy as np

        y = np.arange(len(keys))
        h = 0.8 / len(services)
        for i, svc in enumerate(services):
            cpu, mem = [], []
            for k in keys:
                rs = [r for r in runs if r["case_key"] == k and r["status"] == "completed" and r["metrics"]]
                res = [(r["metrics"].get("resources") or {}).get(svc) for r in rs]
                cpu.append(statistics.median([x["cpu_s"] for x in res if x]) or 0)
                mem.append(statistics.median([x["mem_mb_peak"] for x in res if x]) or 0)
            ax1.barh(y + i * h, cpu, h, label=svc)
            ax2.barh(y + i * h, mem, h, label=svc)
        for ax, label in ((ax1, "CPU s"), (ax2, "MB (PSS)")):
            ax.set_yticks(y + 0.4 - h / 2)
            ax.set_yticklabels([k[:70] for k in keys], fontsize=6)
            ax.set_xlabel(label)
            ax.invert_yaxis()
        ax2.set_yticklabels([])
        ax1.legend(fontsize=7)
        fig.tight_layout()
        p = out / "resources.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append(p)
    return files
