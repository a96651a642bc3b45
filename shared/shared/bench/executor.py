"""The executor: runs an experiment's runs in order, then audits them and writes the report.

Managed mode starts the workers of each adapter variant itself, in their own process groups, once for the
whole experiment (fault runs, and runs whose workers start after the enqueue, get fresh ones), and stops
them (`shared.bench.managed`). Attached mode enqueues to the queues that live workers' heartbeats announce,
and observes. Sized drains are probed before the first round (`shared.bench.sizing`); one run's steps are
`shared.bench.run`.

SIGINT or SIGTERM (Ctrl-C), or the cancel flag on the experiment's row (`experiments.cancel`, read with
the executor's heartbeat), stops cleanly: the current run is marked cancelled, the workers are stopped, and
the audit and the report are made from what was measured. The report's files are also stored in the
database (`experiment_files`), which the web serves: a machine's disk does not outlive a deploy.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared import db, embedded, heartbeat, settings, spool, workloads
from shared.bench import (
    adapters,
    audit,
    calibration,
    environment,
    experiments,
    fleet,
    polling,
    report,
    run,
    sizing,
    store,
)
from shared.bench.managed import ManagedGroups
from shared.bench.spec import Case, Spec

log = logging.getLogger(__name__)

SPOOL_WAIT_SECONDS = 15.0


class Executor:
    """Executes one experiment; `run()` returns the report folder."""

    def __init__(
        self,
        experiment_id: int,
        *,
        database_url: str | None = None,
        cluster: embedded.EmbeddedCluster | None = None,
        output_dir: Path | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        calibrate: bool = True,
        notes: list[str] | None = None,
        stall_seconds: float | None = None,
        isolate_brokers: bool = False,
    ) -> None:
        self.experiment_id = experiment_id
        self.settings = settings.load()
        self.url = database_url or self.settings.database_url
        self.cluster = cluster
        self.on_progress = on_progress
        self.calibrate = calibrate
        self.notes: list[str] = list(notes or [])
        self.stall_seconds = stall_seconds
        self.db = store.Store(self.url)
        self.calibration: dict[int, dict[str, Any]] = {}
        self.mode = "managed"
        self.env_info: dict[str, Any] = {}
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out = Path(output_dir or settings.REPORTS_DIR / f"{stamp}-e{experiment_id}")
        self.spool_dir = self.out / "spool"
        self._stop = threading.Event()
        self.workers = ManagedGroups(
            self.url,
            experiment_id,
            self.out,
            self.spool_dir,
            isolate_brokers=isolate_brokers,
            should_stop=self.should_stop,
        )
        self._checkpoint_refused = False
        self._saturated: dict[str, float] = {}
        """Sweeps that saturated, and at which rate: their higher rates are not run."""

    def should_stop(self) -> bool:
        return self._stop.is_set()

    # ---- lifecycle -------------------------------------------------------------------------------

    def run(self) -> Path | None:
        spec, self.mode, status = experiments.load_spec(self.db.conn(), self.experiment_id)
        if status != "pending":
            raise RuntimeError(f"experiment {self.experiment_id} is {status}, not pending")
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.db.run(
            "experiment_start", {"id": self.experiment_id, "report_dir": str(self.out), "pid": os.getpid()}
        )
        origin = "embedded (started by the harness)" if self.cluster else "DATABASE_URL"
        self.env_info = environment.capture(self.db.conn(), database_origin=origin, mode=self.mode)
        # SIGINT and SIGTERM stop the experiment and keep what was measured. Installed explicitly: a
        # process started in the background inherits SIGINT ignored.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._on_signal) if main else None
        if main:
            signal.signal(signal.SIGINT, self._on_signal)
        beat = experiments.ExecutorHeartbeat(
            self.experiment_id, self.url, lambda: self._on_cancel_flag(main), pid=os.getpid()
        )
        final_status, error = "completed", None
        try:
            beat.start()
            self._run_all(spec)
            if self.should_stop():
                final_status = "cancelled"
        except KeyboardInterrupt:
            final_status = "cancelled"
        except Exception as exc:
            final_status, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("experiment %s failed", self.experiment_id)
        finally:
            # From here the executor ends the experiment itself: its beat only keeps it alive.
            beat.on_cancel = lambda: None
            if main:
                # A second Ctrl-C must not cut the clean-up short: workers stop, the report is written.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.workers.stop_all()
            self.load_leftover_spools()
            try:
                self._final_audit()
            except psycopg.Error as exc:
                log.exception("the final audit failed")
                error = error or f"the final audit failed: {exc}"
                final_status = "failed"
            self.db.run(
                "runs_end_unfinished", {"id": self.experiment_id, "status": "cancelled", "error": None}
            )
            self.db.run(
                "experiment_finish", {"id": self.experiment_id, "status": final_status, "error": error}
            )
            try:
                files = report.write(self.db.conn(), self.experiment_id, self.out, notes=self.notes)
                report.store_files(self.db.conn(), self.experiment_id, files)
            except Exception as exc:  # noqa: BLE001 - the experiment's outcome is already recorded
                log.exception("writing the report failed")
                error = error or f"writing the report failed: {exc}"
                self.db.run("experiment_set_error", {"id": self.experiment_id, "error": error})
            beat.stop()
            self.db.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
                signal.signal(signal.SIGINT, signal.default_int_handler)
        if error:
            raise RuntimeError(error)
        return self.out

    def _on_signal(self, signum: int, frame: Any) -> None:
        # The first signal interrupts whatever blocks (a send, a wait); later ones only set the flag.
        if not self._stop.is_set():
            self._stop.set()
            raise KeyboardInterrupt

    def _on_cancel_flag(self, main: bool) -> None:
        """The experiment's row asks it to stop: as on Ctrl-C (the main thread's handler interrupts what
        blocks), or only the flag when the executor runs in another thread."""
        if self._stop.is_set():
            return
        log.info("experiment %s: cancel requested", self.experiment_id)
        if main:
            os.kill(os.getpid(), signal.SIGINT)
        else:
            self._stop.set()

    def _progress(self, **info: Any) -> None:
        if self.on_progress is not None:
            self.on_progress(info)

    # ---- runs ------------------------------------------------------------------------------------

    def _run_all(self, spec: Spec) -> None:
        rows = self.db.run("runs_pending", {"id": self.experiment_id}).fetchall()
        cases = {c.key: c for c in spec.cases}
        if self.mode == "managed":
            self.notes += self.workers.start_shared(list(spec.cases), self.skip_reason)
        sizes = sizing.size_cases(self, spec)
        for i, (run_id, key, rep) in enumerate(rows):
            if self.should_stop():
                break
            case = cases[key]
            if key in sizes:
                case = case.model_copy(update={"jobs": sizes[key]["jobs"]})
                self.db.run("run_set_jobs", {"id": run_id, "jobs": case.jobs})
            self._progress(run_id=run_id, case=key, repetition=rep, index=i, total=len(rows))
            skip = self.skip_reason(case)
            if skip:
                self.db.run("run_end", {"id": run_id, "status": "cancelled", "error": skip})
                if skip not in self.notes:
                    self.notes.append(skip)
                continue
            if self.calibrate and case.scenario == "drain" and rep not in self.calibration:
                self._calibrate(spec, rep)
            try:
                m = run.execute(self, run_id, case, rep, sizing=sizes.get(key))
                if (m.get("sweep") or {}).get("saturation"):
                    self._saturated.setdefault(self.sweep_line(case), case.rate or 0.0)
            except KeyboardInterrupt:
                self._stop.set()
                self.db.run("run_end", {"id": run_id, "status": "cancelled", "error": "interrupted"})
                break
            except adapters.AdapterUnavailable as exc:
                self.db.run("run_end", {"id": run_id, "status": "failed", "error": str(exc)})
                note = f"{key}: not run, {exc}"
                if note not in self.notes:
                    self.notes.append(note)
            self._progress(run_id=run_id, case=key, repetition=rep, index=i + 1, total=len(rows), done=True)

    @staticmethod
    def sweep_line(case: Case) -> str:
        """The sweep a rate belongs to: the variant and everything but the rate."""
        return case.key.replace(f"@{case.rate:g}/s", "")

    def skip_reason(self, case: Case) -> str | None:
        saturated_at = self._saturated.get(self.sweep_line(case)) if case.scenario == "sweep" else None
        if saturated_at is not None and (case.rate or 0) > saturated_at:
            return f"{case.key}: not run, {case.who} saturated at {saturated_at:g} jobs/s"
        if case.scenario == "fault" and self.mode == "attached":
            return f"{case.key}: attached mode injects no faults"
        if case.fault == "restart_postgres" and self.cluster is None:
            return (
                f"{case.key}: skipped, the PostgreSQL-restart fault needs a PostgreSQL the harness "
                "started itself (DATABASE_URL is set)"
            )
        return None

    def _calibrate(self, spec: Spec, rep: int) -> None:
        # As large as the repeated noop drains it is compared with (a one-off large run would make
        # every round's calibration as long as itself).
        drains = [
            c.jobs for c in spec.cases if c.workload == "noop" and c.scenario == "drain" and not c.repetitions
        ]
        jobs = max(drains, default=1000)
        try:
            self.calibration[rep] = calibration.raw_ceiling(self.url, jobs)
        except psycopg.Error as exc:
            self.notes.append(f"calibration failed in round {rep}: {exc}")

    def checkpoint(self) -> None:
        """Write a checkpoint now, before a large run, so that none falls due inside it.

        A run of 100,000 jobs writes some 150 MB of WAL: without this, one run in a few would start a
        checkpoint (`max_wal_size`, `checkpoint_timeout`) and pay the full-page images of the pages it
        touched next, more WAL and a slower drain than its pair (seen in the recording pair). After a
        checkpoint every large run starts from the same state, whatever ran before it. A role without the
        right to checkpoint (neither superuser nor `pg_checkpoint`) is told once and skipped.
        """
        if self._checkpoint_refused:
            return
        try:
            self.db.run("checkpoint")
        except psycopg.errors.InsufficientPrivilege as exc:
            self._checkpoint_refused = True
            log.warning("no checkpoint between runs (%s); runs may pay for one", str(exc).strip())

    # ---- attached mode ---------------------------------------------------------------------------

    def attached_queue(self, case: Case) -> tuple[str, list[int], dict[str, Any]]:
        """The queue a live worker of the case's variant announces, its workers' PIDs on this machine, and
        the fleet that announces it (`fleet.of_queue`: workers, slots and hosts, from their heartbeats)."""
        rows = self.db.call(lambda conn: heartbeat.rows(conn, "workers_live", {"within": 30, "limit": None}))
        queue = adapters.get(case.adapter).attached_queue(rows, case.options)
        if queue is None:
            raise adapters.AdapterUnavailable(
                f"no live {case.who} worker announces itself in queue.workers; start one (make dev)"
            )
        module = workloads.module_of(case.workload)
        missing = fleet.without_module(rows, queue, module) if module else []
        if missing:
            raise adapters.AdapterUnavailable(
                f"the live {case.who} workers {', '.join(missing)} do not import {module}, which registers the "
                f"workload {case.workload!r}; start them with BENCH_WORKLOADS={module}"
            )
        here = {os.uname().nodename, settings.host_name()}
        local = [int(r["pid"]) for r in rows if r["host"] in here and queue in (r["queues"] or [])]
        return queue, local, fleet.of_queue(rows, case.adapter, queue)

    # ---- records and the audit -------------------------------------------------------------------

    def load_leftover_spools(self) -> None:
        """Load what dead workers left in their spools (exactly once: `spool_progress` keeps the offset)."""
        try:
            conn = db.connect(self.url, role="harness-spool")
        except psycopg.Error:
            return
        with conn:
            for path in sorted(self.spool_dir.glob("*.spool")):
                try:
                    spool.load_file(conn, path, path.stem.rsplit("-", 1)[0])
                except psycopg.Error as exc:
                    log.warning("could not load %s: %s", path, exc)

    def _wait_spools_loaded(self) -> None:
        """Wait (with a deadline) until every live worker loaded its spool past the experiment's last
        record. Stopped workers did a final load."""
        last = self.db.one("experiment_last_record", {"id": self.experiment_id})
        if last is None:
            return
        waited = polling.until(
            lambda: (
                not self.db.call(
                    lambda conn: heartbeat.rows(conn, "workers_behind_spool", {"last": last})[0]["behind"]
                )
            ),
            SPOOL_WAIT_SECONDS,
        )
        if not waited:
            self.notes.append(
                f"live workers had not loaded their spools past the last record within {SPOOL_WAIT_SECONDS:.0f} s; "
                "their late records are not in the audit"
            )

    def _final_audit(self) -> None:
        """Audit every run once all records are in: the managed workers are stopped by now (each did a
        final spool load), dead workers' spools were loaded by the harness, and live (attached) workers
        are waited for. Auditing at the end also catches a duplicate that ran during a later run."""
        if self.mode == "attached":
            self._wait_spools_loaded()
        conn = self.db.conn()
        for run_id, m in self.db.run("runs_to_audit", {"id": self.experiment_id}).fetchall():
            a = audit.audit_run(conn, run_id, range(int(m.get("enqueued") or 0)))
            self.db.run("run_set_audit", {"id": run_id, "audit": Jsonb(a.to_dict())})
