"""`make bench` / `python -m shared.bench`: run the comparison, or execute a stored experiment.

    python -m shared.bench [options]        the default matrix (or a chosen one), managed mode
    python -m shared.bench execute ID       execute a pending experiment (what the web launches)

Without `DATABASE_URL` the command starts its own embedded PostgreSQL (data under
`.data/bench-pg`, kept between runs so the rows stay inspectable) and stops it at the end; with it,
it uses that database and skips the PostgreSQL-restart fault. Every process it starts gets
`DATABASE_URL`. Bad input gets one line and exit code 2 before anything starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from shared import settings
from shared.bench import spec

# Heavy modules (Celery, SQLAlchemy, Alembic, matplotlib) are imported after the arguments are
# checked, so that bad input is answered at once.

PARTS = ("noop-one", "noop-bulk", "sleep", "steady", "fault", "overhead")


class UsageError(Exception):
    """Bad input: one line for the user."""


def _csv(value: str | None, allowed: tuple[str, ...], what: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise UsageError(f"unknown {what} {', '.join(repr(b) for b in bad)}; use one of {', '.join(allowed)}")
    if not items:
        raise UsageError(f"--{what}s needs at least one of {', '.join(allowed)}")
    return items


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="make bench ARGS=... | python -m shared.bench",
        description="Compare Celery and pgqueue: the default matrix, or the parts and sizes you pick. "
        "`python -m shared.bench execute ID` executes a stored experiment (the web uses it).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--adapters", default="pgqueue,celery", help="comma-separated: pgqueue, celery")
    p.add_argument(
        "--brokers",
        default=None,
        help="Celery brokers, comma-separated (postgres, redis, rabbitmq); default: postgres, plus redis "
        "and rabbitmq when they answer. A broker named here must answer.",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="add Celery's `reliable` configuration and the PostgreSQL-restart fault",
    )
    p.add_argument("--parts", default=",".join(PARTS), help=f"which parts of the matrix: {', '.join(PARTS)}")
    p.add_argument("--jobs", type=int, default=500, help="jobs per noop drain run")
    p.add_argument(
        "--overhead-jobs",
        type=int,
        default=100_000,
        help="jobs per run of the recording on/off pair (pgqueue)",
    )
    p.add_argument("--sleep-jobs", type=int, default=300, help="jobs per sleep drain run")
    p.add_argument("--sleep-ms", type=float, default=10.0, help="milliseconds each sleep job sleeps")
    p.add_argument("--slots", type=int, default=10, help="total worker slots per adapter (equal for both)")
    p.add_argument("--rate", type=float, default=200.0, help="steady scenario: arrivals per second")
    p.add_argument("--duration", type=float, default=3.0, help="steady scenario: seconds of arrivals")
    p.add_argument("--fault-jobs", type=int, default=200, help="jobs per fault run (sleep jobs)")
    p.add_argument("--fault-ms", type=float, default=50.0, help="milliseconds each fault-run job sleeps")
    p.add_argument(
        "--repetitions",
        type=int,
        default=5,
        help="interleaved repetitions per case (at least 5 for the statistics)",
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
    p.add_argument("--loglevel", default="WARNING")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Everything about the options that needs no server: raises `UsageError`."""
    if args.spec is not None:
        return
    _csv(args.adapters, spec.ADAPTERS, "adapter")
    _csv(args.parts, PARTS, "part")
    if args.brokers is not None:
        _csv(args.brokers, spec.BROKERS, "broker")
    for name, value in (
        ("--jobs", args.jobs),
        ("--sleep-jobs", args.sleep_jobs),
        ("--overhead-jobs", args.overhead_jobs),
        ("--fault-jobs", args.fault_jobs),
    ):
        if value <= 0:
            raise UsageError(f"{name} must be a positive number of jobs, got {value}")
    if args.sleep_ms < 0 or args.fault_ms < 0:
        raise UsageError(
            f"--sleep-ms and --fault-ms must not be negative, got {args.sleep_ms} and {args.fault_ms}"
        )
    if args.rate <= 0 or args.duration <= 0:
        raise UsageError(f"--rate and --duration must be positive, got {args.rate} and {args.duration}")
    if args.stall_seconds is not None and args.stall_seconds <= 0:
        raise UsageError(f"--stall-seconds must be positive, got {args.stall_seconds}")
    if args.repetitions < 1:
        raise UsageError(f"--repetitions must be at least 1, got {args.repetitions}")
    if args.slots < 2:
        raise UsageError(f"--slots must be at least 2 (pgqueue runs 2 processes), got {args.slots}")


