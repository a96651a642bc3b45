"""The PNG plots of an experiment: throughput over time, the latency CDF, CPU and memory per service."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from shared.bench import stats
from shared.bench.spec import who_of


def write(out: Path, runs: list[dict[str, Any]], cases: list[dict[str, Any]]) -> list[Path]:
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
        if c["recording"] and c["scenario"] != "sweep":
            fams[c["family"]].append(c["case_key"])
    fam_names = sorted(fams)
    files: list[Path] = []
    if not fam_names:
        return files
    ncols = min(2, len(fam_names))
    nrows = math.ceil(len(fam_names) / ncols)

    def panels(title: str, name: str, xlabel: str, ylabel: str, draw: Any, log_x: bool = False) -> None:
        """One figure of one panel per comparison; `draw(ax, run, label)` draws a case's line."""
        fig, grid = plt.subplots(nrows, ncols, figsize=(7 * ncols, 3.6 * nrows), squeeze=False)
        fig.suptitle(title)
        axes = [a for row in grid for a in row]
        for a in axes[len(fam_names) :]:
            a.axis("off")
        for ax, fam in zip(axes, fam_names, strict=False):
            for key in fams[fam]:
                r = representative(key)
                if r is not None:
                    draw(ax, r["metrics"], who_of(key))
            if log_x:
                ax.set_xscale("log")
            ax.set_title(fam, fontsize=8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path)

    def throughput(ax: Any, metrics: dict[str, Any], label: str) -> None:
        s = metrics.get("throughput_series")
        if s and s["t"]:
            ax.step(s["t"], s["jobs_per_second"], where="post", label=label)

    def latency_cdf(ax: Any, metrics: dict[str, Any], label: str) -> None:
        pts = (metrics.get("latency_cdf") or {}).get("end_to_end")
        if pts:
            ax.plot([max(p[0], 1e-3) for p in pts], [p[1] for p in pts], label=label)

    panels(
        "Throughput over time (completions per second, from the first start)",
        "throughput.png",
        "s",
        "jobs/s",
        throughput,
    )
    panels("End-to-end latency CDF (ms, log scale)", "latency_cdf.png", "ms", "fraction", latency_cdf, True)

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
                cpu.append(stats.median([x["cpu_s"] for x in res if x]) or 0)
                mem.append(stats.median([x["mem_mb_peak"] for x in res if x]) or 0)
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


def sweep(out: Path, lines: list[dict[str, Any]]) -> list[Path]:
    """sweep.png: each line's bound percentile (p99, or p95 in a short sweep) from the scheduled arrival
    against the offered rate, one line per variant, the bound as a dashed line; a saturated rate is a cross,
    a rate with too few samples for that percentile is left out."""
    if not lines:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for line in lines:
        pct = line.get("percentile") or "p99"
        pts = [p for p in line["points"] if p[f"{pct}_ms"] is not None]
        if not pts:
            continue
        (handle,) = ax.plot(
            [p["rate"] for p in pts], [p[f"{pct}_ms"] for p in pts], marker="o", label=line["who"]
        )
        bad = [p for p in pts if p["status"] != "sustained"]
        if bad:
            ax.scatter(
                [p["rate"] for p in bad],
                [p[f"{pct}_ms"] for p in bad],
                marker="x",
                s=80,
                color=handle.get_color(),
            )
    bound = lines[0]["bound_ms"]
    ax.axhline(bound, linestyle="--", color="grey", label=f"bound {bound:g} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (jobs/s, open loop)")
    pcts = "/".join(sorted({line.get("percentile") or "p99" for line in lines}, reverse=True))
    ax.set_ylabel(f"end-to-end {pcts} (ms)")
    ax.set_title(f"Load sweep: {pcts} against offered load (x: saturated)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "sweep.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [path]
