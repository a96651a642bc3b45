"""The executor: runs an experiment's runs in order, measures each, audits it, and writes the report.

Managed mode starts the workers of each adapter configuration itself (fresh for every repetition
round, and fresh for every fault run, since a fault run kills one), in their own process groups, and
stops them. Attached mode enqueues to the queues that live workers' heartbeats announce, and observes.

Ctrl-C (SIGINT; the web's cancel sends it) stops cleanly: the current run is marked cancelled, the
workers are stopped, and the report is written from what was measured.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb

from shared import db, embedded, settings, spool
from shared.bench import adapters, audit, calibration, checks, environment, metrics, report, scenarios
from shared.bench.experiments import load_spec
from shared.bench.spec import Case

log = logging.getLogger(__name__)

STALL_SECONDS = 20.0
"""A run whose completions stop moving for this long ends (its missing jobs count as lost)."""
FAULT_STALL_SECONDS = 30.0
"""Fault runs wait longer: pgqueue rescues a dead worker's jobs after its `rescue_after` (15 s) plus
one rescuer interval (5 s)."""
SPOOL_WAIT_SECONDS = 15.0
LARGE_RUN_JOBS = 10_000
"""Runs of at least this many jobs start after a checkpoint (`_checkpoint`) and are followed by a
VACUUM (ANALYZE) of the tables they wrote (`_settle`), in managed mode."""
FAULT_STOP_SECONDS = 10.0
FAULT_AT = 1 / 3
"""A fault strikes once this fraction of the run's jobs has finished."""


def _first(row: tuple | None) -> Any:
    """The first column of a row that a count or max query always returns."""
    return row[0] if row is not None else None


def reports_root() -> Path:
    return settings.REPORTS_DIR


T = TypeVar("T")