def build_spec(args: argparse.Namespace, available: dict[str, str | None]) -> tuple[spec.Spec, list[str]]:
    """The spec the options describe; `available` maps broker/adapter names to why they cannot run."""
    notes: list[str] = []
    if args.spec is not None:
        try:
            data = json.loads(args.spec.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the spec file {args.spec}: {exc}") from None
        return spec.validate_spec(data), notes
    adapters_ = _csv(args.adapters, spec.ADAPTERS, "adapter") or []
    parts = _csv(args.parts, PARTS, "part") or []
    if args.brokers is None:
        brokers = ["postgres"]
        for b in ("redis", "rabbitmq"):
            if available.get(b) is None:
                brokers.append(b)
            else:
                notes.append(f"Celery on {b} skipped: {available[b]}")
    else:
        brokers = _csv(args.brokers, spec.BROKERS, "broker") or []
        for b in brokers:
            if available.get(b):
                raise UsageError(available[b] or "")
    pgq = "pgqueue" in adapters_
    if pgq and available.get("pgqueue"):
        if args.adapters != "pgqueue,celery":
            raise UsageError(available["pgqueue"] or "")
        notes.append(f"pgqueue skipped: {available['pgqueue']}")
        pgq = False
    data = spec.default_matrix(
        brokers=brokers if "celery" in adapters_ else [],
        full=args.full,
        pgqueue=pgq,
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
        overhead="overhead" in parts,
        overhead_jobs=args.overhead_jobs,
    )

    def wanted(c: dict[str, Any]) -> bool:
        if c.pop("part", None) == "overhead":
            return "overhead" in parts
        if c.get("scenario") == "fault":
            return "fault" in parts
        if c.get("recording") is False:
            return "overhead" in parts
        if c.get("scenario") == "steady":
            return "steady" in parts
        if c["workload"] == "sleep":
            return "sleep" in parts
        return ("noop-one" if c["scheduling"] == "one_by_one" else "noop-bulk") in parts

    data["cases"] = [c for c in data["cases"] if wanted(c)]
    if not data["cases"]:
        raise UsageError("nothing to run: the chosen adapters and parts leave no case")
    data["notes"] = notes
    return spec.validate_spec(data), notes


def availability(s: settings.Settings, wanted: list[str]) -> dict[str, str | None]:
    """Why each optional piece cannot run (None: it can)."""
    from shared.bench import checks

    out: dict[str, str | None] = {b: checks.check_broker(b, s) for b in ("redis", "rabbitmq")}
    if "pgqueue" in wanted:
        from shared.bench import adapters

        out["pgqueue"] = adapters.pgqueue_worker_available()
    else:
        out["pgqueue"] = "not asked for"
    return out


class Progress:
    """A tqdm bar over the experiment's runs (a line per run when tqdm is missing or output is not a tty)."""

    def __init__(self, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=0, unit="run", dynamic_ncols=True, file=sys.stderr)
            except ImportError:
                self.bar = None

    def __call__(self, info: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.total = info["total"]
            self.bar.n = info["index"]
            self.bar.set_description(f"{info['case'][:60]} #{info['repetition']}")
            self.bar.refresh()
        elif not info.get("done"):
            print(
                f"[{info['index'] + 1}/{info['total']}] {info['case']} #{info['repetition']}", file=sys.stderr
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_summary(out: Path) -> None:
    data = json.loads((out / "results.json").read_text())
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
    for n in data["notes"]:
        print(f"note: {n}")
    print(f"\nreport: {out}/summary.md (results.json, results.csv, *.png)")


def run(args: argparse.Namespace) -> int:
    check_args(args)
    own_db = not os.environ.get(settings.ENV_DATABASE_URL)
    # Everything that can be checked without a database is checked before anything starts.
    try:
        s0 = settings.load(
            {**os.environ, "DATABASE_URL": os.environ.get("DATABASE_URL") or "postgresql://x@127.0.0.1:1/x"}
        )
    except settings.ConfigError as exc:
        raise UsageError(str(exc)) from None
    the_spec, notes = build_spec(args, availability(s0, _csv(args.adapters, spec.ADAPTERS, "adapter") or []))
    from alembic import util as alembic_util

    from shared import db, embedded
    from shared import migrate as migrate_mod
    from shared.bench import experiments

    cluster = None
    started = time.monotonic()
    try:
        if own_db:
            cluster = embedded.EmbeddedCluster(settings.DATA_DIR / "bench-pg")
            cluster.start()
            os.environ["DATABASE_URL"] = cluster.url
            print(f"embedded PostgreSQL at {cluster.url} (data in {cluster.path})", file=sys.stderr)
        url = settings.load().database_url
        try:
            migrate_mod.upgrade(url, settings.load().queue_database_url)
        except alembic_util.CommandError as exc:
            hint = (
                f"; it was migrated by another checkout of this project: remove {cluster.path} to start afresh"
                if cluster is not None
                else "; it was migrated by another version of this project"
            )
            raise UsageError(f"cannot migrate the database at {settings.redact(url)}: {exc}{hint}") from None
        db.check_ready(url)
        if cluster is not None:
            with db.connect(url, role="harness", autocommit=True) as conn:
                experiments.reap_dead_executors(conn)
        eid = experiments.start_experiment(the_spec, "managed", database_url=url)
        n_runs = len(the_spec.schedule())
        print(
            f"experiment {eid}: {len(the_spec.cases)} cases, {n_runs} runs, {the_spec.repetitions} repetitions",
            file=sys.stderr,
        )
        progress = Progress(not args.no_progress)
        try:
            out: Path | None = experiments.execute(
                eid,
                database_url=url,
                cluster=cluster,
                output_dir=args.output,
                on_progress=progress,
                calibrate=not args.no_calibration,
                notes=notes,
                stall_seconds=args.stall_seconds,
            )
        except RuntimeError as exc:
            progress.close()
            print(f"error: experiment {eid} failed: {exc}", file=sys.stderr)
            print(
                f"what was measured is in {experiments.progress(eid, database_url=url)['report_dir']}",
                file=sys.stderr,
            )
            return 1
        finally:
            progress.close()
        status = experiments.progress(eid, database_url=url)["status"]
        if out is not None:
            print_summary(out)
        print(f"experiment {eid} {status} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return 130 if status == "cancelled" else 0
    finally:
        if cluster is not None:
            cluster.stop()


def report_cmd(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m shared.bench report",
        description="Write an experiment's report files again from its rows.",
    )
    p.add_argument("experiment_id", type=int)
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args(argv)
    from shared import db
    from shared.bench import report

    with db.connect(settings.load().database_url, role="harness-report", autocommit=True) as conn:
        files = report.write(conn, args.experiment_id, args.output)
    print_summary(args.output)
    print(f"wrote {len(files)} files")
    return 0


def execute_cmd(argv: list[str]) -> int:
    from shared.bench import experiments

    p = argparse.ArgumentParser(
        prog="python -m shared.bench execute", description="Execute a pending experiment."
    )
    p.add_argument("experiment_id", type=int)
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = experiments.execute(args.experiment_id, output_dir=args.output)
    print(f"report: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] == "execute":
            return execute_cmd(argv[1:])
        if argv and argv[0] == "report":
            return report_cmd(argv[1:])
        args = parser().parse_args(argv)
        logging.basicConfig(
            level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except spec.SpecError as exc:
        for field, msg in exc.errors.items():
            print(f"error: {field}: {msg}", file=sys.stderr)
        return 2
    except (settings.ConfigError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Errors that speak to the user (busy, database unusable) get one line; anything else is a bug.
        if type(exc).__name__ not in ("ExperimentBusy", "DatabaseError"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
