"""Experiments: start one (at most one at a time, the database enforces it), launch its executor, follow it.

`start_experiment(spec)` inserts a `pending` experiment and all its runs (in execution order, so the
repetitions of its cases interleave); the partial unique index `ix_experiments_one_active` refuses a
second active one (`ExperimentBusy`). The command line executes the experiment in its own process
(`shared.bench.executor`); the web starts the same executor detached (`launch_executor`, which runs
`python -m shared.bench execute ID` and records its PID); `reap_dead_executors` marks failed an
experiment whose executor died.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.types.json import Jsonb

from shared import db, settings
from shared.bench import adapters, store, terms
from shared.bench.spec import Case, Spec, SpecError, validate_spec

__all__ = [
    "Case",
    "ExperimentBusy",
    "Spec",
    "SpecError",
    "cancel",
    "launch_executor",
    "load_spec",
    "progress",
    "reap_dead_executors",
    "start_experiment",
    "validate_spec",
]


class ExperimentBusy(RuntimeError):
    """Another experiment is pending or running; only one goes at a time."""


def _url(database_url: str | None) -> str:
    return database_url or settings.load().database_url


def _raw(conn: Any) -> psycopg.Connection:
    """The psycopg connection under a SQLAlchemy `Connection` (the web passes one), or `conn` itself."""
    if hasattr(conn, "exec_driver_sql"):
        return conn.connection.driver_connection
    return conn


def start_experiment(spec: Spec, mode: str = "managed", *, database_url: str | None = None) -> int:
    """Insert a pending experiment and its runs; return its id.

    Raises `ExperimentBusy` when another experiment is pending or running, `SpecError` for a mode that
    cannot run the spec (attached mode runs no fault and no recording-off case).
    """
    if mode not in terms.MODES:
        raise SpecError({"mode": f"unknown mode {mode!r}; use managed or attached"})
    if mode == "attached":
        bad = [c.key for c in spec.cases if c.scenario == "fault" or not c.recording]
        if bad:
            raise SpecError(
                {"cases": f"attached mode injects no faults and cannot turn recording off: {', '.join(bad)}"}
            )
    with db.connect(_url(database_url), role="harness") as conn:
        try:
            with conn.transaction():
                row = conn.execute(
                    store.q("experiment_insert"), {"mode": mode, "spec": Jsonb(spec.to_dict())}
                )
                eid = int(row.fetchone()[0])  # type: ignore[index]
                for case, rep in spec.schedule():
                    options = adapters.get(case.adapter).resolve(case.options)
                    conn.execute(
                        store.q("run_insert"),
                        {
                            "experiment_id": eid,
                            "case_key": case.key,
                            "repetition": rep,
                            "adapter": case.adapter,
                            "broker": options.get("broker"),
                            "celery_config": options.get("config"),
                            "jobs": case.jobs,
                            "scheduling": case.scheduling,
                            "workload": case.workload,
                            "params": Jsonb(case.params),
                            "scenario": case.scenario,
                            "processes": case.processes,
                            "slots": case.slots,
                            "recording": case.recording,
                        },
                    )
        except psycopg.errors.UniqueViolation:
            active = conn.execute(store.q("experiment_active")).fetchone()
            which = f"experiment {active[0]} is {active[1]}" if active else "another experiment is active"
            raise ExperimentBusy(f"{which}; wait for it to finish or cancel it first") from None
    return eid


def launch_executor(
    experiment_id: int, *, database_url: str | None = None, log_dir: Path | None = None
) -> int:
    """Start `python -m shared.bench execute ID` detached (own session); record and return its PID."""
    url = _url(database_url)
    log_dir = Path(log_dir or settings.DATA_DIR / "executor-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DATABASE_URL": url}
    with open(log_dir / f"experiment-{experiment_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shared.bench", "execute", str(experiment_id)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    with db.connect(url, role="harness", autocommit=True) as conn:
        conn.execute(store.q("experiment_set_executor"), {"pid": proc.pid, "id": experiment_id})
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap_dead_executors(conn: Any) -> int:
    """Mark failed every active experiment whose executor process is gone; return how many.

    `conn` is a psycopg connection or a SQLAlchemy `Connection`; the caller commits. Only executors on
    this host can be checked (the web launches them on its own machine).
    """
    raw = _raw(conn)
    dead = [
        (eid, pid)
        for eid, pid in raw.execute(store.q("experiment_executors")).fetchall()
        if not _alive(int(pid))
    ]
    for eid, pid in dead:
        msg = f"the executor (pid {pid}) died before the experiment finished"
        raw.execute(store.q("experiment_fail_active"), {"id": eid, "error": msg})
        raw.execute(store.q("runs_end_unfinished"), {"id": eid, "status": "failed", "error": msg})
    return len(dead)


def progress(experiment_id: int, *, database_url: str | None = None) -> dict[str, Any]:
    """How far an experiment is: status, runs done and total, the current run, the report folder."""
    with db.connect(_url(database_url), role="harness", autocommit=True) as conn:
        exp = store.experiment(conn, experiment_id)
        if exp is None:
            raise LookupError(f"no experiment {experiment_id}")
        counts: dict[str, int] = dict(
            conn.execute(store.q("experiment_run_counts"), {"id": experiment_id}).fetchall()
        )
        cur = conn.execute(store.q("experiment_current_run"), {"id": experiment_id}).fetchone()
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled"))

    def iso(t: dt.datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {
        "experiment_id": experiment_id,
        "status": exp["status"],
        "mode": exp["mode"],
        "error": exp["error"],
        "report_dir": exp["report_dir"],
        "created_at": iso(exp["created_at"]),
        "started_at": iso(exp["started_at"]),
        "finished_at": iso(exp["finished_at"]),
        "executor_pid": exp["executor_pid"],
        "runs_total": total,
        "runs_done": done,
        "runs_by_status": counts,
        "fraction": (done / total) if total else 0.0,
        "current_run": (
            {"id": cur[0], "case_key": cur[1], "repetition": cur[2], "status": cur[3]} if cur else None
        ),
    }


def load_spec(conn: psycopg.Connection, experiment_id: int) -> tuple[Spec, str, str]:
    """The stored spec, mode and status of an experiment."""
    exp = store.experiment(conn, experiment_id)
    if exp is None:
        raise LookupError(f"no experiment {experiment_id}")
    return validate_spec(exp["spec"]), exp["mode"], exp["status"]


def cancel(experiment_id: int, *, database_url: str | None = None) -> bool:
    """Ask a running experiment to stop: SIGINT to its executor (it keeps what it measured)."""
    with db.connect(_url(database_url), role="harness", autocommit=True) as conn:
        exp = store.experiment(conn, experiment_id)
        if exp is None:
            raise LookupError(f"no experiment {experiment_id}")
        if exp["status"] not in ("pending", "running"):
            return False
        pid = exp["executor_pid"]
        if pid and _alive(int(pid)):
            os.kill(int(pid), signal.SIGINT)
            return True
        conn.execute(store.q("experiment_cancel_pending"), {"id": experiment_id})
        return True
