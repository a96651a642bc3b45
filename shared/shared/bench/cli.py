"""`python -m shared.bench`: the one benchmark program (docs/benchmark.md, "Commands").

    python -m shared.bench [compare] [options]      every contender side by side (`make bench`)
    python -m shared.bench queue --adapter NAME     one queue's own figures (`make bench-pgqueue`, `bench-celery`)
    python -m shared.bench web [options]            the admin pages on 1,000,000 jobs (`make bench-web`)
    python -m shared.bench execute ID               execute a pending experiment (what the web launches)
    python -m shared.bench report ID --output DIR   write an experiment's report again from its rows

Without `DATABASE_URL` a command starts its own embedded PostgreSQL; with it, it uses that database (and
the PostgreSQL-restart fault is skipped). Every process a command starts gets `DATABASE_URL`. Bad input
gets one line and exit code 2 before anything starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared import settings
from shared.bench import spec
from shared.bench.usage import UsageError

# Heavy modules (Celery, SQLAlchemy, Alembic, matplotlib) are imported after the arguments are checked,
# so that bad input is answered at once.

COMMANDS = ("compare", "queue", "web", "execute", "report")
BENCH_PG_DIR = settings.DATA_DIR / "bench-pg"
"""`make bench`'s own cluster, kept between runs so that the rows stay inspectable."""


def settings_without_database() -> settings.Settings:
    """The settings, with a placeholder database when none is configured yet (the command starts its own)."""
    try:
        return settings.load(
            {**os.environ, "DATABASE_URL": os.environ.get("DATABASE_URL") or "postgresql://x@127.0.0.1:1/x"}
        )
    except settings.ConfigError as exc:
        raise UsageError(str(exc)) from None


class Progress:
    """A tqdm bar over the experiment's runs (a line per run when tqdm is missing or output is not a tty)."""

    def __init__(self, enabled: bool) -> None:
        self.bar: Any = None
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


