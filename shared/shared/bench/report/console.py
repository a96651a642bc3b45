"""An experiment's report on the terminal: its headline, the main figures of each comparison with their
intervals, and where the files are; what `make bench` and `python -m shared.bench report` print at the end.
It reads the report folder's `results.json` (`files.write`), so it shows what the files say."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def print_summary(out: Path) -> None:
    """The headline figures of a report folder, and where the rest is."""
    data = json.loads((out / "results.json").read_text())
    print()
    h = data.get("headline") or {}
    for x in h.get("significant") or []:
        print(f"* {x.replace('**', '').replace('`', '')}")
    for x in h.get("sweep") or []:
        print(f"* {x.replace('**', '').replace('`', '')}")
    if h.get("no_clear_difference"):
        print(f"* no clear difference: {'; '.join(h['no_clear_difference'])}")
    print()
    for fam, comp in sorted(data["comparisons"].items()):
        print(fam)
        for row in comp["rows"]:
            if row["figure"] not in ("throughput", "e2e_p50_ms", "e2e_p99_ms"):
                continue
            cells = ", ".join(
                f"{who} {r['median']:.1f} [{r['ci_low']:.1f}-{r['ci_high']:.1f}]"
                for who, r in row["results"].items()
                if r["median"] is not None
            )
            print(f"  {row['figure']:<11} {cells}  -> {row['winner'] or row['verdict']}")
    calib = data["calibration"]["median_jobs_per_second"]
    if calib:
        print(f"raw SQL ceiling: {calib:.0f} jobs/s")
    for o in data["recording_overhead"]:
        interval = f" [{o['ci_low']}-{o['ci_high']}]" if o.get("ci_low") is not None else ""
        print(
            f"recording overhead ({o['case_key']}): {o['overhead_percent']}%{interval} "
            f"(median of {o['pairs']} side-by-side pairs)"
        )
    for f in data["faults"]:
        a = f.get("audit") or {}
        print(
            f"fault {f['case_key']}: status {f['status']}, lost {a.get('lost')}, duplicates {a.get('duplicates')}, "
            f"redelivered {a.get('redelivered')}"
        )
    for who, f in sorted((data.get("fleets") or {}).items()):
        hosts = ", ".join(f"{h} ({v['slots']} slots)" for h, v in f["hosts"].items())
        print(f"fleet {who}: {f['workers']} workers, {f['slots']} slots on {hosts}")
    for n in data["notes"]:
        print(f"note: {n}")
    print(f"\nreport: {out}/summary.md (results.json, results.csv, *.png)")
    sys.stdout.flush()
