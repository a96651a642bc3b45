"""Experiments: start one (at most one at a time, the database enforces it), execute it, follow it.

`start_experiment(spec)` inserts a `pending` experiment and all its runs (in execution order, so the
repetitions of its cases interleave); the partial unique index `ix_experiments_one_active` refuses a
second active one (`ExperimentBusy`). The command line executes the experiment in its own process
(`execute`); the web starts the same executor detached (`launch_executor`, which runs
`python -m shared.bench execute ID` and records its PID); `reap_dead_executors` marks failed an
experiment whose executor died.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.types.json import Jsonb

from shared import db, settings
from shared.bench.spec import Case, Spec, SpecError, validate_spec

__all__ = [
    "Case",
    "ExperimentBusy",
    "Spec",
    "SpecError",
    "launch_executor",
    "progress",
    "reap_dead_executors",
    "start_experiment",
    "validate_spec",
]

MODES = ("managed", "attached")


class ExperimentBusy(RuntimeError):
    """Another experiment is pending or running; only one goes at a time."""


def _first(row: tuple | None) -> Any:
    return row[0] if row is not None else None


def _url(database_url: str | None) -> str:
    return database_url or settings.load().database_url


def _execute(conn: Any, sql: str, params: Any = None) -> Any:
    """Run SQL on a psycopg connection or a SQLAlchemy `Connection` (the web passes the latter)."""
    if hasattr(conn, "exec_driver_sql"):
        return conn.exec_driver_sql(sql, params or {})
    return conn.execute(sql, params)


def start_experiment(spec: Spec, mode: str = "managed", *, database_url: str | None = None) -> int:
    """Insert a pending experiment and its runs; return its id.

    Raises `ExperimentBusy` when another experiment is pending or running, `SpecError` for a mode
    that cannot run the spec (attached mode runs no fault and no recording-off case).
    """
    if mode not in MODES:
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
                eid = _first(
                    conn.execute(
                        "INSERT INTO experiments (status, mode, spec) VALUES ('pending', %s, %s) RETURNING id",
                        (mode, Jsonb(spec.to_dict())),
                    ).fetchone()
                )
                for case, rep in spec.schedule():
                    conn.execute(
                        """
                        INSERT INTO benchmark_runs
                          (experiment_id, case_key, repetition, adapter, broker, celery_config, job_count,
                           scheduling_mode, workload, workload_params, scenario, processes, slots, recording)
                        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                        """,
                        (
                            eid,
                            case.key,
                            rep,
                            case.adapter,
                            case.broker,
                            case.celery_config,
                            case.jobs,
                            case.scheduling,
                            case.workload,
                            Jsonb(case.params),
                            case.scenario,
                            case.processes,
                            case.slots,
                            case.recording,
                        ),
                    )
        except psycopg.errors.UniqueViolation:
            row = conn.execute(
                "SELECT id, status FROM experiments WHERE status IN ('pending', 'running') LIMIT 1"
            ).fetchone()
            which = f"experiment {row[0]} is {row[1]}" if row else "another experiment is active"
            raise ExperimentBusy(f"{which}; wait for it to finish or cancel it first") from None
    return int(eid)


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
        conn.execute("UPDATE experiments SET executor_pid = %s WHERE id = %s", (proc.pid, experiment_id))
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap_dead_executors(conn: Any) -> int:
    """Mark failed every active experiment whose executor process is gone; return how many.

    `conn` is a psycopg connection or a SQLAlchemy `Connection`; the caller commits. Only executors on
    this host can be checked (the web launches them on its own machine).
    """
    rows = _execute(
        conn,
        "SELECT id, executor_pid FROM experiments WHERE status IN ('pending', 'running') "
        "AND executor_pid IS NOT NULL",
    ).fetchall()
    dead = [(eid, pid) for eid, pid in rows if not _alive(int(pid))]
    for eid, pid in dead:
        msg = f"the executor (pid {pid}) died before the experiment finished"
        _execute(
            conn,
            "UPDATE experiments SET status = 'failed', error = %(msg)s, finished_at = now() "
            "WHERE id = %(id)s AND status IN ('pending', 'running')",
            {"msg": msg, "id": eid},
        )
        _execute(
            conn,
            "UPDATE benchmark_runs SET status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE 'failed' END, "
            "error = coalesce(error, %(msg)s), finished_at = coalesce(finished_at, now()) "
            "WHERE experiment_id = %(id)s AND status IN ('pending', 'scheduling', 'running')",
            {"msg": msg, "id": eid},
        )
    return len(dead)


def progress(experiment_id: int, *, database_url: str | None = None) -> dict[str, Any]:
    """How far an experiment is: status, runs done and total, the current run, the report folder."""
    with db.connect(_url(database_url), role="harness", autocommit=True) as conn:
        exp = conn.execute(
            "SELECT status, mode, error, report_dir, created_at, started_at, finished_at, executor_pid "
            "FROM experiments WHERE id = %s",
            (experiment_id,),
        ).fetchone()
        if exp is None:
            raise LookupError(f"no experiment {experiment_id}")
        counts: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM benchmark_runs WHERE experiment_id = %s GROUP BY status",
                (experiment_id,),
            ).fetchall()
        )
        cur = conn.execute(
            "SELECT id, case_key, repetition, status, scheduling_started_at FROM benchmark_runs "
            "WHERE experiment_id = %s AND status IN ('scheduling', 'running') ORDER BY id LIMIT 1",
            (experiment_id,),
        ).fetchone()
    total = sum(counts.values())
    done = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled"))

    def iso(t: dt.datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {
        "experiment_id": experiment_id,
        "status": exp[0],
        "mode": exp[1],
        "error": exp[2],
        "report_dir": exp[3],
        "created_at": iso(exp[4]),
        "started_at": iso(exp[5]),
        "finished_at": iso(exp[6]),
        "executor_pid": exp[7],
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
    row = conn.execute(
        "SELECT spec, mode, status FROM experiments WHERE id = %s", (experiment_id,)
    ).fetchone()
    if row is None:
        raise LookupError(f"no experiment {experiment_id}")
    return validate_spec(row[0]), row[1], row[2]


def cancel(experiment_id: int, *, database_url: str | None = None) -> bool:
    """Ask a running experiment to stop: SIGINT to its executor (it keeps what it measured)."""
    import signal

    with db.connect(_url(database_url), role="harness", autocommit=True) as conn:
        row = conn.execute(
            "SELECT executor_pid, status FROM experiments WHERE id = %s", (experiment_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"no experiment {experiment_id}")
        pid, status = row
        if status not in ("pending", "running"):
            return False
        if pid and _alive(int(pid)):
            os.kill(int(pid), signal.SIGINT)
            return True
        conn.execute(
            "UPDATE experiments SET status = 'cancelled', finished_at = now() WHERE id = %s", (experiment_id,)
        )
        conn.execute(
            "UPDATE benchmark_runs SET status = 'cancelled' WHERE experiment_id = %s AND status = 'pending'",
            (experiment_id,),
        )
        return True


def execute(experiment_id: int, **kwargs: Any) -> Path | None:
    """Execute experiment `experiment_id` in this process (see `executor.Executor`); return its report folder."""
    from shared.bench import executor

    return executor.Executor(experiment_id, **kwargs).run()