def run_experiment(
    the_spec: spec.Spec,
    *,
    notes: list[str],
    output: Path | None,
    progress: bool,
    calibrate: bool,
    stall_seconds: float | None,
    print_summary: Callable[[Path], None],
    isolate_brokers: bool = False,
    data_dir: Path = BENCH_PG_DIR,
    keep: bool = True,
    mode: str = "managed",
) -> int:
    """Start the database (`databases.target`: an embedded cluster in `data_dir`, kept afterwards when
    `keep`, unless `DATABASE_URL` is set), insert the experiment, execute it here, print its summary.
    Exit code 0, or 130 when it was cancelled, 1 when it failed."""
    from alembic import util as alembic_util

    from shared import db
    from shared.bench import databases, executor, experiments

    started = time.monotonic()
    own = not os.environ.get(settings.ENV_DATABASE_URL)
    try:
        target_cm = databases.target(data_dir, keep=keep)
        target = target_cm.__enter__()
    except alembic_util.CommandError as exc:
        hint = (
            f"; it was migrated by another checkout of this project: remove {data_dir} to start afresh"
            if own
            else "; it was migrated by another version of this project"
        )
        url = settings.redact(os.environ.get(settings.ENV_DATABASE_URL, ""))
        raise UsageError(f"cannot migrate the database at {url}: {exc}{hint}") from None
    try:
        if target.cluster is not None:
            print(f"embedded PostgreSQL at {target.url} (data in {target.cluster.path})", file=sys.stderr)
        db.check_ready(target.url)
        if target.cluster is not None:
            with db.connect(target.url, role="harness", autocommit=True) as conn:
                experiments.reap_dead_executors(conn)
        eid = experiments.start_experiment(the_spec, mode, database_url=target.url)
        print(
            f"experiment {eid}: {len(the_spec.cases)} cases, {len(the_spec.schedule())} runs, "
            f"{the_spec.repetitions} repetitions",
            file=sys.stderr,
        )
        bar = Progress(progress)
        try:
            out = executor.Executor(
                eid,
                database_url=target.url,
                cluster=target.cluster,
                output_dir=output,
                on_progress=bar,
                calibrate=calibrate,
                notes=notes,
                stall_seconds=stall_seconds,
                isolate_brokers=isolate_brokers,
            ).run()
        except RuntimeError as exc:
            bar.close()
            print(f"error: experiment {eid} failed: {exc}", file=sys.stderr)
            report_dir = experiments.progress(eid, database_url=target.url)["report_dir"]
            print(f"what was measured is in {report_dir}", file=sys.stderr)
            return 1
        finally:
            bar.close()
        status = experiments.progress(eid, database_url=target.url)["status"]
        if out is not None:
            print_summary(out)
        print(f"experiment {eid} {status} in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return 130 if status == "cancelled" else 0
    finally:
        target_cm.__exit__(None, None, None)


def report_cmd(argv: list[str]) -> int:
    from shared import db
    from shared.bench import report
    from shared.bench.report import console

    p = argparse.ArgumentParser(
        prog="python -m shared.bench report",
        description="Write an experiment's report files again from its rows.",
    )
    p.add_argument("experiment_id", type=int)
    p.add_argument("--output", type=Path, required=True)
    args = p.parse_args(argv)
    with db.connect(settings.load().database_url, role="harness-report", autocommit=True) as conn:
        files = report.write(conn, args.experiment_id, args.output)
        report.store_files(conn, args.experiment_id, files)
    console.print_summary(args.output)
    print(f"wrote {len(files)} files")
    return 0


def execute_cmd(argv: list[str]) -> int:
    from shared.bench import executor

    p = argparse.ArgumentParser(
        prog="python -m shared.bench execute", description="Execute a pending experiment."
    )
    p.add_argument("experiment_id", type=int)
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = executor.Executor(args.experiment_id, output_dir=args.output).run()
    print(f"report: {out}")
    return 0


def take_workloads(argv: list[str]) -> tuple[list[str], str | None]:
    """`argv` without its `--workloads MODULES` (an option of every command), and that value."""
    rest: list[str] = []
    value: str | None = None
    it = iter(argv)
    for arg in it:
        if arg == "--workloads":
            value = next(it, None)
            if value is None:
                raise UsageError("--workloads takes module names, comma-separated (such as mypkg.jobs)")
        elif arg.startswith("--workloads="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, value


def load_workloads(value: str | None) -> dict[str, tuple[str, ...]]:
    """Import the user's workload modules (`--workloads`, else `BENCH_WORKLOADS`) before anything starts,
    and pass them on to every worker: `BENCH_WORKLOADS` names them, and `PYTHONPATH` finds them
    (docs/benchmark.md, "Your own workload"). One line (`UsageError`) when one does not import or
    registers nothing."""
    from shared import workloads

    names = workloads.module_names(value)
    if not names:
        return {}
    try:
        loaded = workloads.load_user_modules(names)
    except workloads.WorkloadModuleError as exc:
        raise UsageError(str(exc)) from None
    os.environ[settings.ENV_WORKLOADS] = ",".join(names)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    for name in names:
        root = workloads.import_root(name)
        if root is not None and str(root) not in paths:
            paths.insert(0, str(root))
    if paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    return loaded


def _run(argv: list[str]) -> int:
    argv, workload_modules = take_workloads(argv)
    load_workloads(workload_modules)
    command = argv[0] if argv and argv[0] in COMMANDS else "compare"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    if command == "execute":
        return execute_cmd(rest)
    if command == "report":
        return report_cmd(rest)
    if command == "web":
        from shared.bench import webbench

        return webbench.main(rest)
    if command == "queue":
        from shared.bench import queuebench

        p = argparse.ArgumentParser(
            prog="python -m shared.bench queue",
            description=queuebench.__doc__.split("\n\n")[0] if queuebench.__doc__ else None,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        queuebench.add_arguments(p)
        p.add_argument("--loglevel", default="WARNING")
        args = p.parse_args(rest)
        logging.basicConfig(
            level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return queuebench.run(args)
    from shared.bench import compare

    p = argparse.ArgumentParser(
        prog="make bench ARGS=... | python -m shared.bench [compare]",
        description="Every contender side by side: the default matrix, or the parts and sizes you pick. "
        "Other commands: queue, web, execute, report (python -m shared.bench COMMAND --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    compare.add_arguments(p)
    p.add_argument("--loglevel", default="WARNING")
    args = p.parse_args(rest)
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return compare.run(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv)
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Errors that speak to the user (busy, database unusable) get one line; anything else is a bug.
        if type(exc).__name__ not in ("ExperimentBusy", "DatabaseError"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
