"""The executor: runs an experiment's runs in order, then audits them and writes the report.

Managed mode starts the workers of each adapter variant itself, in their own process groups, once for the
whole experiment (fault runs, and runs whose workers start after the enqueue, get fresh ones), and stops
them. Attached mode enqueues to the queues that live workers' heartbeats announce, and observes. One
run's steps are `shared.bench.run`.

SIGINT or SIGTERM (Ctrl-C), or the cancel flag on the experiment's row (`experiments.cancel`, read with
the executor's heartbeat), stops cleanly: the current run is marked cancelled, the workers are stopped, and
the audit and the report are made from what was measured. The report's files are also stored in the
database (`experiment_files`), which the web serves: a machine's disk does not outlive a deploy.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared import db, embedded, settings, spool
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
    store,
)
from shared.bench.spec import Case, Spec
from shared.bench.workers import WorkerGroup, WorkerProcess, worker_env

log = logging.getLogger(__name__)

SPOOL_WAIT_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 120.0


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
        self.output_dir = output_dir
        self.on_progress = on_progress
        self.calibrate = calibrate
        self.notes: list[str] = list(notes or [])
        self.stall_seconds = stall_seconds
        self.isolate_brokers = isolate_brokers
        self.db = store.Store(self.url)
        self.groups: dict[tuple[Any, ...], WorkerGroup] = {}
        self.calibration: dict[int, dict[str, Any]] = {}
        self.mode = "managed"
        self.env_info: dict[str, Any] = {}
        self.out = Path(".")
        self.spool_dir: Path | None = None
        self._stop = threading.Event()
        self._queues = 0
        self._seen_cases: set[str] = set()
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
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.out = Path(self.output_dir or settings.REPORTS_DIR / f"{stamp}-e{self.experiment_id}")
        self.spool_dir = self.out / "spool"
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
            self.stop_groups()
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
            self._start_shared_groups(list(spec.cases))
        sizes = self._size_cases(spec)
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
            self._progress(run_id=run_id, case=key, repetition=rep, index=i + 1, total=len(rows), done=True)

    def _size_cases(self, spec: Spec) -> dict[str, dict[str, Any]]:
        """Each sized drain's size, from a probe on its own workers before the first round (managed mode;
        attached mode runs the probe's size). What sized it goes with every run."""
        sizes: dict[str, dict[str, Any]] = {}
        for n, case in enumerate(c for c in spec.cases if c.min_seconds and c.scenario == "drain"):
            if self.mode != "managed" or self.should_stop() or self.skip_reason(case):
                continue
            try:
                sizes[case.key] = run.probe(self, case, -(self.experiment_id * 1000 + n + 1))
            except adapters.AdapterUnavailable as exc:
                self.notes.append(
                    f"{case.key}: no probe ({str(exc).splitlines()[0]}); its size is the probe's"
                )
        return sizes

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

    # ---- workers ---------------------------------------------------------------------------------

    @staticmethod
    def group_key(case: Case) -> tuple[Any, ...]:
        return (case.who, case.processes, case.slots, case.recording)

    def startup_of(self, case: Case, group: WorkerGroup, fresh: bool) -> float | None:
        """The group's start-up time, reported with a case's first run and with every fresh group."""
        first = case.key not in self._seen_cases
        self._seen_cases.add(case.key)
        return group.startup_seconds if fresh or first else None

    def spawn_group(self, case: Case, queue: str | None = None, *, start: bool = True) -> WorkerGroup:
        """A group for `case` on a new queue (or `queue`) with its environment; its workers started
        (`start`) without waiting for them, or later with `start_workers`."""
        adapter = adapters.get(case.adapter)
        env_cm = adapter.group_env(case.options, self.url) if self.isolate_brokers else None
        extra = env_cm.__enter__() if env_cm is not None else {}
        own = adapter.worker_environment(case.options, self.url)
        group = WorkerGroup(queue or self.new_queue(), env={**self.worker_env(), **extra, **own})
        group.close_env = lambda: self._close_group(case, group, env_cm)
        return self.start_workers(case, group) if start else group

    def start_workers(self, case: Case, group: WorkerGroup) -> WorkerGroup:
        argv = adapters.get(case.adapter).worker_argv(case, group.queue, Path(sys.executable).parent)
        log_path = self.out / "logs" / f"{case.who}-{group.queue}.log"
        group.workers.append(WorkerProcess(argv, group.env, log_path))
        return group

    def add_worker(self, case: Case, group: WorkerGroup) -> None:
        """Start one more worker in `group` and wait until it is ready (it replaces a killed one)."""
        self.start_workers(case, group)
        processes = case.processes if adapters.get(case.adapter).child_heartbeats else 0
        group.workers[-1].wait_ready(
            self.url, processes=processes, timeout=READY_TIMEOUT_SECONDS, should_stop=self.should_stop
        )

    def _close_group(self, case: Case, group: WorkerGroup, env_cm: Any) -> None:
        adapters.get(case.adapter).drop_queue(case.options, group.queue, group.env)
        if env_cm is not None:
            env_cm.__exit__(None, None, None)

    def wait_group(self, case: Case, group: WorkerGroup) -> WorkerGroup:
        processes = case.processes if adapters.get(case.adapter).child_heartbeats else 0
        for w in group.workers:
            w.wait_ready(
                self.url, processes=processes, timeout=READY_TIMEOUT_SECONDS, should_stop=self.should_stop
            )
        return group

    def _start_shared_groups(self, cases: list[Case]) -> None:
        """Start the workers of every variant whose runs share them, all at once, in parallel, and keep them
        for the whole experiment: start-up is paid once (and reported apart), and idle workers cost little."""
        pending = []
        for case in cases:
            key = self.group_key(case)
            if not self.shares_group(case) or key in self.groups or self.skip_reason(case):
                continue
            self.groups[key] = self.spawn_group(case)
            pending.append((key, case))
        for key, case in pending:
            try:
                self.wait_group(case, self.groups[key])
            except adapters.AdapterUnavailable as exc:
                self.groups.pop(key).stop(5)
                self.notes.append(str(exc).splitlines()[0])

    @staticmethod
    def shares_group(case: Case) -> bool:
        """Fault runs kill a worker, and gated runs start theirs after the enqueue: both get fresh ones. Held
        drains hold and release the experiment's running workers."""
        return case.scenario != "fault" and case.workers_start != "after_enqueue"

    def shared_group(self, case: Case) -> tuple[WorkerGroup, bool]:
        """The running workers for `case`, restarted if one died; and whether they were started for it."""
        key = self.group_key(case)
        group = self.groups.get(key)
        if group is not None and group.alive():
            return group, False
        if group is not None:
            group.stop()
        self.groups[key] = self.wait_group(case, self.spawn_group(case))
        return self.groups[key], True

    def stop_groups(self) -> None:
        """Stop every worker this executor started: all are asked at once, then waited for."""
        groups = list(self.groups.values())
        for g in groups:
            g.terminate()
        for g in groups:
            g.stop()
        self.groups.clear()

    def new_queue(self) -> str:
        self._queues += 1
        return f"bench-e{self.experiment_id}-{self._queues}"

    def worker_env(self) -> dict[str, str]:
        assert self.spool_dir is not None, "the spool directory is made as the experiment starts"
        return worker_env(self.url, self.spool_dir)

    def attached_queue(self, case: Case) -> tuple[str, list[int], dict[str, Any]]:
        """The queue a live worker of the case's variant announces, its workers' PIDs on this machine, and
        the fleet that announces it (`fleet.of_queue`: workers, slots and hosts, from their heartbeats)."""
        rows = store._dicts(self.db.run("workers_live", {"within": 30}))
        queue = adapters.get(case.adapter).attached_queue(rows, case.options)
        if queue is None:
            raise adapters.AdapterUnavailable(
                f"no live {case.who} worker announces itself in queue.workers; start one (make dev)"
            )
        here = {os.uname().nodename, settings.host_name()}
        local = [int(r["pid"]) for r in rows if r["host"] in here and queue in (r["queues"] or [])]
        return queue, local, fleet.of_queue(rows, case.adapter, queue)

    # ---- records and the audit -------------------------------------------------------------------

    def load_leftover_spools(self) -> None:
        """Load what dead workers left in their spools (exactly once: `spool_progress` keeps the offset)."""
        if self.spool_dir is None:
            return
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
            lambda: not self.db.one("workers_behind_spool", {"last": last}), SPOOL_WAIT_SECONDS
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
