"""`make bench` / `python -m shared.bench compare`: every contender side by side, in one experiment.

The default matrix (docs/benchmark.md, "The default matrix") measures every registered adapter's default
variants that can run here (a broker that does not answer is left out, and the report says so), in
managed mode, on an embedded PostgreSQL of its own unless `DATABASE_URL` is set. Bad input gets one line
and exit code 2 before anything starts.

`--attached` measures the workers that already run (`make dev`, or a deployed fleet: docs/deploy.md) on
their database (`DATABASE_URL`, else the one the services find): the variants with a live worker, without
the fault and recording-off parts, which attached mode cannot run; each run records the fleet that
announced its queue, and the report says whether the contenders' fleets had equal slots.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared import settings, workloads
from shared.bench import adapters, openloop, spec, terms
from shared.bench.usage import UsageError, add_workloads_argument, choices, positive

PARTS = ("noop-one", "noop-bulk", "sleep", "sweep", "steady", "overlap", "fault", "overhead", "workloads")
DEFAULT_PARTS = ("noop-one", "noop-bulk", "sleep", "sweep", "fault", "overhead", "workloads")
"""`steady` (one fixed rate) and `overlap` (a drain whose workers consume while it is enqueued) run when
asked for: the sweep supersedes the one, and the other is not a drain (docs/benchmark.md). `workloads` has
cases only when modules of your own are given (--workloads)."""
ATTACHED_PARTS = ("noop-one", "noop-bulk", "sleep", "sweep", "steady", "overlap", "workloads")
"""Attached mode injects no fault and cannot turn the workers' recording off. Your own workloads run on
live workers that announce their module (started with the same `BENCH_WORKLOADS`)."""
SWEEP_RATES = "300,1000"
FULL_SWEEP_RATES = "100,300,1000,3000,10000"
SWEEP_JOBS = 2_000
FULL_SWEEP_JOBS = 10_000
"""The short sweep of the default matrix keeps within its 10 minutes: 2,000 jobs per rate carry a p95, and
its verdict bounds the p95; `--full`'s 10,000 carry the p99 (docs/benchmark.md, "The load sweep")."""
BROKERS = tuple(
    dict.fromkeys(
        c for a in adapters.REGISTRY.values() for o in a.options if o.name == "broker" for c in o.choices
    )
)
"""Every broker some adapter can run on (`--brokers` picks among them)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--adapters", default=",".join(adapters.NAMES), help=f"comma-separated: {', '.join(adapters.NAMES)}"
    )
    p.add_argument(
        "--brokers",
        default=None,
        help=f"brokers, comma-separated ({', '.join(BROKERS)}); default: every one that answers. "
        "A broker named here must answer.",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="add every configuration, the long sweep, the whole-worker kill and the PostgreSQL-restart fault",
    )
    p.add_argument(
        "--parts",
        default=None,
        help=f"which parts of the matrix: {', '.join(PARTS)} (default: {', '.join(DEFAULT_PARTS)}; "
        f"with --attached: those of them attached mode can run; steady and overlap only when named)",
    )
    p.add_argument(
        "--jobs", type=int, default=500, help="jobs of each noop drain's probe (and of an overlap)"
    )
    p.add_argument(
        "--min-seconds",
        type=float,
        default=2.0,
        help="each drain is sized from its probe to last about this long, for every adapter",
    )
    p.add_argument(
        "--attached",
        action="store_true",
        help="measure the workers that already run (make dev, a deployed fleet) instead of starting them",
    )
    p.add_argument(
        "--overhead-jobs",
        type=int,
        default=50_000,
        help="jobs per run of the recording on/off pair, at most (each adapter's own size may be smaller)",
    )
    p.add_argument("--sleep-jobs", type=int, default=300, help="jobs of each sleep drain's probe")
    p.add_argument("--sleep-ms", type=float, default=10.0, help="milliseconds each sleep job sleeps")
    add_workloads_argument(p)
    p.add_argument(
        "--workload-jobs",
        type=int,
        default=300,
        help="jobs per drain run of each of your own workloads (--workloads MODULES; docs/benchmark.md)",
    )
    p.add_argument("--slots", type=int, default=10, help="total worker slots per adapter (equal for all)")
    p.add_argument("--rate", type=float, default=200.0, help="steady scenario: arrivals per second")
    p.add_argument("--duration", type=float, default=3.0, help="steady scenario: seconds of arrivals")
    p.add_argument(
        "--sweep-rates",
        default=None,
        help=f"load sweep: offered rates in jobs/s, comma-separated, rising (default {SWEEP_RATES}; "
        f"--full: {FULL_SWEEP_RATES})",
    )
    p.add_argument(
        "--sweep-jobs",
        type=int,
        default=None,
        help=f"load sweep: jobs per rate (default {SWEEP_JOBS:,}, which carry a p95; --full: {FULL_SWEEP_JOBS:,}, "
        "which leave 100 samples beyond the p99)",
    )
    p.add_argument(
        "--p99-bound-ms",
        type=float,
        default=50.0,
        help="load sweep: the bound of its verdict, on the p99 (on the p95 when its jobs per rate carry no p99)",
    )
    p.add_argument(
        "--sender-processes",
        type=int,
        default=None,
        help=f"sweep and steady runs: processes that send the jobs, each with its own connection (default: one "
        f"per {openloop.PER_PROCESS_RATE:g} jobs/s of the rate, at most {openloop.MAX_PROCESSES}; also "
        f"{settings.ENV_SENDER_PROCESSES})",
    )
    p.add_argument("--fault-jobs", type=int, default=200, help="jobs per fault run (sleep jobs)")
    p.add_argument("--fault-ms", type=float, default=50.0, help="milliseconds each fault-run job sleeps")
    p.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="interleaved repetitions per case (3 keep the default matrix within 10 minutes; more narrow the intervals)",
    )
    p.add_argument("--spec", type=Path, default=None, help="a JSON spec file instead of the matrix options")
    p.add_argument(
        "--output", type=Path, default=None, help="report folder (default reports/<timestamp>-e<id>/)"
    )
    p.add_argument("--no-calibration", action="store_true", help="skip the raw SQL ceiling")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--stall-seconds",
        type=float,
        default=None,
        help="end a run when no job finished for this long (default 20, fault runs 30: pgqueue's rescue)",
    )


def check_args(args: argparse.Namespace) -> None:
    """Everything about the options that needs no server: raises `UsageError`."""
    senders = getattr(args, "sender_processes", None)
    if senders is not None and not 1 <= senders <= settings.MAX_SENDER_PROCESSES:
        raise UsageError(
            f"--sender-processes must be between 1 and {settings.MAX_SENDER_PROCESSES}, got {senders}"
        )
    settings.sender_processes()  # BENCH_SENDER_PROCESSES, checked before anything starts
    if args.spec is not None:
        return
    choices(args.adapters, adapters.NAMES, "adapter")
    parts = choices(args.parts, PARTS, "part") or []
    refused = [p for p in parts if p not in ATTACHED_PARTS]
    if getattr(args, "attached", False) and refused:
        raise UsageError(
            f"--attached cannot run the parts {', '.join(refused)}: attached mode injects no faults and "
            f"cannot turn recording off; use --parts from {', '.join(ATTACHED_PARTS)}"
        )
    choices(args.brokers, BROKERS, "broker")
    positive(
        jobs=args.jobs, sleep_jobs=args.sleep_jobs, workload_jobs=args.workload_jobs,
        overhead_jobs=args.overhead_jobs, fault_jobs=args.fault_jobs,
        rate=args.rate, duration=args.duration, repetitions=args.repetitions, min_seconds=args.min_seconds,
        sweep_jobs=sweep_jobs(args), p99_bound_ms=args.p99_bound_ms,
    )  # fmt: skip
    sweep_rates(args)
    if args.sleep_ms < 0 or args.fault_ms < 0:
        raise UsageError(
            f"--sleep-ms and --fault-ms must not be negative, got {args.sleep_ms} and {args.fault_ms}"
        )
    if args.stall_seconds is not None:
        positive(stall_seconds=args.stall_seconds)
    if args.slots < 2:
        raise UsageError(f"--slots must be at least 2 (pgqueue runs 2 processes), got {args.slots}")


def sweep_jobs(args: argparse.Namespace) -> int:
    """The sweep's jobs per rate: `--sweep-jobs`, else the short or the long sweep's."""
    if args.sweep_jobs is not None:
        return int(args.sweep_jobs)
    return FULL_SWEEP_JOBS if args.full else SWEEP_JOBS


def sweep_rates(args: argparse.Namespace) -> list[float]:
    """The sweep's rates, rising; `UsageError` for anything else."""
    raw = args.sweep_rates or (FULL_SWEEP_RATES if args.full else SWEEP_RATES)
    try:
        rates = [float(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--sweep-rates takes rates in jobs/s, comma-separated, got {raw!r}") from None
    if not rates or any(not 0 < r <= terms.MAX_RATE for r in rates) or rates != sorted(set(rates)):
        raise UsageError(
            f"--sweep-rates takes rising rates between 0 and {terms.MAX_RATE:g} jobs/s, got {raw!r}"
        )
    return rates


def default_matrix(
    *,
    variants: dict[str, list[dict[str, str]]],
    fault_variants: dict[str, list[dict[str, str]]],
    noop_jobs: int = 500,
    sleep_jobs: int = 300,
    sleep_ms: float = 10,
    slots: int = 10,
    steady_rate: float = 200,
    steady_seconds: float = 3,
    fault_jobs: int = 200,
    fault_ms: float = 50,
    repetitions: int = 3,
    restart_postgres: bool = False,
    overhead_jobs: int = 50_000,
    user_workloads: Sequence[str] = (),
    workload_jobs: int = 300,
    min_seconds: float | None = 2.0,
    sweep_rates: tuple[float, ...] = (300.0, 1000.0),
    sweep_jobs: int = SWEEP_JOBS,
    p99_bound_ms: float = 50.0,
    all_pairs: bool = True,
) -> dict[str, Any]:
    """The default matrix (docs/benchmark.md explains the sizes) as a spec dict whose cases carry their
    `part`: `variants` and `fault_variants` map each adapter to the variants it runs."""
    cases: list[dict[str, Any]] = []

    def layout(name: str) -> dict[str, int]:
        processes, per = adapters.get(name).layout(slots)
        return {"processes": processes, "slots": per}

    for name, vs in variants.items():
        for v in vs:
            base = {"adapter": name, "options": v, **layout(name)}
            # Drains: workers held while the batch is enqueued, each sized from a probe to last `min_seconds`.
            drain = {**base, "scenario": "drain", "workers_start": "held", "min_seconds": min_seconds}
            for mode in terms.SCHEDULING_MODES:
                part = "noop-one" if mode == "one_by_one" else "noop-bulk"
                cases.append({**drain, "jobs": noop_jobs, "scheduling": mode, "part": part})
            sleep = {"jobs": sleep_jobs, "workload": "sleep", "params": {"ms": sleep_ms}, "part": "sleep"}
            cases.append({**drain, **sleep})
            overlap = {"jobs": noop_jobs, "workers_start": "before_enqueue", "part": "overlap"}
            cases.append({**base, "scenario": "drain", "scheduling": "bulk", **overlap})
            steady = {"jobs": int(steady_rate * steady_seconds), "scenario": "steady", "rate": steady_rate}
            cases.append({**base, **steady, "scheduling": "one_by_one", "part": "steady"})
            for w in user_workloads:
                cases.append({**drain, "jobs": workload_jobs, "workload": w, "part": "workloads"})
            for rate in sweep_rates:
                sweep = {"jobs": sweep_jobs, "scenario": "sweep", "rate": rate, "p99_bound_ms": p99_bound_ms}
                cases.append({**base, **sweep, "scheduling": "one_by_one", "part": "sweep"})
    for name, vs in variants.items():
        adapter = adapters.get(name)
        if vs and adapter.counts_completions and (all_pairs or adapter.pair_by_default):
            # The recording overhead: a pair of noop drains, recording on and off, large enough that the
            # drain lasts long enough to measure (a 500-job drain ends in tens of milliseconds), and no
            # larger than the adapter's own size for its pace (some seconds, not minutes).
            # One pair per adapter, on its fastest variant (the largest pair): recording costs the same per
            # job everywhere, and shows most where the queue's own cost per job is least.
            v = max(vs, key=adapters.get(name).recording_pair_jobs)
            pair = {
                "adapter": name,
                "options": v,
                **layout(name),
                "jobs": min(overhead_jobs, adapters.get(name).recording_pair_jobs(v)),
                "part": "overhead",
            }
            cases += [pair, {**pair, "recording": False}]
    faults = ["kill_worker"] + (["kill_whole_worker", "restart_postgres"] if restart_postgres else [])
    for name, vs in fault_variants.items():
        for v, fault in ((v, f) for v in vs for f in faults):
            work = {"jobs": fault_jobs, "workload": "sleep", "params": {"ms": fault_ms}}
            cases.append(
                {
                    "adapter": name,
                    "options": v,
                    **layout(name),
                    **work,
                    "scenario": "fault",
                    "fault": fault,
                    "part": "fault",
                }
            )
    return {"cases": cases, "repetitions": repetitions}


def build_spec(
    args: argparse.Namespace, s: settings.Settings, live_workers: list[dict[str, Any]] | None = None
) -> tuple[spec.Spec, list[str]]:
    """The spec the options describe, with notes on what was left out; variants that cannot run here are
    left out of the default matrix, and refused when asked for by name. With `live_workers` (attached
    mode) a variant runs only where a live worker announces a queue for it."""
    notes: list[str] = []
    if args.spec is not None:
        try:
            data = json.loads(args.spec.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the spec file {args.spec}: {exc}") from None
        return spec.validate_spec(data), notes
    names = choices(args.adapters, adapters.NAMES, "adapter") or []
    default_parts = (
        [p for p in DEFAULT_PARTS if p in ATTACHED_PARTS]
        if getattr(args, "attached", False)
        else DEFAULT_PARTS
    )
    parts = set(choices(args.parts or ",".join(default_parts), PARTS, "part") or [])
    brokers = choices(args.brokers, BROKERS, "broker") or list(BROKERS)
    variants: dict[str, list[dict[str, str]]] = {}
    faults: dict[str, list[dict[str, str]]] = {}
    for name in names:
        adapter = adapters.get(name)
        usable = []
        for v in adapter.default_variants(brokers=brokers, full=args.full):
            why = adapter.unavailable(v, s)
            if why is None and live_workers is not None and adapter.attached_queue(live_workers, v) is None:
                why = f"no live {adapter.label(v)} worker announces itself in queue.workers"
            if why is None:
                usable.append(v)
            elif args.brokers is not None:
                raise UsageError(why)
            else:
                notes.append(f"{adapter.label(v)} skipped: {why}")
        variants[name] = usable
        faults[name] = [
            v
            for v in adapter.fault_variants(brokers=brokers, full=args.full)
            if adapter.unavailable(v, s) is None
        ]
    # Every adapter's recording pair with --full or when the part is asked for by name; the default runs
    # only the pairs the adapters mark `pair_by_default`.
    all_pairs = args.full or (args.parts is not None and "overhead" in parts)
    data = default_matrix(
        variants=variants,
        fault_variants=faults,
        noop_jobs=args.jobs,
        sleep_jobs=args.sleep_jobs,
        sleep_ms=args.sleep_ms,
        slots=args.slots,
        steady_rate=args.rate,
        steady_seconds=args.duration,
        fault_jobs=args.fault_jobs,
        fault_ms=args.fault_ms,
        repetitions=args.repetitions,
        restart_postgres=args.full,
        overhead_jobs=args.overhead_jobs,
        user_workloads=workloads.user_workloads(),
        workload_jobs=args.workload_jobs,
        min_seconds=args.min_seconds,
        sweep_rates=tuple(sweep_rates(args)),
        sweep_jobs=sweep_jobs(args),
        p99_bound_ms=args.p99_bound_ms,
        all_pairs=all_pairs,
    )
    if "overhead" in parts and not all_pairs:
        left = [n for n, vs in variants.items() if vs and not adapters.get(n).pair_by_default]
        if left:
            notes.append(
                f"the recording pairs of {', '.join(left)} are left out of the default matrix (it keeps within "
                "10 minutes); --full or --parts overhead runs them"
            )
    data["cases"] = [c for c in data["cases"] if c.pop("part") in parts]
    if not data["cases"]:
        raise UsageError("nothing to run: the chosen adapters and parts leave no case")
    data["notes"] = notes
    return spec.validate_spec(data), notes


def run(args: argparse.Namespace) -> int:
    """Check the options, start the database (attached: find the running workers' one), run the
    experiment, print its summary."""
    from shared.bench import cli
    from shared.bench.report import console

    check_args(args)
    if getattr(args, "sender_processes", None) is not None:
        # read by the open-loop sender of every run (`settings.sender_processes`), as --workloads is passed on
        os.environ[settings.ENV_SENDER_PROCESSES] = str(args.sender_processes)
    attached = bool(getattr(args, "attached", False))
    s, live = live_workers() if attached else (cli.settings_without_database(), None)
    the_spec, notes = build_spec(args, s, live)
    return cli.run_experiment(
        the_spec,
        notes=notes,
        output=args.output,
        progress=not args.no_progress,
        calibrate=not args.no_calibration,
        stall_seconds=args.stall_seconds,
        print_summary=console.print_summary,
        mode="attached" if attached else "managed",
        # The SQL broker's workers keep kombu's tables in a database of their own, as `make bench-celery`
        # does: on a reused one the planner's statistics slow its fetch (docs/celery.md).
        isolate_brokers=True,
    )


def live_workers() -> tuple[settings.Settings, list[dict[str, Any]]]:
    """`--attached`: the settings of the database the running workers use (exported as `DATABASE_URL` for
    the executor and its children) and their live heartbeats; `UsageError` when none beats."""
    import psycopg

    from shared import db, heartbeat

    try:
        s = settings.load()
    except settings.ConfigError as exc:
        raise UsageError(str(exc)) from None
    os.environ[settings.ENV_DATABASE_URL] = s.database_url
    try:
        with db.connect(s.queue_database_url, role="harness", autocommit=True) as conn:
            live = heartbeat.rows(conn, "workers_live", {"within": 30, "limit": None})
    except psycopg.Error as exc:
        raise UsageError(
            f"cannot read the workers' heartbeats at {settings.redact(s.queue_database_url)}: {exc}"
        ) from None
    if not live:
        raise UsageError("--attached: no live worker heartbeats in queue.workers; start them (make dev)")
    return s, live
