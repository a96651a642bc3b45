"""`python -m shared.bench queue --adapter NAME`: one queue's own figures, each beside the raw ceiling of
the same run (`make bench-pgqueue`, `make bench-celery`; docs/benchmark.md, "One queue's figures").

For each of the adapter's variants (Celery: brokers x configurations x pools), interleaved over
`--repeat` rounds, in one experiment of the same executor as `make bench`:

- **drain**: `--jobs` no-op jobs enqueued in bulk (the bulk enqueue rate), then fresh workers start and
  drain them: first start to last finish (start-up excluded, reported apart), worker CPU and peak memory;
- **one by one**: `--one-by-one-jobs` enqueued one per transaction or publish (the one-by-one rate),
  then drained by fresh workers;
- **latency**: open-loop arrivals at `--rate` for `--latency-seconds`, queue wait p50 to p99.9;
- **large**: `--large` jobs enqueued in bulk and drained, once: the total time.

`--no-record` runs every case with the recorder off (the worker writes no job records), for an adapter
that tells the end of a run and the drain's span from its own tables (`Adapter.counts_completions`,
`Adapter.drain_span`): figures to set beside peers that record less. The drain is then timed from the
queue's first claim to its last completion (database clock), and there is no latency run (queue wait is
read from the records). The output and the JSON say which.

Each variant's broker database is its own (the SQL broker's tables start fresh). Runs on `DATABASE_URL`
when set, else on an embedded PostgreSQL it starts and removes. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from shared.bench import adapters, spec, stats
from shared.bench.usage import UsageError, add_workloads_argument, positive


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapter", required=True, choices=adapters.NAMES, help="the queue to measure")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the median is quoted")
    p.add_argument("--jobs", type=int, default=None, help="jobs of the drain runs (default: the adapter's)")
    p.add_argument("--one-by-one-jobs", type=int, default=None, help="jobs of the one-by-one runs (0: none)")
    p.add_argument("--rate", type=float, default=200.0, help="jobs/s of the latency run")
    p.add_argument("--latency-seconds", type=float, default=None, help="seconds of the latency run (0: none)")
    p.add_argument("--large", "--million", dest="large", type=int, default=None, help="jobs of the large run")
    p.add_argument(
        "--skip-large", "--skip-million", dest="skip_large", action="store_true", help="no large run"
    )
    add_workloads_argument(p)
    p.add_argument(
        "--no-record",
        action="store_true",
        help="run with the recorder off (no job records: no latency run; the drain timed by the queue's own table)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # Every adapter's own options; each reads only its own.
    for adapter in adapters.REGISTRY.values():
        group = p.add_argument_group(f"{adapter.name} options")
        adapter.add_queue_arguments(group)  # type: ignore[arg-type]


def sizes(args: argparse.Namespace) -> dict[str, float]:
    """The run sizes: the adapter's defaults, overridden by the options given."""
    out = dict(adapters.get(args.adapter).queue_defaults)
    for name in ("jobs", "one_by_one_jobs", "latency_seconds", "large"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    if args.skip_large:
        out["large"] = 0
    positive(repeat=args.repeat, jobs=out["jobs"], rate=args.rate)
    if min(out.values()) < 0:
        raise UsageError("sizes must not be negative")
    return out


def build_spec(args: argparse.Namespace) -> tuple[spec.Spec, dict[str, str]]:
    """The experiment the options describe: per variant a gated bulk drain, a gated one-by-one drain, a
    latency run and one large run; and the part each case key plays."""
    adapter = adapters.get(args.adapter)
    n = sizes(args)
    if args.no_record:
        if not (adapter.counts_completions and adapter.times_drains):
            raise UsageError(
                f"{adapter.name} cannot run the queue command with the recorder off: its own tables do not tell "
                "when its jobs started and finished; `make bench ARGS='--parts overhead'` measures its recording "
                "pair by wall time"
            )
        n["latency_seconds"] = 0  # queue wait is read from the records
    cases: list[dict[str, Any]] = []
    parts: list[str] = []
    for options, processes, slots in adapter.queue_variants(args):
        base = {
            "adapter": adapter.name,
            "options": options,
            "processes": processes,
            "slots": slots,
            "recording": not args.no_record,
        }
        gated = {**base, "workers_start": "after_enqueue"}
        cases.append({**gated, "jobs": int(n["jobs"]), "scheduling": "bulk"})
        parts.append("drain")
        if n["one_by_one_jobs"]:
            cases.append({**gated, "jobs": int(n["one_by_one_jobs"]), "scheduling": "one_by_one"})
            parts.append("one_by_one")
        if n["latency_seconds"]:
            jobs = max(1, int(args.rate * n["latency_seconds"]))
            cases.append({**base, "scenario": "steady", "rate": args.rate, "jobs": jobs})
            parts.append("latency")
        if n["large"]:
            cases.append({**gated, "jobs": int(n["large"]), "scheduling": "bulk", "repetitions": 1})
            parts.append("large")
    the_spec = spec.validate_spec({"cases": cases, "repetitions": args.repeat})
    return the_spec, {c.key: part for c, part in zip(the_spec.cases, parts, strict=True)}


def run(args: argparse.Namespace) -> int:
    from shared.bench import cli

    adapter = adapters.get(args.adapter)
    the_spec, parts = build_spec(args)
    os.environ.update(adapter.queue_env(args))
    cli.settings_without_database()
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        return cli.run_experiment(
            the_spec,
            notes=[],
            output=Path(tmp) / "report",
            progress=not args.no_progress,
            calibrate=True,
            stall_seconds=None,
            print_summary=lambda out: print_figures(out, args, parts),
            isolate_brokers=True,
            data_dir=Path(tmp) / "pg",
            keep=False,
        )


def figures(results: dict[str, Any], parts: dict[str, str]) -> dict[str, Any]:
    """Per variant: the medians of each part and their ratios to the raw ceiling of the same run."""
    rounds = results["calibration"]["rounds"]
    raw = {
        k: stats.median([r[k] for r in rounds if r.get(k) is not None])
        for k in (
            "drain",
            "copy",
            "insert",
            "notify_p50_ms",
            "notify_p99_ms",
            "pickup_p50_ms",
            "pickup_p99_ms",
        )
    }
    out: dict[str, Any] = {
        "raw": raw,
        "recording": all(c["recording"] for c in results["cases"]),
        "variants": {},
    }
    for case in results["cases"]:
        est = case["estimates"]
        v = out["variants"].setdefault(case["who"], {"slot_mapping": case["slot_mapping"]})

        def med(name: str, est: dict[str, Any] = est) -> float | None:
            return (est.get(name) or {}).get("median")

        part = parts.get(case["case_key"])
        if part == "latency":
            v["latency"] = {p: med(f"wait_{p}_ms") for p in ("p50", "p95", "p99", "p99.9")}
            v["latency"].update(end_to_end_p99=med("e2e_p99_ms"), jobs=case["job_count"])
        elif part == "one_by_one":
            v["one_by_one_enqueue"] = med("enqueue_rate")
        elif part == "drain":
            v["bulk_enqueue"] = med("enqueue_rate")
            v["drain"] = {
                "jobs": case["job_count"],
                "jobs_per_s": med("throughput"),
                "seconds": med("drain_seconds"),
                "startup_s": med("worker_startup_s"),
                "cpu_s": med("worker_cpu_s"),
                "peak_pss_mb": med("worker_mem_mb_peak"),
            }
        elif part == "large":
            v["large"] = _large(case)
    for v in out["variants"].values():
        drain = (v.get("drain") or {}).get("jobs_per_s")
        v["ratios"] = {
            "drain_vs_raw_drain": _ratio(drain, raw["drain"]),
            "bulk_vs_raw_copy": _ratio(v.get("bulk_enqueue"), raw["copy"]),
            "one_by_one_vs_raw_insert": _ratio(v.get("one_by_one_enqueue"), raw["insert"]),
        }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _large(case: dict[str, Any]) -> dict[str, Any]:
    rep = case["repetitions"][0]
    enqueue = rep.get("enqueue_seconds")
    return {
        "jobs": case["job_count"],
        "enqueue_s": enqueue,
        "startup_s": rep.get("worker_startup_s"),
        "drain_s": rep.get("drain_seconds"),
        "total_s": sum(x for x in (enqueue, rep.get("worker_startup_s"), rep.get("drain_seconds")) if x),
        "cpu_s": rep.get("worker_cpu_s"),
        "peak_pss_mb": rep.get("worker_mem_mb_peak"),
    }


def _f(x: float | None, fmt: str = ",.0f") -> str:
    return "–" if x is None else format(x, fmt)


def _p(x: float | None) -> str:
    """A latency percentile, or why it is not reported (`stats.MIN_TAIL`)."""
    return stats.N_TOO_SMALL if x is None else format(x, ".2f")


def print_figures(out: Path, args: argparse.Namespace, parts: dict[str, str]) -> None:
    """The figures as a Markdown table per variant, each with its ratio to the raw ceiling."""
    results = json.loads((out / "results.json").read_text())
    fig = figures(results, parts)
    raw = fig["raw"]
    print()
    print(
        "recorder: on (every job's start and finish recorded, as `make bench` runs)"
        if not args.no_record
        else "recorder: OFF (--no-record: no job records, no latency run; drain = first claim to last "
        "completion, database clock)"
    )
    print(
        f"raw ceiling (median of {args.repeat} rounds): drain {_f(raw['drain'])}/s (claim 100 + complete), "
        f"COPY {_f(raw['copy'])}/s, single INSERT {_f(raw['insert'])}/s, NOTIFY round trip "
        f"p50 {_f(raw['notify_p50_ms'], '.2f')} ms, p99 {_f(raw['notify_p99_ms'], '.2f')} ms, INSERT+NOTIFY to "
        f"claim at 200/s p50 {_f(raw['pickup_p50_ms'], '.2f')} ms, p99 {_f(raw['pickup_p99_ms'], '.2f')} ms"
    )
    for who, v in fig["variants"].items():
        r, d, lat = v["ratios"], v.get("drain") or {}, v.get("latency") or {}
        print(f"\n{who} ({v['slot_mapping']})\n")
        print("| figure | value | raw SQL | ratio |")
        print("|---|---|---|---|")
        print(
            f"| drain of {_f(d.get('jobs'))} noop jobs, jobs/s | {_f(d.get('jobs_per_s'))} | {_f(raw['drain'])} | {_f(r['drain_vs_raw_drain'], '.2f')} |"
        )
        print(
            f"| bulk enqueue, jobs/s | {_f(v.get('bulk_enqueue'))} | {_f(raw['copy'])} | {_f(r['bulk_vs_raw_copy'], '.2f')} |"
        )
        print(
            f"| one-by-one enqueue, jobs/s | {_f(v.get('one_by_one_enqueue'))} | {_f(raw['insert'])} | {_f(r['one_by_one_vs_raw_insert'], '.2f')} |"
        )
        if lat:
            print(
                f"| queue wait at {args.rate:g} jobs/s, p50 / p99 / p99.9 ms | {_p(lat['p50'])} / {_p(lat['p99'])} / "
                f"{_p(lat['p99.9'])} | {_f(raw['notify_p50_ms'], '.2f')} / {_f(raw['notify_p99_ms'], '.2f')} (NOTIFY); "
                f"{_f(raw['pickup_p50_ms'], '.2f')} / {_f(raw['pickup_p99_ms'], '.2f')} (INSERT+NOTIFY to claim) | |"
            )
        print(
            f"| worker start-up s, CPU s, peak PSS MB (drain) | {_f(d.get('startup_s'), '.2f')}, {_f(d.get('cpu_s'), '.1f')}, {_f(d.get('peak_pss_mb'))} | | |"
        )
        if v.get("large"):
            lg = v["large"]
            print(
                f"| {lg['jobs']:,} jobs bulk + drain, total s | {_f(lg['total_s'], '.1f')} (enqueue {_f(lg['enqueue_s'], '.1f')}, "
                f"start-up {_f(lg['startup_s'], '.1f')}, drain {_f(lg['drain_s'], '.1f')}) | | |"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"environment": results["environment"], **fig}, indent=2, default=str)
        )
        print(f"\nfigures written to {args.json}")
    flags = " --no-record" if args.no_record else ""
    print(f"\ncommand: python -m shared.bench queue --adapter {args.adapter}{flags} (repeat {args.repeat})")
