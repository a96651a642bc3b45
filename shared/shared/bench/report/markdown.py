"""`summary.md`: the experiment's figures side by side, each comparison's verdict, calibration, the
recording overhead, fault runs and the audit, for a person to read."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from shared.bench import adapters, stats, terms
from shared.bench.report.figures import SUMMARY_FIGURES
from shared.bench.spec import who_of


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


def _cell(est: dict[str, Any] | None) -> str:
    if not est:
        return "–"
    return f"{_fmt(est['median'])} [{_fmt(est['ci_low'])}–{_fmt(est['ci_high'])}]"


def write(
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
        *_headline(result.get("headline") or {}),
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
    if result.get("fleets"):
        lines += [
            "## The fleet (attached mode, from the workers' heartbeats)",
            "",
            f"The executor ran on {env.get('host')} ({env.get('cpu_count')} CPUs); the jobs ran on the "
            "workers that announced each run's queue:",
            "",
            "| contender | workers | slots | host | its workers | its slots | CPUs | memory (MB) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for who, f in sorted(result["fleets"].items()):
            for host, h in f["hosts"].items():
                lines.append(
                    f"| {who} | {f['workers']} | {f['slots']} | {host} | {h['workers']} | {h['slots']} | "
                    f"{h.get('cpus') or '–'} | {h.get('memory_mb') or '–'} |"
                )
        lines += [
            "",
            "Equal total slots: " + ("yes." if result.get("fleets_equal") else "**no** (see the notes)."),
            "",
        ]
    lines += _durability(runs)
    spec_data = e.get("spec") or {}
    lines += ["## Sizes", "", f"- repetitions per case: {spec_data.get('repetitions')}"]
    for c in cases:
        reps = len(c["repetitions"])
        own = [r["metrics"] or {} for r in runs if r["case_key"] == c["case_key"]]
        sizing = next((m["sizing"] for m in own if m.get("sizing")), None)
        sized = f"; sized from a probe of {sizing['probe_jobs']} jobs: {sizing['why']}" if sizing else ""
        gates = [
            m["gate"] for m in own if (m.get("gate") or {}).get("jobs_started_before_enqueue_end") is not None
        ]
        gate = ""
        if gates and c["scenario"] == "drain":
            how = gates[0].get("workers_start")
            early = sum(g["jobs_started_before_enqueue_end"] for g in gates)
            gate = f"; workers {how}, {early} job(s) started before the enqueue ended"
        lines.append(
            f"- `{c['case_key']}`: {c['job_count']} jobs, {reps} run(s); {c['slot_mapping'] or ''}{sized}{gate}"
        )
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
        copy = stats.median([r["copy"] for r in rounds if isinstance(r.get("copy"), int | float)])
        insert = stats.median([r["insert"] for r in rounds if isinstance(r.get("insert"), int | float)])
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
        whos.sort(key=lambda w: (_registry_order(w), w))
        lines += [f"## {fam}", "", "| figure | " + " | ".join(whos) + " | winner (ratio) |"]
        lines.append("|---|" + "---|" * len(whos) + "---|")
        for row in comp["rows"]:
            if row["figure"] not in SUMMARY_FIGURES:
                continue
            cells = []
            for w in whos:
                r = row["results"].get(w)
                cells.append(
                    r["note"]
                    if r and r.get("note")
                    else _cell({"median": r["median"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
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
    if result.get("sweep"):
        lines += _sweep(result["sweep"])
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
        redelivery = {}
        for f in faults:
            a = f.get("audit") or {}
            fault = f.get("fault") or {}
            if fault.get("redelivery"):
                redelivery[f["who"]] = fault["redelivery"]
            when = (
                f", struck after {fault['jobs_started_before']} started, {fault['jobs_finished_before']} finished"
                if "jobs_started_before" in fault
                else ""
            )
            if fault.get("victim_held_job") is not None:
                when += ", the victim held a job" if fault["victim_held_job"] else ", no process held a job"
            if fault.get("last_finish_after_s") is not None:
                when += f"; last job finished {fault['last_finish_after_s']:.1f} s after the kill"
            lines.append(
                f"| `{f['case_key']}` | {f['status']} | {fault.get('kind', '–')} "
                f"{'pid ' + str(fault.get('pid')) if fault.get('pid') else ''}{when} | {a.get('enqueued', '–')} | "
                f"{a.get('completed', '–')} | {a.get('lost', '–')} | {a.get('duplicates', '–')} | "
                f"{a.get('redelivered', '–')} | {a.get('retried', '–')} |"
            )
        lines.append("")
        lines += [f"- `{who}`: {text}." for who, text in redelivery.items()]
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


def _registry_order(who: str) -> int:
    """A contender's column: the registry's order of adapters (`adapters.NAMES`); a variant's label starts
    with its adapter's name (`Adapter.label`)."""
    name = who.split(".", 1)[0]
    return adapters.NAMES.index(name) if name in adapters.NAMES else len(adapters.NAMES)


