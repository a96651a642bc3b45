"""One worker process: claims batches, runs them on N slot threads, hands outcomes to the completer.

Threads: the main thread fetches (claims) and watches deadlines; N slots run jobs through
`shared.contract.execute`; the completer writes outcomes in batches; the listener turns NOTIFYs into
wake-ups; the heartbeat keeps this process's row in `queue.workers` fresh (the rescuer reads it).

The supervisor starts this module (`python -m pgqueue_worker.process`) with the resolved configuration
in `PGQUEUE_CHILD_CONFIG`, the worker id in `PGQUEUE_WORKER_ID` and its own PID in `PGQUEUE_PARENT_PID`.
Exit codes: 0 after a clean stop, `EXIT_STUCK` when every slot is stuck past its deadline (the
supervisor replaces the process), 2 for bad configuration.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, NoReturn

import psycopg
from psycopg.rows import tuple_row

from pgqueue_worker.completer import Completer, error_record
from pgqueue_worker.config import Config
from pgqueue_worker.listener import Listener
from shared import contract, db, heartbeat, settings, spool, workloads
from shared.pgqueue import queries

log = logging.getLogger("pgqueue_worker.process")

EXIT_STUCK = 3
PREFETCH_SECONDS = 0.1  # hold about this much work beyond the busy slots (capped by --prefetch)
HOLD_SECONDS = 0.5
"""A claimed job waits in the process only if it should start within about this long: every HOLD_SECONDS
the fetcher hands back what the process will not start by then at its current rate (all of it when no
job finished and nothing was claimed meanwhile), so that another process may run it now."""
PR_SET_PDEATHSIG = 1


class Job:
    """One claimed attempt, as the process holds it."""

    __slots__ = (
        "id",
        "task",
        "params",
        "meta",
        "attempt",
        "max_attempts",
        "timeout",
        "priority",
        "run_at",
        "deadline",
        "timed_out",
    )

    def __init__(self, row: tuple[Any, ...]) -> None:
        (
            self.id,
            self.task,
            self.params,
            self.meta,
            self.attempt,
            self.max_attempts,
            self.timeout,
            self.priority,
            self.run_at,
        ) = row
        self.deadline: float | None = None  # monotonic
        self.timed_out = False


class Slot:
    __slots__ = ("index", "job", "thread")

    def __init__(self, index: int) -> None:
        self.index = index
        self.job: Job | None = None
        self.thread: threading.Thread | None = None


def die_with_parent(parent_pid: int | None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux `PR_SET_PDEATHSIG`).

    If the parent died before the request, exit now: the kernel will not tell us any more.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


class WorkerProcess:
    """The fetch/execute/complete engine of one process."""

    def __init__(
        self, cfg: Config, worker_id: str, database_url: str, *, supervisor_id: str | None = None
    ) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        self.database_url = database_url
        self.supervisor_id = supervisor_id
        self.queues = list(cfg.queues)
        # capacity = threads + prefetch, where prefetch adapts to the completion rate (see _adapt)
        self.rate = 0.0
        self.done = 0
        self._rate_at = time.monotonic()
        self._rate_done = 0
        self._set_capacity(0)
        self.buffer: collections.deque[Job] = collections.deque()
        self.cond = threading.Condition()
        self.busy = 0
        self.stuck = 0
        self.slots = [Slot(i) for i in range(cfg.threads)]
        self.wake = threading.Event()
        self.drained = dict.fromkeys(self.queues, False)
        self.stopping = threading.Event()
        self.completer = Completer(
            database_url,
            worker_id,
            flush_interval=cfg.flush_interval,
            bound=cfg.completion_bound,
            retry_base=cfg.retry_base,
        )
        self.listener = Listener(database_url, self.queues, self._on_wake, self._on_recheck)
        self.heartbeat = heartbeat.Heartbeat(
            heartbeat.WorkerIdentity(
                worker_id,
                "pgqueue",
                self.queues,
                1,
                cfg.threads,
                info={
                    "role": "process",
                    "supervisor": supervisor_id,
                    "threads": cfg.threads,
                    "batch_size": cfg.batch_size,
                    "prefetch": cfg.prefetch,
                    "flush_interval": cfg.flush_interval,
                    "completion_bound": cfg.completion_bound,
                    "poll_interval": cfg.poll_interval,
                },
            ),
            database_url,
            interval=cfg.heartbeat_interval,
        )
        self.recorder: spool.SpoolRecorder | None = None
        self._conn: psycopg.Connection | None = None
        self._rr = 0
        self.claimed = 0
        self.claims = 0
        # when the fetcher next looks at the deadlines (monotonic; a slot starting a job with an earlier
        # deadline wakes it), under self.cond
        self._timer_at = math.inf
        # the hold check (HOLD_SECONDS): when it runs next, `done` when it last ran, a claim since then
        self._hold_at = 0.0
        self._hold_done = 0
        self._claimed_since_hold = False
        self._recheck = False  # a cancel, discard or pause: re-check the jobs held and not started
        self.handed_back = 0

    # --- how much to hold ----------------------------------------------------------------------------

    def _set_capacity(self, prefetch: int) -> None:
        self.capacity = self.cfg.threads + prefetch
        # claim when at least this many jobs fit; slots ask for a claim when the buffer falls this low
        self.min_claim = max(1, min(self.cfg.batch_size, self.capacity // 2))
        self.low_water = max(0, self.capacity - self.min_claim - self.cfg.threads)

    def _adapt(self) -> None:
        """Prefetch what this process completes in PREFETCH_SECONDS, at most `--prefetch`.

        Short jobs get batches of `--batch-size` (the slots never wait for a round trip); long jobs are
        not hoarded by one process while another idles.
        """
        now = time.monotonic()
        elapsed = now - self._rate_at
        if elapsed < 0.1:
            return
        done = self.done
        current = (done - self._rate_done) / elapsed
        self.rate = current if self.rate == 0 else 0.5 * self.rate + 0.5 * current
        self._rate_at, self._rate_done = now, done
        self._set_capacity(min(self.cfg.prefetch, int(self.rate * PREFETCH_SECONDS)))

    # --- wake-ups ------------------------------------------------------------------------------------

    def _on_wake(self, queue: str | None) -> None:
        if queue is None:
            for q in self.drained:
                self.drained[q] = False
        else:
            self.drained[queue] = False
        self.wake.set()

    def _on_recheck(self) -> None:
        self._recheck = True
        self.wake.set()

    # --- the slots -----------------------------------------------------------------------------------

    def _slot_loop(self, slot: Slot) -> None:
        cond = self.cond
        buffer = self.buffer
        while True:
            timer = False
            with cond:
                while not buffer:
                    if self.stopping.is_set():
                        return
                    cond.wait()
                job = buffer.popleft()
                self.busy += 1
                if job.timeout:
                    job.deadline = time.monotonic() + job.timeout
                    # the fetcher may sleep past this deadline (up to --poll-interval): wake it
                    if job.deadline < self._timer_at:
                        self._timer_at = job.deadline
                        timer = True
                slot.job = job
                ask = len(buffer) <= self.low_water
            if timer or (ask and not self.wake.is_set() and not all(self.drained.values())):
                self.wake.set()
            self._run(job, slot)

    def _run(self, job: Job, slot: Slot) -> None:
        ctx = contract.Ctx(
            "pgqueue",
            attempt=job.attempt,
            worker_id=self.worker_id,
            deadline=time.time() + job.timeout if job.timeout else None,
            job_id=job.id,
        )
        outcome: BaseException | None = None
        unknown = False
        try:
            contract.execute(job.task, job.params, job.meta, ctx)
        except workloads.UnknownTask as exc:
            outcome, unknown = exc, True
        except BaseException as exc:  # noqa: BLE001 - a job's failure, whatever it is, is recorded
            outcome = exc
        late = False
        if job.deadline is not None:
            with self.cond:
                late = job.timed_out
                job.deadline = None  # finished: the deadline watcher leaves this attempt alone
        # The outcome reaches the completer before the slot lets go of the job, so that the job is
        # always known to this process (held, running or pending): the hand-back of unknown jobs after
        # a lost connection must never take a finished job for one a lost claim gave us.
        try:
            if late:
                # The attempt was already failed when its deadline passed. Send the late success
                # anyway: the ownership check in the completion query ignores it.
                log.info(
                    "job %s attempt %s finished after its timeout; its completion is ignored",
                    job.id,
                    job.attempt,
                )
                if outcome is None:
                    self.completer.complete(job.id, job.attempt)
            elif outcome is None:
                self.completer.complete(job.id, job.attempt)
            else:
                if unknown:
                    log.error("job %s: %s; discarding it", job.id, outcome)
                self.completer.fail(
                    job.id, job.attempt, error_record(outcome, job.attempt, self.worker_id), discard=unknown
                )
        finally:
            # whatever happened above, the slot goes on with the next job
            with self.cond:
                slot.job = None
                self.busy -= 1
                self.done += 1
                if late:
                    self.stuck -= 1
        if not self.wake.is_set() and not self.buffer and not all(self.drained.values()):
            self.wake.set()

    # --- deadlines -----------------------------------------------------------------------------------

    def _check_deadlines(self) -> float | None:
        """Fail attempts past their deadline; return seconds until the next deadline (None: none)."""
        now = time.monotonic()
        next_in: float | None = None
        expired: list[Job] = []
        with self.cond:
            for slot in self.slots:
                job = slot.job
                if job is None or job.deadline is None or job.timed_out:
                    continue
                if now >= job.deadline:
                    job.timed_out = True
                    self.stuck += 1
                    expired.append(job)
                else:
                    left = job.deadline - now
                    next_in = left if next_in is None else min(next_in, left)
            self._timer_at = math.inf if next_in is None else now + next_in
        for job in expired:
            exc = contract.JobTimeout(
                f"job {job.id} ran past its timeout of {job.timeout}s (attempt {job.attempt})"
            )
            log.warning("%s; the attempt fails, the thread is left to finish", exc)
            if self.recorder is not None and spool.recordable(job.meta):
                ctx = contract.Ctx("pgqueue", attempt=job.attempt, worker_id=self.worker_id, job_id=job.id)
                self.recorder.record("fail", job.meta, ctx, time.time(), f"JobTimeout: {exc}")
            self.completer.fail(job.id, job.attempt, error_record(exc, job.attempt, self.worker_id, tb=False))
        return next_in

    # --- claiming ------------------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            # Claims commit without waiting for the WAL flush: a claim lost in a server crash only leaves
            # the job available (its completion is then ignored by the ownership check and the job runs
            # again, which at-least-once allows). Enqueues and completions stay synchronous.
            self._conn = db.connect(
                self.database_url,
                role="pgqueue-fetcher",
                autocommit=True,
                options=f"{queries.HOT_PATH_OPTIONS} -c synchronous_commit=off",
            )
        return self._conn

    def _claim(self, queue: str, limit: int) -> list[Job]:
        conn = self._connection()
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(queries.get("claim"), {"queue": queue, "limit": limit, "worker_id": self.worker_id})
            rows = cur.fetchall()
        self.claims += 1
        self.claimed += len(rows)
        jobs = [Job(r) for r in rows]
        # the UPDATE returns rows in no particular order
        jobs.sort(key=lambda j: (j.priority, j.run_at, j.id))
        return jobs

    def _known_ids(self) -> list[int]:
        with self.cond:
            ids = {j.id for j in self.buffer} | {s.job.id for s in self.slots if s.job is not None}
        return sorted(ids | self.completer.pending_ids())

    def _fetch_once(self) -> None:
        """Claim from the queues (round robin) while capacity allows; update the drained flags."""
        n = len(self.queues)
        for i in range(n):
            with self.cond:
                want = self.capacity - len(self.buffer) - self.busy
                idle = not self.buffer and self.busy - self.stuck < self.cfg.threads
            if want < self.min_claim and not (idle and want > 0):
                return
            queue = self.queues[(self._rr + i) % n]
            if self.drained[queue]:
                continue
            limit = min(self.cfg.batch_size, want)
            self.drained[queue] = True  # until a claim fills up or a NOTIFY says otherwise
            jobs = self._claim(queue, limit)
            if len(jobs) >= limit:
                self.drained[queue] = False
            if jobs:
                self._claimed_since_hold = True
                with self.cond:
                    self.buffer.extend(jobs)
                    self.cond.notify(len(jobs))
        self._rr += 1

    # --- giving back what the process should not hold --------------------------------------------------

    def _hand_back_held(self, jobs: list[Job]) -> int:
        """Hand back claimed jobs no slot took (the attempt counted at claim is given back), on the
        fetcher's connection; on an error they go back to the tail of the buffer and the error is raised."""
        try:
            with self._connection().cursor(row_factory=tuple_row) as cur:
                cur.execute(
                    queries.get("hand_back"), {"ids": [j.id for j in jobs], "worker_id": self.worker_id}
                )
                row = cur.fetchone()
        except psycopg.Error:
            with self.cond:
                self.buffer.extend(jobs)
                self.cond.notify(len(jobs))
            raise
        n = int(row[0]) if row else 0
        self.handed_back += n
        return n

    def _release_hoard(self) -> None:
        """Every HOLD_SECONDS: hand back the held jobs this process will not start within HOLD_SECONDS at
        its current rate (all of them when no job finished and nothing was claimed since the last check:
        every slot is busy with long jobs). A process that claimed short jobs at a high rate and then
        met long ones would otherwise keep them from an idle process (docs/pgqueue.md, "Claim")."""
        now = time.monotonic()
        if now < self._hold_at:
            return
        self._hold_at = now + HOLD_SECONDS
        done = self.done
        progressed = done != self._hold_done or self._claimed_since_hold
        self._hold_done, self._claimed_since_hold = done, False
        keep = int(self.rate * HOLD_SECONDS) if progressed else 0
        with self.cond:
            if len(self.buffer) <= keep:
                return
            # from the tail: the jobs that would start last
            excess = [self.buffer.pop() for _ in range(len(self.buffer) - keep)]
        excess.reverse()
        n = self._hand_back_held(excess)
        log.info("handed back %d held job(s) that would not start within %.1fs", n, HOLD_SECONDS)

    def _recheck_held(self) -> None:
        """After a cancel, discard or pause: drop the held jobs that were cancelled or discarded, and hand
        back those of a paused queue, so that none of them starts."""
        self._recheck = False
        with self.cond:
            held = list(self.buffer)
            self.buffer.clear()
        if not held:
            return
        keep = {j.id for j in held}  # on an error all stay, and the re-check runs again
        try:
            with self._connection().cursor(row_factory=tuple_row) as cur:
                cur.execute(
                    queries.get("recheck_held"), {"ids": [j.id for j in held], "worker_id": self.worker_id}
                )
                keep = {r[0] for r in cur.fetchall()}
        except psycopg.Error:
            self._recheck = True
            raise
        finally:
            kept = [j for j in held if j.id in keep]
            with self.cond:
                self.buffer.extendleft(reversed(kept))
                self.cond.notify(len(kept))
        if len(kept) < len(held):
            log.info("dropped %d held job(s) that were cancelled, discarded or paused", len(held) - len(kept))

    def _recover_after_error(self) -> None:
        """After a lost connection: hand back jobs a lost claim answer may have given us."""
        conn = self._connection()
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                queries.get("hand_back_unknown"), {"worker_id": self.worker_id, "known": self._known_ids()}
            )
            row = cur.fetchone()
        if row and row[0]:
            log.warning("handed back %d job(s) claimed by a statement whose answer was lost", row[0])

    def fetch_loop(self) -> int:
        """Claim and watch deadlines until stopped; return the exit code."""
        backoff = 0.05
        need_recovery = False
        poll_at = time.monotonic()
        while not self.stopping.is_set():
            # cleared first: a wake-up while this round runs (a NOTIFY, a slot's deadline) runs another
            self.wake.clear()
            next_deadline = self._check_deadlines()
            self._adapt()
            if self.stuck >= self.cfg.threads:
                log.error(
                    "all %d slots are stuck past their deadlines; exiting to be replaced", self.cfg.threads
                )
                return EXIT_STUCK
            try:
                if need_recovery:
                    self._recover_after_error()
                    need_recovery = False
                if self._recheck:
                    self._recheck_held()
                self._release_hoard()
                if time.monotonic() >= poll_at:
                    # the polling backstop: try every queue even without a NOTIFY
                    for q in self.drained:
                        self.drained[q] = False
                    poll_at = time.monotonic() + self.cfg.poll_interval
                self._fetch_once()
                backoff = 0.05
            except psycopg.Error as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("claim failed, reconnecting in %.2fs: %s", backoff, first)
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                need_recovery = True
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            timeout = max(0.0, poll_at - time.monotonic())
            if next_deadline is not None:
                timeout = min(timeout, next_deadline + 0.005)
            if self.buffer:
                timeout = min(timeout, max(0.0, self._hold_at - time.monotonic()) + 0.005)
            self.wake.wait(timeout)
        return 0

    # --- life cycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.cfg.record:
            self.recorder = spool.SpoolRecorder(spool.path_for(self.worker_id), self.worker_id, "pgqueue")
            spool.install(self.recorder)
        self.heartbeat.beat()
        self.heartbeat.start()
        self.completer.start()
        self.listener.start()
        for slot in self.slots:
            slot.thread = threading.Thread(
                target=self._slot_loop, args=(slot,), name=f"slot-{slot.index}", daemon=True
            )
            slot.thread.start()

    def _hand_back_at_shutdown(self, ids: list[int], what: str) -> None:
        # a connection of its own, committing synchronously: the process is about to exit
        try:
            with db.connect(self.database_url, role="pgqueue-fetcher", autocommit=True) as conn:
                row = conn.execute(
                    queries.get("hand_back"), {"ids": ids, "worker_id": self.worker_id}
                ).fetchone()
            log.info("handed back %d job(s) %s without penalty", row[0] if row else 0, what)
        except psycopg.Error as exc:
            log.warning("could not hand back %d job(s) %s; the rescuer will: %s", len(ids), what, exc)

    def shutdown(self, code: int) -> int:
        """Stop claiming, hand back the jobs not started at once, let running jobs finish up to the
        deadline, flush, hand back what still runs."""
        self.stopping.set()
        with self.cond:
            unstarted = [j.id for j in self.buffer]
            self.buffer.clear()
            self.cond.notify_all()
        self.listener.stop()
        if unstarted:
            # at once, not after the running jobs: another process may run them now, and a SIGKILL
            # during the wait would cost each of them an attempt
            self._hand_back_at_shutdown(unstarted, "not started")
        deadline = time.monotonic() + (self.cfg.shutdown_timeout if code == 0 else 0.0)
        while time.monotonic() < deadline:
            self._check_deadlines()
            with self.cond:
                if self.busy - self.stuck <= 0:
                    break
            time.sleep(0.02)
        with self.cond:
            unfinished = [s.job.id for s in self.slots if s.job is not None and not s.job.timed_out]
        flushed = self.completer.stop(timeout=10.0)
        if unfinished:
            self._hand_back_at_shutdown(unfinished, "still running")
        if not flushed:
            log.warning("some completions could not be written; the rescuer will retry those jobs")
        if self._conn is not None:
            self._conn.close()
        self.heartbeat.stop()
        if self.recorder is not None:
            self.recorder.close()
        log.info(
            "process %s stopped: %d claimed in %d claims, %d handed back while running, %s",
            self.worker_id,
            self.claimed,
            self.claims,
            self.handed_back,
            self.completer.describe(),
        )
        return code