class Harness:
    """A reconnecting autocommit connection for the executor's own queries (it survives a PostgreSQL restart)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None

    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.url, role="harness", autocommit=True)
        return self._conn

    def execute(self, sql: str, params: Any = None, retry_for: float = 30.0) -> psycopg.Cursor:
        return self.call(lambda conn: conn.execute(sql, params), retry_for)

    def call(self, fn: Callable[[psycopg.Connection], T], retry_for: float = 30.0) -> T:
        """`fn(connection)`, retried on a new connection while the server is away (up to `retry_for` s)."""
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return fn(self.conn())
            except psycopg.OperationalError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def worker_key(case: Case) -> tuple:
    return (case.who, case.processes, case.slots, case.recording)


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
    ) -> None:
        self.experiment_id = experiment_id
        self.settings = settings.load()
        self.url = database_url or self.settings.database_url
        self.cluster = cluster
        self.output_dir = output_dir
        self.on_progress = on_progress
        self.calibrate = calibrate
        self.harness = Harness(self.url)
        self._stop = threading.Event()
        self.groups: dict[tuple, adapters.WorkerGroup] = {}
        self.fault_group: adapters.WorkerGroup | None = None
        self._group_count = 0
        self.calibration: dict[int, dict[str, Any]] = {}
        self.notes: list[str] = list(notes or [])
        self.stall_seconds = stall_seconds
        self.pg_restart_possible = cluster is not None
        self._seen_cases: set[str] = set()
        self._fault_done = threading.Event()
        self._enqueue_done_at: float | None = None
        self._checkpoint_refused = False

    # ---- lifecycle -------------------------------------------------------------------------------

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def run(self) -> Path | None:
        h = self.harness
        spec, mode, status = load_spec(h.conn(), self.experiment_id)
        if status != "pending":
            raise RuntimeError(f"experiment {self.experiment_id} is {status}, not pending")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = Path(self.output_dir or reports_root() / f"{stamp}-e{self.experiment_id}")
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.spool_dir = out / "spool"
        self.spool_dir.mkdir(exist_ok=True)
        self.mode = mode
        h.execute(
            "UPDATE experiments SET status = 'running', started_at = now(), report_dir = %s, "
            "executor_pid = coalesce(executor_pid, %s) WHERE id = %s",
            (str(out), os.getpid(), self.experiment_id),
        )
        env_info = environment.capture(
            h.conn(),
            database_origin="embedded (started by the harness)" if self.cluster else "DATABASE_URL",
            mode=mode,
        )
        self.env_info = env_info
        # SIGINT (Ctrl-C, `experiments.cancel`) and SIGTERM stop the experiment and keep what was
        # measured. Installed explicitly: a process started in the background inherits SIGINT ignored.
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        final_status, error = "completed", None
        try:
            self._run_all(spec, mode)
            if self.should_stop():
                final_status = "cancelled"
        except KeyboardInterrupt:
            final_status = "cancelled"
        except Exception as exc:
            final_status, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("experiment %s failed", self.experiment_id)
        finally:
            if threading.current_thread() is threading.main_thread():
                # A second Ctrl-C must not cut the clean-up short: workers stop, the report is written.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            self._stop_group()
            self._load_leftover_spools()
            try:
                self._final_audit()
            except psycopg.Error as exc:
                log.exception("the final audit failed")
                error = error or f"the final audit failed: {exc}"
                final_status = "failed"
            h.execute(
                "UPDATE benchmark_runs SET status = 'cancelled', finished_at = now() "
                "WHERE experiment_id = %s AND status IN ('pending', 'scheduling', 'running')",
                (self.experiment_id,),
            )
            h.execute(
                "UPDATE experiments SET status = %s, error = %s, finished_at = now() WHERE id = %s",
                (final_status, error, self.experiment_id),
            )
            try:
                report.write(
                    h.conn(), self.experiment_id, out, notes=self.notes, calibration=self.calibration
                )
            except Exception as exc:  # noqa: BLE001 - the experiment's outcome is already recorded
                log.exception("writing the report failed")
                error = error or f"writing the report failed: {exc}"
                h.execute("UPDATE experiments SET error = %s WHERE id = %s", (error, self.experiment_id))
            h.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
                signal.signal(signal.SIGINT, signal.default_int_handler)
        if error:
            raise RuntimeError(error)
        return out

    def _on_signal(self, signum: int, frame: Any) -> None:
        # The first signal interrupts whatever blocks (a send, a wait); later ones only set the flag.
        if not self._stop.is_set():
            self._stop.set()
            raise KeyboardInterrupt

    def _progress(self, **info: Any) -> None:
        if self.on_progress is not None:
            self.on_progress(info)

    # ---- runs ------------------------------------------------------------------------------------

    def _run_all(self, spec: Any, mode: str) -> None:
        h = self.harness
        rows = h.execute(
            "SELECT id, case_key, repetition FROM benchmark_runs WHERE experiment_id = %s "
            "AND status = 'pending' ORDER BY id",
            (self.experiment_id,),
        ).fetchall()
        cases = {c.key: c for c in spec.cases}
        if mode == "managed":
            self._start_all_groups(list(spec.cases))
        for i, (run_id, key, rep) in enumerate(rows):
            if self.should_stop():
                break
            case = cases[key]
            self._progress(run_id=run_id, case=key, repetition=rep, index=i, total=len(rows))
            skip = self._skip_reason(case)
            if skip:
                h.execute(
                    "UPDATE benchmark_runs SET status = 'cancelled', error = %s, finished_at = now() WHERE id = %s",
                    (skip, run_id),
                )
                if skip not in self.notes:
                    self.notes.append(skip)
                continue
            if self.calibrate and case.scenario == "drain" and rep not in self.calibration:
                self._calibrate(spec, rep)
            try:
                self._run_one(run_id, case, rep)
            except KeyboardInterrupt:
                self._stop.set()
                h.execute(
                    "UPDATE benchmark_runs SET status = 'cancelled', error = 'interrupted', finished_at = now() "
                    "WHERE id = %s",
                    (run_id,),
                )
                break
            except adapters.AdapterUnavailable as exc:
                h.execute(
                    "UPDATE benchmark_runs SET status = 'failed', error = %s, finished_at = now() WHERE id = %s",
                    (str(exc), run_id),
                )
            self._progress(run_id=run_id, case=key, repetition=rep, index=i + 1, total=len(rows), done=True)

    def _skip_reason(self, case: Case) -> str | None:
        if case.scenario == "fault" and self.mode == "attached":
            return f"{case.key}: attached mode injects no faults"
        if case.fault == "restart_postgres" and not self.pg_restart_possible:
            return (
                f"{case.key}: skipped, the PostgreSQL-restart fault needs a PostgreSQL the harness "
                "started itself (DATABASE_URL is set)"
            )
        return None

    def _calibrate(self, spec: Any, rep: int) -> None:
        jobs = max(
            (c.jobs for c in spec.cases if c.workload == "noop" and c.scenario == "drain"), default=1000
        )
        try:
            self.calibration[rep] = calibration.raw_ceiling(self.url, jobs)
        except psycopg.Error as exc:
            self.notes.append(f"calibration failed in round {rep}: {exc}")

    def _worker_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.url,
            "BENCH_SPOOL_DIR": str(self.spool_dir),
            "PYTHONUNBUFFERED": "1",
        }

    def _new_queue(self) -> str:
        self._group_count += 1
        return f"bench-e{self.experiment_id}-{self._group_count}"

    def _start_all_groups(self, cases: list[Case]) -> None:
        """Start the workers of every non-fault configuration at once, in parallel, and keep them for
        the whole experiment: start-up is paid once (and reported apart), and idle workers cost little."""
        pending = []
        for case in cases:
            key = worker_key(case)
            if case.scenario == "fault" or key in self.groups or self._skip_reason(case):
                continue
            if case.adapter == "pgqueue" and adapters.pgqueue_worker_available():
                continue
            g = adapters.spawn_workers(case, self._new_queue(), self._worker_env(), self.out / "logs")
            self.groups[key] = g
            pending.append((key, g))
        for key, g in pending:
            try:
                adapters.wait_ready(g, self.url, should_stop=self.should_stop)
                log.info("started %s workers in %.1f s", g.case.who, g.startup_seconds)
            except adapters.AdapterUnavailable as exc:
                self.groups.pop(key, None)
                self.notes.append(str(exc).splitlines()[0])

    def _ensure_group(self, case: Case) -> tuple[adapters.WorkerGroup, bool]:
        """The workers for `case` and whether they were started for it (fault runs get fresh ones)."""
        if case.adapter == "pgqueue":
            why = adapters.pgqueue_worker_available()
            if why:
                raise adapters.AdapterUnavailable(why)
        key = worker_key(case)
        g = self.groups.get(key)
        if case.scenario != "fault" and g is not None and all(p.poll() is None for p in g.procs):
            return g, False
        if g is not None:
            g.stop()
        g = adapters.start_workers(
            case,
            self._new_queue(),
            self._worker_env(),
            self.out / "logs",
            self.url,
            should_stop=self.should_stop,
        )
        if case.scenario == "fault":
            self.fault_group = g
        else:
            self.groups[key] = g
        return g, True

    def _stop_group(self) -> None:
        """Stop every worker this executor started: all are asked at once, then waited for."""
        groups = [*self.groups.values(), *([self.fault_group] if self.fault_group else [])]
        for g in groups:
            g.terminate()
        for g in groups:
            g.stop()
        self.groups.clear()
        self.fault_group = None

    def _attached_queue(self, case: Case) -> tuple[str, list[int]]:
        rows = self.harness.execute(
            "SELECT queues, pid, host, info FROM queue.workers WHERE adapter = %s AND stopped_at IS NULL "
            "AND heartbeat_at > now() - interval '30 seconds'",
            (case.adapter,),
        ).fetchall()
        for queues, _pid, _host, info in rows:
            if case.adapter == "celery" and (info or {}).get("broker") != case.broker:
                continue
            if queues:
                local = [
                    int(r[1]) for r in rows if r[2] == socket.gethostname() and queues[0] in (r[0] or [])
                ]
                return queues[0], local
        raise adapters.AdapterUnavailable(
            f"no live {case.who} worker announces itself in queue.workers; start one (make dev)"
        )

    def _run_one(self, run_id: int, case: Case, rep: int) -> None:
        h = self.harness
        startup = None
        if self.mode == "managed":
            group, fresh = self._ensure_group(case)
            startup = group.startup_seconds if fresh or case.key not in self._seen_cases else None
            self._seen_cases.add(case.key)
            queue = group.queue
            roots: Callable[[], list[int]] = group.root_pids
        else:
            queue, pids = self._attached_queue(case)
            roots = lambda: pids  # noqa: E731
            group = None
        service = f"{case.adapter}-worker"
        servers = {}
        if case.adapter == "celery" and case.broker in ("redis", "rabbitmq"):
            port = checks.broker_port(case.broker, self.settings)
            pid = metrics.server_pid(port) if port else None
            if pid:
                servers[case.broker] = pid
        sampler = metrics.ResourceSampler(
            self.url,
            roots={service: roots},
            backend_services={
                f"bench-{case.adapter}": case.adapter,
                "bench-spool-loader": case.adapter,
                "bench-harness": "harness",
            },
            servers=servers,
        )
        if self.mode == "managed" and case.jobs >= LARGE_RUN_JOBS:
            self._checkpoint()
        enq = adapters.Enqueuer(case, queue, self.settings)
        before_db = metrics.db_snapshot(h.conn())
        # The queue serves every run of its worker group: count what it completed before this run sends
        # anything (the workers start on the first jobs while the rest are still being sent).
        baseline = self._count_completed_in_queue(queue) if case.adapter == "pgqueue" else None
        h.execute(
            "UPDATE benchmark_runs SET status = 'scheduling', scheduling_started_at = now(), environment = %s "
            "WHERE id = %s",
            (Jsonb(self._run_environment(case)), run_id),
        )
        sampler.start()
        fault_info: dict[str, Any] = {}
        injector = None
        if case.scenario == "fault":
            # The fault strikes from its own thread, so that it can land during a slow enqueue too.
            injector = threading.Thread(
                target=self._fault_thread, args=(run_id, case, group, fault_info), name="fault", daemon=True
            )
            self._enqueue_done_at = None
            injector.start()
        interrupted = False
        try:
            sent = scenarios.enqueue(case, enq, run_id, self.should_stop)
            self._enqueue_done_at = sent.finished_at
        except KeyboardInterrupt:
            interrupted = True
            sent = None
        finally:
            enq.close()
        h.execute(
            "UPDATE benchmark_runs SET status = 'running', scheduling_finished_at = now() WHERE id = %s",
            (run_id,),
        )
        waited: dict[str, Any] = {}
        if not interrupted and sent is not None:
            try:
                waited = self._wait(run_id, case, sent.sent, queue, baseline)
            except KeyboardInterrupt:
                interrupted = True
        self._fault_done.set()
        if injector is not None:
            injector.join(10)
        self._fault_done.clear()
        if case.scenario == "fault" and group is not None:
            # The fault's workers go: a clean stop flushes their spools, then dead workers' spools load.
            # A Celery worker whose pool child was SIGKILLed can hang in its warm shutdown: a short wait.
            group.stop(timeout=FAULT_STOP_SECONDS)
            self.fault_group = None
        resources = sampler.stop()
        if case.scenario == "fault":
            self._load_leftover_spools()
        after_db = metrics.db_snapshot(h.conn())
        n_sent = sent.sent if sent else 0
        m = self._measure(run_id, case, n_sent, sent, waited, resources, before_db, after_db)
        m["fault"] = fault_info or None
        m["worker_startup_s"] = startup
        m["slot_mapping"] = case.slot_mapping()
        m["queue"] = queue
        m["calibration"] = self.calibration.get(rep)
        status = "cancelled" if interrupted or self.should_stop() else "completed"
        h.execute(
            """
            UPDATE benchmark_runs
               SET status = %s, metrics = %s, finished_at = now(),
                   first_job_started_at = to_timestamp(%s), last_job_finished_at = to_timestamp(%s),
                   error = %s
             WHERE id = %s
            """,
            (
                status,
                Jsonb(m),
                m.get("first_start_ts"),
                m.get("last_finish_ts"),
                "interrupted" if status == "cancelled" else None,
                run_id,
            ),
        )
        if interrupted:
            raise KeyboardInterrupt
        if self.mode == "managed":
            self._settle(case, queue)

    def _settle(self, case: Case, queue: str) -> None:
        """Between two runs, outside every measured window: leave the database as the next run should
        find it, so that no repetition pays for its predecessors' rows.

        pgqueue's finished jobs of the run are deleted from its queue (the harness owns it; pgqueue's
        cleaner would delete them once their retention passed). After a large run the tables it wrote
        are vacuumed and analyzed, so that no autovacuum or autoanalyze of them falls due inside the next
        run and takes CPU from it. Small runs leave autovacuum little to do. Only in managed mode: an
        attached worker's queue and database are not the harness's to clean. kombu's message table is left
        as kombu keeps it (it never deletes a row: docs/celery.md)."""
        if case.adapter == "pgqueue":
            mod = adapters.pgqueue_module()
            self.harness.call(lambda conn: mod.delete_finished(conn, queue))
        if case.jobs < LARGE_RUN_JOBS:
            return
        tables = ["job_events"] if case.recording else []
        if case.adapter == "pgqueue":
            tables.append("queue.pgqueue_jobs")
        if tables:
            self.harness.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")

    def _checkpoint(self) -> None:
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
            self.harness.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege as exc:
            self._checkpoint_refused = True
            log.warning("no checkpoint between runs (%s); runs may pay for one", str(exc).strip())

    def _run_environment(self, case: Case) -> dict[str, Any]:
        env = dict(self.env_info)
        if case.adapter == "celery":
            env["celery_config"] = environment.celery_configuration(
                case.broker or "postgres", case.celery_config or "defaults", self.settings
            )
        env["slot_mapping"] = case.slot_mapping()
        env["load_average"] = [round(x, 2) for x in os.getloadavg()]
        return env

    def _count_done(self, run_id: int) -> int:
        return int(
            _first(
                self.harness.execute(
                    "SELECT count(DISTINCT seq) FROM job_events WHERE run_id = %s AND kind = 'finish'",
                    (run_id,),
                ).fetchone()
            )
        )

    def _count_completed_in_queue(self, queue: str) -> int | None:
        """pgqueue's own count of completed jobs in `queue` (recording-off runs have no records)."""
        try:
            mod = adapters.pgqueue_module()
        except adapters.AdapterUnavailable:
            return None
        return int(self.harness.call(lambda conn: mod.count_matching(conn, queue=queue, state="completed")))

    def _wait(
        self,
        run_id: int,
        case: Case,
        n: int,
        queue: str,
        baseline: int | None,
    ) -> dict[str, Any]:
        """Wait until every job finished, or completions stall.

        `baseline` is pgqueue's count of completed jobs in `queue` before the run sent anything.
        pgqueue's end is observed in its queue, whether the run records or not, so that the paired runs
        of the recording overhead end on the same signal: a cheap poll (`queue_busy`) until nothing is
        left to run, the completed count once a second for progress. The records, loaded at least every
        second, are then awaited; for Celery they are the only signal.
        """
        stall = self.stall_seconds or (FAULT_STALL_SECONDS if case.scenario == "fault" else STALL_SECONDS)
        started = time.time()
        observed_done_at = None
        done = -1
        last_change, last_done = time.monotonic(), -1

        def progressed(count: int) -> bool:
            nonlocal last_change, last_done
            if count != last_done:
                last_done, last_change = count, time.monotonic()
            return time.monotonic() - last_change <= stall

        if case.adapter == "pgqueue":
            mod = adapters.pgqueue_module()
            count_at = 0.0
            while True:
                if self.should_stop():
                    raise KeyboardInterrupt
                busy = self.harness.call(lambda conn: mod.queue_busy(conn, queue))
                if not busy or time.monotonic() >= count_at:
                    done = (self._count_completed_in_queue(queue) or 0) - (baseline or 0)
                    count_at = time.monotonic() + 1.0
                    if not busy and done >= n:
                        observed_done_at = time.time()
                        break
                if not progressed(done):
                    break
                time.sleep(0.02)
        if case.recording and (observed_done_at is not None or case.adapter != "pgqueue"):
            last_change, last_done = time.monotonic(), -1
            while True:
                if self.should_stop():
                    raise KeyboardInterrupt
                done = self._count_done(run_id)
                if done >= n:
                    observed_done_at = observed_done_at or time.time()
                    break
                if not progressed(done):
                    break
                time.sleep(0.1)
        return {
            "wait_seconds": round(time.time() - started, 3),
            "stalled": done < n,
            "observed_done_at": observed_done_at,
            "done_when_waiting_ended": done,
        }

    def _fault_thread(
        self, run_id: int, case: Case, group: adapters.WorkerGroup | None, fault_info: dict[str, Any]
    ) -> None:
        """Inject the case's fault mid-run: once a third of the jobs finished (as the records show), or
        once a third of the work's expected busy time passed after the enqueue ended and the first job
        was seen started (the records lag up to a second behind, longer than a fast queue needs for the
        whole run). Counting from the first start, not from the enqueue, keeps a slow-starting worker
        from being struck before it ran anything."""
        busy = case.jobs * float(case.params.get("ms", 0) or 0) / 1000.0 / max(1, case.total_slots)
        try:
            conn = db.connect(self.url, role="harness-fault", autocommit=True)
        except psycopg.Error:
            return
        first_start_seen: float | None = None
        with conn:
            while not self._fault_done.is_set() and not self.should_stop():
                try:
                    started, done = conn.execute(
                        "SELECT count(DISTINCT seq) FILTER (WHERE kind = 'start'), "
                        "count(DISTINCT seq) FILTER (WHERE kind = 'finish') FROM job_events WHERE run_id = %s",
                        (run_id,),
                    ).fetchone() or (0, 0)
                except psycopg.Error:
                    return
                if started and first_start_seen is None:
                    first_start_seen = time.time()
                enq_done = self._enqueue_done_at
                due = (
                    enq_done is not None
                    and first_start_seen is not None
                    and busy > 0
                    and time.time() >= max(enq_done, first_start_seen) + busy * FAULT_AT
                )
                if done >= case.jobs * FAULT_AT or due:
                    fault_info.update(self._inject(case, group))
                    fault_info["jobs_started_before"] = int(started)
                    fault_info["jobs_finished_before"] = int(done)
                    return
                time.sleep(0.02)

    def _inject(self, case: Case, group: adapters.WorkerGroup | None) -> dict[str, Any]:
        at = time.time()
        if case.fault == "kill_worker":
            killed = group.kill_one() if group is not None else None
            pid, at = killed if killed is not None else (None, at)
            log.info("fault: SIGKILL worker process %s", pid)
            return {"kind": "kill_worker", "pid": pid, "at": at}
        if case.fault == "restart_postgres" and self.cluster is not None:
            t0 = time.monotonic()
            self.cluster.restart()
            return {"kind": "restart_postgres", "at": at, "downtime_s": round(time.monotonic() - t0, 3)}
        return {"kind": case.fault, "skipped": True, "at": at}

    def _wait_spools_loaded(self) -> None:
        """Wait (with a deadline) until every worker that may hold records of this experiment has
        loaded its spool past the experiment's last record. Stopped workers did a final load."""
        row = self.harness.execute(
            "SELECT max(e.ts_us) / 1e6::float8 FROM job_events e JOIN benchmark_runs r ON r.id = e.run_id "
            "WHERE r.experiment_id = %s",
            (self.experiment_id,),
        ).fetchone()
        last = row[0] if row else None
        if last is None:
            return
        deadline = time.monotonic() + SPOOL_WAIT_SECONDS
        while time.monotonic() < deadline:
            behind = _first(
                self.harness.execute(
                    "SELECT count(*) FROM queue.workers WHERE stopped_at IS NULL "
                    "AND heartbeat_at > now() - interval '30 seconds' "
                    "AND (spool_loaded_at IS NULL OR spool_loaded_at < to_timestamp(%s))",
                    (last,),
                ).fetchone()
            )
            if not behind:
                return
            time.sleep(0.2)
        self.notes.append(
            f"{behind} live worker(s) had not loaded their spools past the last record within "
            f"{SPOOL_WAIT_SECONDS:.0f} s; their late records are not in the audit"
        )

    def _final_audit(self) -> None:
        """Audit every run once all records are in: the managed workers are stopped by now (each did a
        final spool load), dead workers' spools were loaded by the harness, and live (attached) workers
        are waited for. Auditing at the end also catches a duplicate that ran during a later run."""
        if self.mode == "attached":
            self._wait_spools_loaded()
        rows = self.harness.execute(
            "SELECT id, metrics FROM benchmark_runs WHERE experiment_id = %s AND recording "
            "AND status IN ('completed', 'cancelled') AND metrics ? 'enqueued'",
            (self.experiment_id,),
        ).fetchall()
        conn = self.harness.conn()
        for run_id, m in rows:
            a = audit.audit_run(conn, run_id, range(int(m.get("enqueued") or 0)))
            self.harness.execute(
                "UPDATE benchmark_runs SET metrics = jsonb_set(metrics, '{audit}', %s) WHERE id = %s",
                (Jsonb(a.to_dict()), run_id),
            )

    def _load_leftover_spools(self) -> None:
        """Load what dead workers left in their spools (exactly once: `spool_progress` keeps the offset)."""
        if not getattr(self, "spool_dir", None):
            return
        try:
            conn = db.connect(self.url, role="harness-spool")
        except psycopg.Error:
            return
        with conn:
            for path in sorted(self.spool_dir.glob("*.spool")):
                worker_id = path.stem.rsplit("-", 1)[0]
                try:
                    spool.load_file(conn, path, worker_id)
                except psycopg.Error as exc:
                    log.warning("could not load %s: %s", path, exc)

    # ---- figures ---------------------------------------------------------------------------------

    def _measure(
        self,
        run_id: int,
        case: Case,
        n_sent: int,
        sent: scenarios.EnqueueResult | None,
        waited: dict[str, Any],
        resources: dict[str, Any],
        before_db: dict[str, float],
        after_db: dict[str, float],
    ) -> dict[str, Any]:
        conn = self.harness.conn()
        m: dict[str, Any] = {
            "jobs": case.jobs,
            "enqueued": n_sent,
            "enqueue_seconds": round(sent.seconds, 4) if sent else None,
            "enqueue_rate": round(sent.rate, 1) if sent else None,
            "sender_max_lag_s": round(sent.max_lag_s, 4) if sent else None,
            "db": metrics.db_delta(before_db, after_db),
            "resources": resources["totals"],
            "resource_samples": resources["samples"],
            "wait": waited,
        }
        if sent and waited.get("observed_done_at"):
            m["wall_seconds"] = round(waited["observed_done_at"] - sent.started_at, 4)
        if not case.recording:
            m["audit"] = None
            if m.get("wall_seconds"):
                # Not `throughput`: without records it spans the enqueue too, unlike the drain figure.
                m["wall_throughput"] = round(n_sent / m["wall_seconds"], 1)
            return m
        timings = metrics.job_timings(conn, run_id)
        lat = metrics.latencies(timings, from_scheduled=case.scenario == "steady")
        m["latency_ms"] = metrics.latency_summary(lat)
        m["latency_cdf"] = {k: metrics.cdf_points(v) for k, v in lat.items()}
        starts = [t.first_start for t in timings if t.first_start is not None]
        finishes = sorted(t.finish for t in timings if t.finish is not None)
        if starts and finishes:
            first, last = min(starts), max(finishes)
            m["first_start_ts"], m["last_finish_ts"] = first, last
            drain = max(last - first, 1e-6)
            m["drain_seconds"] = round(drain, 4)
            m["throughput"] = round(len(finishes) / drain, 1)
            m["throughput_series"] = metrics.throughput_series(finishes, first)
        # Provisional: `_final_audit` redoes it once every record is in.
        m["audit"] = audit.audit_run(conn, run_id, range(n_sent)).to_dict()
        return m
