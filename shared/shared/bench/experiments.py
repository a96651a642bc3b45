"""Experiments: start one (at most one at a time, the database enforces it), launch its executor, follow it.

`start_experiment(spec)` inserts a `pending` experiment and all its runs (in execution order, so the
repetitions of its cases interleave); the partial unique index `ix_experiments_one_active` refuses a
second active one (`ExperimentBusy`). The command line executes the experiment in its own process
(`shared.bench.executor`); the web starts the same executor detached (`launch_executor`, which runs
`python -m shared.bench execute ID` and records its PID and host).

Liveness is in the database, not in PIDs, so that any number of web machines can look after one
experiment (docs/deploy.md): the executor beats on its experiment row every `BEAT_SECONDS` with its host
and Fly machine id (`ExecutorHeartbeat`); `reap_dead_executors` marks failed an experiment whose beat is
older than `STALE_SECONDS` (or, on the executor's own host, whose process is gone); `cancel` sets a flag
that the beating executor reads and obeys, wherever it runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.types.json import Jsonb

from shared import db, settings
from shared.bench import adapters, store, terms
from shared.bench.spec import Case, Spec, SpecError, validate_spec

__all__ = [
    "BEAT_SECONDS",
    "STALE_SECONDS",
    "Case",
    "ExecutorHeartbeat",
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


log = logging.getLogger(__name__)

BEAT_SECONDS = 2.0
"""How often an executor beats on its experiment row (and reads the cancel flag)."""
STALE_SECONDS = 30.0
"""An active experiment whose executor has not beaten for this long is dead: long enough for a
PostgreSQL restart (the fault) and a slow start of the executor's process, short enough to free the slot."""


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
        conn.execute(
            store.q("experiment_set_executor"),
            {
                "pid": proc.pid,
                "id": experiment_id,
                "host": settings.host_name(),
                "machine_id": settings.fly_machine_id(),
            },
        )
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ExecutorHeartbeat(threading.Thread):
    """Beats on the experiment's row every `interval` seconds (host, Fly machine id, PID) and calls
    `on_cancel` once when the row's cancel flag is set, or when the experiment is no longer active (it was
    reaped while this executor could not beat: it must not go on beside a new one). Its own connection; a beat that fails is retried
    on a new one at the next interval (the PostgreSQL-restart fault)."""

    def __init__(
        self,
        experiment_id: int,
        database_url: str,
        on_cancel: Callable[[], None],
        *,
        host: str | None = None,
        pid: int | None = None,
        interval: float = BEAT_SECONDS,
    ) -> None:
        super().__init__(name=f"experiment-{experiment_id}-heartbeat", daemon=True)
        self.params = {
            "id": experiment_id,
            "host": host or settings.host_name(),
            "machine_id": settings.fly_machine_id(),
            "pid": pid if pid is not None else os.getpid(),
        }
        self.store = store.Store(database_url, role="harness-heartbeat")
        self.on_cancel = on_cancel
        self.interval = interval
        self.cancelled = False
        self._stop_event = threading.Event()

    def beat(self) -> None:
        """One beat; calls `on_cancel` the first time the cancel flag is seen."""
        try:
            row = self.store.run("experiment_beat", self.params, retry_for=0).fetchone()
        except psycopg.Error as exc:
            log.warning("the experiment's heartbeat failed, will retry: %s", str(exc).strip())
            return
        if row and row[0] and not self.cancelled:
            self.cancelled = True
            self.on_cancel()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def start(self) -> None:
        self.beat()
        super().start()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(self.interval + 5)
        self.store.close()


def reap_dead_executors(conn: Any, *, stale_after: float = STALE_SECONDS, host: str | None = None) -> int:
    """Mark failed every active experiment whose executor is dead; return how many.

    Dead: its heartbeat on the experiment row (or, before its first beat, the row's creation) is older
    than `stale_after` seconds, or it runs on this host (`host`, default `settings.host_name()`) and its
    process is gone. An executor on another machine is judged by its heartbeat only: its PID means
    nothing here. `conn` is a psycopg connection or a SQLAlchemy `Connection`; the caller commits.
    """
    raw = _raw(conn)
    here = host or settings.host_name()
    dead = []
    for eid, pid, where, age in raw.execute(store.q("experiment_executors")).fetchall():
        if age > stale_after:
            dead.append((eid, f"the executor (pid {pid} on {where}) stopped beating {age:.0f} s ago"))
        elif pid is not None and where == here and not _alive(int(pid)):
            dead.append((eid, f"the executor (pid {pid} on {where}) died before the experiment finished"))
    for eid, msg in dead:
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


def cancel(
    experiment_id: int, *, database_url: str | None = None, stale_after: float = STALE_SECONDS
) -> bool:
    """Ask an active experiment to stop; False when it is not active.

    An executor that beats (on any machine) is asked through the cancel flag on its row, which it reads
    within `BEAT_SECONDS` and stops as on Ctrl-C, keeping what it measured. An experiment with no live
    executor (never launched, or its beat is stale) is cancelled here and now.
    """
    with db.connect(_url(database_url), role="harness", autocommit=True) as conn:
        exp = store.experiment(conn, experiment_id)
        if exp is None:
            raise LookupError(f"no experiment {experiment_id}")
        if exp["status"] not in ("pending", "running"):
            return False
        conn.execute(store.q("experiment_request_cancel"), {"id": experiment_id})
        age = exp["heartbeat_age"]
        launched = exp["executor_pid"] is not None and (
            exp["executor_host"] != settings.host_name() or _alive(int(exp["executor_pid"]))
        )
        beating = age is not None and age <= stale_after
        if not beating and not (launched and age is None):
            conn.execute(store.q("experiment_cancel_pending"), {"id": experiment_id})
        return True