def main() -> int:
    """A process started as `python -m pgqueue_worker.process` (the supervisor's replacements), its
    configuration in the environment."""
    cfg = Config.from_json(os.environ["PGQUEUE_CHILD_CONFIG"])
    parent = os.environ.get("PGQUEUE_PARENT_PID")
    die_with_parent(int(parent) if parent else None)
    logging.basicConfig(level=cfg.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker_id = os.environ["PGQUEUE_WORKER_ID"]
    try:
        s = settings.load()
    except settings.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run(cfg, worker_id, s.queue_database_url, supervisor_id=os.environ.get("PGQUEUE_SUPERVISOR_ID"))


def run_forked(
    cfg: Config, worker_id: str, database_url: str, *, parent_pid: int, supervisor_id: str
) -> NoReturn:
    """A process forked from the supervisor's main thread: it has every module imported already and goes
    straight to work (no interpreter start, no imports). Never returns."""
    code = 1
    try:
        # what a fresh interpreter would have: default signal actions until run() sets its own, and no
        # terminal input
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        die_with_parent(parent_pid)
        run(cfg, worker_id, database_url, supervisor_id=supervisor_id)
    except BaseException:  # noqa: BLE001 - a forked child must never return into the supervisor's code
        traceback.print_exc()
    finally:
        os._exit(code)


def run(cfg: Config, worker_id: str, database_url: str, *, supervisor_id: str | None) -> NoReturn:
    """Run this process until it is stopped, then exit with its code."""
    proc = WorkerProcess(cfg, worker_id, database_url, supervisor_id=supervisor_id)

    # SIGTERM (from the supervisor): stop claiming and drain; the fetch loop returns
    def stop(*_: object) -> None:
        proc.stopping.set()
        proc.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; Ctrl-C reaches the whole group
    proc.start()
    log.info("process %s started: queues=%s threads=%d", worker_id, ",".join(cfg.queues), cfg.threads)
    code = proc.fetch_loop()
    code = proc.shutdown(code)
    logging.shutdown()
    # a stuck thread cannot be joined: leave without waiting for it
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
