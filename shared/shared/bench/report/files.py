"""An experiment's report files: `results.json`, `results.csv`, `summary.md` and the PNG plots; `store_files`
keeps them in the database (`experiment_files`), where the web serves them after any deploy."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg

from shared.bench import fleet, stats, store
from shared.bench.report import figures, markdown, plots
from shared.bench.report.figures import FIGURES, RUN_COLUMNS


def write(
    conn: psycopg.Connection, experiment_id: int, out: Path, *, notes: list[str] | None = None
) -> list[Path]:
    """Write results.json, results.csv, summary.md and the PNG plots of an experiment into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    exp = store.experiment(conn, experiment_id) or {}
    runs = store.runs(conn, experiment_id=experiment_id)
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_case[r["case_key"]].append(r)
    cases = [figures.case_from_runs(k, rs) for k, rs in by_case.items()]
    comparisons = figures.comparisons(cases)
    # Each run carries its round's calibration.
    calibration: dict[int, dict[str, Any]] = {}
    for r in runs:
        round_calibration = (r["metrics"] or {}).get("calibration")
        if round_calibration and r["repetition"] not in calibration:
            calibration[r["repetition"]] = round_calibration
    calib = [{"round": k, **v} for k, v in sorted(calibration.items())]
    ceiling = stats.median([c["jobs_per_second"] for c in calib if c.get("jobs_per_second")])
    overhead = figures.overhead(cases)
    sweeps = figures.sweep(runs)
    environment: dict[str, Any] = next((r["environment"] for r in runs if r["environment"]), {})
    fleets = fleet.of_runs(runs, lambda r: figures.run_view(r)["who"])
    fleet_check = fleet.check(fleets) if fleets else None
    if fleet_check and fleet_check not in (notes or []):
        notes = [*(notes or []), fleet_check]

    def iso(name: str) -> str | None:
        return exp[name].isoformat() if exp.get(name) else None

    result = {
        "experiment": {
            "id": experiment_id,
            "status": exp.get("status"),
            "mode": exp.get("mode"),
            "created_at": iso("created_at"),
            "started_at": iso("started_at"),
            "finished_at": iso("finished_at"),
            "spec": exp.get("spec") or {},
        },
        "environment": {k: v for k, v in environment.items() if k != "configuration"},
        "notes": notes or [],
        # attached mode: each contender's workers as their heartbeats told (hosts, slots, CPUs, memory)
        "fleets": fleets,
        "fleets_equal": (fleet_check is None) if fleets else None,
        "calibration": {"rounds": calib, "median_jobs_per_second": ceiling},
        "recording_overhead": overhead,
        "sweep": sweeps,
        "headline": figures.headline(comparisons, sweeps),
        "cases": cases,
        "comparisons": comparisons,
        "faults": [figures.run_view(r) for r in runs if r["scenario"] == "fault"],
        "runs": [figures.run_view(r) for r in runs],
    }
    files = []
    p = out / "results.json"
    p.write_text(json.dumps(result, indent=2, default=str))
    files.append(p)
    files.append(_write_csv(out / "results.csv", runs))
    files.extend(plots.write(out, runs, cases))
    files.extend(plots.sweep(out, sweeps))
    files.append(markdown.write(out / "summary.md", result, cases, comparisons, ceiling, runs, files))
    return files


MEDIA_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
}


def store_files(conn: psycopg.Connection, experiment_id: int, files: list[Path]) -> None:
    """Keep the report's files in `experiment_files` (replacing earlier ones of the same name)."""
    for p in files:
        conn.execute(
            store.q("experiment_file_put"),
            {
                "id": experiment_id,
                "name": p.name,
                "media_type": MEDIA_TYPES.get(p.suffix, "application/octet-stream"),
                "content": p.read_bytes(),
            },
        )


def _write_csv(path: Path, runs: list[dict[str, Any]]) -> Path:
    fig_names = [f[0] for f in FIGURES]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*RUN_COLUMNS, "slot_mapping", *fig_names])
        for r in runs:
            v = figures.run_view(r)
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