def _sweep(sweeps: list[dict[str, Any]]) -> list[str]:
    """The load sweep: each variant's rates, their latencies, and its highest rate under the bound."""
    bound = sweeps[0]["bound_ms"]
    pcts = sorted({line["percentile"] for line in sweeps}, reverse=True)  # "p99" before "p95"
    pct = "/".join(pcts)
    out = [
        "## Load sweep: latency against offered load",
        "",
        "Open-loop arrivals, one job per arrival, the same rates for every adapter; latency from the scheduled "
        "arrival. The jobs leave from K sender processes, each with its own connection (`senders`: K, and the "
        "p99 of how late the jobs left). "
        f"A rate is *saturated* (`sender`: the harness fell {terms.SWEEP_MAX_LAG_SECONDS:g} s behind its "
        f"schedule and stopped; `queue`: jobs finished at under {terms.SWEEP_MIN_DELIVERED:.0%} of the offered rate) "
        f"and stops the higher rates. Verdict: the highest rate sustained with {pct} under {_fmt(bound)} ms "
        f"(a percentile with fewer than 100 samples beyond it does not count{_short_sweep(pcts)}). "
        "Chart: `sweep.png`.",
        "",
        "| variant | highest rate under the bound | rate: p50 / p95 / p99 / p99.9 ms (status) |",
        "|---|---|---|",
    ]
    for line in sweeps:
        best = line["highest_rate_under_bound"]
        cells = "; ".join(
            f"{_fmt(p['rate'])}/s: "
            + " / ".join(
                stats.N_TOO_SMALL if p[k] is None else _fmt(p[k])
                for k in ("p50_ms", "p95_ms", "p99_ms", "p99.9_ms")
            )
            + f" ({p['status']}{_senders(p)})"
            if p["status"] not in ("cancelled", "failed")
            else f"{_fmt(p['rate'])}/s: not run"
            for p in line["points"]
        )
        out.append(
            f"| `{line['line']}` | {'**' + _fmt(best) + ' jobs/s**' if best else 'none of the rates'} "
            f"({line['percentile']} < {line['bound_ms']:g} ms) | {cells} |"
        )
    out.append("")
    return out


def _short_sweep(pcts: list[str]) -> str:
    """Why a sweep's verdict bounds a percentile other than p99: its jobs per rate carry none."""
    short = [p for p in pcts if p != "p99"]
    if not short:
        return ""
    return (
        f"; where the jobs per rate are too few for a p99, the verdict bounds the {'/'.join(short)}: `--full` or "
        "`--sweep-jobs 10000` bounds the p99"
    )


def _senders(point: dict[str, Any]) -> str:
    """`, senders K, lag p99 X ms` for a sweep point that recorded its open-loop sender."""
    if not point.get("sender_processes"):
        return ""
    lag = point.get("sender_lag_p99_ms")
    return f", senders {point['sender_processes']}" + (f", lag p99 {_fmt(lag)} ms" if lag is not None else "")


def _durability(runs: list[dict[str, Any]]) -> list[str]:
    """What each variant promises about an acknowledged enqueue, as its servers reported it."""
    seen: dict[str, dict[str, Any]] = {}
    for r in runs:
        d = (r.get("environment") or {}).get("durability")
        who = who_of(r["case_key"])
        if d and who not in seen:
            seen[who] = d
    if not seen:
        return []
    out = [
        "## Durability: what each side promises (read from the servers)",
        "",
        "| variant | server | settings | promise |",
        "|---|---|---|---|",
    ]
    for who in sorted(seen, key=lambda w: (_registry_order(w), w)):
        d = seen[who]
        settings = ", ".join(f"{k}={v!r}" for k, v in d.items() if k not in ("server", "promise"))
        out.append(
            f"| `{who}` | {d.get('server', '–')} | {settings} | {d.get('promise', d.get('error', '–'))} |"
        )
    out.append("")
    return out


def _headline(h: dict[str, list[str]]) -> list[str]:
    """The verdicts first: who wins where, what shows no clear difference, the sweeps' rates."""
    if not any(h.values()):
        return []
    out = ["## Headline", ""]
    out += [f"- {x}" for x in h.get("significant") or []] or ["- No comparison shows a clear difference."]
    if h.get("no_clear_difference"):
        out += ["", "No clear difference (the intervals overlap):", ""]
        out += [f"- {x}" for x in h["no_clear_difference"]]
    if h.get("sweep"):
        out += ["", "Load sweep:", ""] + [f"- {x}" for x in h["sweep"]]
    return [*out, ""]
