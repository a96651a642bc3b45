"""The supervisor: starts P worker processes, replaces those that die, runs maintenance and the spool loader.

The supervisor's main thread starts every child (a child's `PR_SET_PDEATHSIG` fires when the *thread*
that forked it ends, so only the main thread, which lives until the end, may fork). The first P children
are forked before any other thread exists (a fork copies only the forking thread, and a lock another
thread held would stay held in the child): they start with every module imported, so a worker is ready
about as soon as its supervisor (docs/pgqueue.md, "The worker"). A replacement, started while the
supervisor's threads run, is a fresh interpreter (`python -m pgqueue_worker.process`). Each child records
to its own spool file (`spool.path_for(<child id>)`), and the supervisor loads all of them with one
`SpoolLoader` over `<supervisor id>-*`, so the records of a child that was killed still arrive.

SIGTERM (or SIGINT): forward SIGTERM to the children, which stop claiming, finish running jobs up to
`shutdown_timeout` and hand the rest back; children still alive after that (plus a grace period) are
killed, and the rescuer takes their jobs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import psycopg

from pgqueue_worker import process
from pgqueue_worker.config import Config
from pgqueue_worker.maintenance import Maintenance
from pgqueue_worker.process import EXIT_STUCK
from shared import db, heartbeat, settings, spool

log = logging.getLogger("pgqueue_worker")

RESTART_BACKOFF_MAX = 10.0


class ForkedChild:
    """A child forked from the supervisor, with the part of `subprocess.Popen` the supervisor uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, its code unknown
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is not None:
            return self.returncode  # type: ignore[return-value]
        if timeout is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            return self.returncode
        deadline = time.monotonic() + timeout
        try:
            fd = os.pidfd_open(self.pid)  # readable once the process exits (Linux 5.3)
        except (AttributeError, OSError):
            fd = None
        try:
            while self.poll() is None and time.monotonic() < deadline:
                left = max(0.0, deadline - time.monotonic())
                if fd is not None:
                    select.select([fd], [], [], left)
                else:
                    time.sleep(min(left, 0.02))
        finally:
            if fd is not None:
                os.close(fd)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(["pgqueue_worker.process"], timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class Child:
    index: int
    generation: int
    worker_id: str
    popen: subprocess.Popen | ForkedChild
    started: float


class Supervisor:
    """One pgqueue worker: P processes of N slots, with maintenance when elected leader."""

    def __init__(self, cfg: Config, s: settings.Settings) -> None:
        self.cfg = cfg
        self.settings = s
        self.database_url = s.queue_database_url
        self.worker_id = heartbeat.new_worker_id("pgqueue")
        self.children: dict[int, Child] = {}
        self.generations = dict.fromkeys(range(cfg.processes), 0)
        self.failures = dict.fromkeys(range(cfg.processes), 0)
        self.restart_at = dict.fromkeys(range(cfg.processes), 0.0)
        self.stop = threading.Event()
        self.heartbeat = heartbeat.Heartbeat(
            heartbeat.WorkerIdentity(
                self.worker_id,
                "pgqueue",
                list(cfg.queues),
                cfg.processes,
                cfg.threads,
                info={
                    "role": "supervisor",
                    "threads": cfg.threads,
                    "batch_size": cfg.batch_size,
                    "prefetch": cfg.prefetch,
                    "flush_interval": cfg.flush_interval,
                    "completion_bound": cfg.completion_bound,
                    "poll_interval": cfg.poll_interval,
                    "rescue_after": cfg.rescue_after,
                    "record": cfg.record,
                },
            ),
            self.database_url,
            interval=cfg.heartbeat_interval,
        )
        self.loader = spool.SpoolLoader(
            f"{self.worker_id}-", self.worker_id, s.database_url, on_loaded=self._spool_loaded
        )
        self.maintenance = Maintenance(cfg, self.database_url, self.worker_id) if cfg.maintenance else None
        self._mark_conn: psycopg.Connection | None = None  # the loader thread's
        self._reap_conn: psycopg.Connection | None = None  # the main thread's

    def _spool_loaded(self, wall_time: float) -> None:
        """Everything recorded before `wall_time` is loaded: say so on our row and our children's."""
        self.heartbeat.mark_spool_loaded(wall_time)
        try:
            if self._mark_conn is None or self._mark_conn.closed:
                self._mark_conn = db.connect(self.database_url, role="pgqueue-supervisor", autocommit=True)
            self._mark_conn.execute(
                heartbeat.QUERIES["worker_processes_spool_loaded"],
                {"loaded_at": dt.datetime.fromtimestamp(wall_time, dt.UTC), "id": self.worker_id},
            )
        except psycopg.Error:
            if self._mark_conn is not None:
                self._mark_conn.close()
            self._mark_conn = None

    def _mark_stopped(self, worker_id: str) -> None:
        """A child is gone: say so at once, so the rescuer need not wait for its heartbeat to age."""
        try:
            if self._reap_conn is None or self._reap_conn.closed:
                self._reap_conn = db.connect(self.database_url, role="pgqueue-supervisor", autocommit=True)
            self._reap_conn.execute(heartbeat.QUERIES["worker_stopped"], {"id": worker_id})
        except psycopg.Error:
            if self._reap_conn is not None:
                self._reap_conn.close()
            self._reap_conn = None

    def _spawn(self, index: int, *, fork: bool = False) -> None:
        self.generations[index] += 1
        worker_id = f"{self.worker_id}-{index}.{self.generations[index]}"
        if fork and threading.active_count() == 1:
            self.children[index] = Child(
                index, self.generations[index], worker_id, self._fork(worker_id), time.monotonic()
            )
            log.info("started process %s (pid %d, forked)", worker_id, self.children[index].popen.pid)
            return
        env = dict(os.environ)
        env.update(
            PGQUEUE_CHILD_CONFIG=self.cfg.to_json(),
            PGQUEUE_WORKER_ID=worker_id,
            PGQUEUE_PARENT_PID=str(os.getpid()),
            PGQUEUE_SUPERVISOR_ID=self.worker_id,
            DATABASE_URL=self.settings.database_url,
            QUEUE_DATABASE_URL=self.settings.queue_database_url,
        )
        popen = subprocess.Popen(
            [sys.executable, "-m", "pgqueue_worker.process"], env=env, stdin=subprocess.DEVNULL
        )
        self.children[index] = Child(index, self.generations[index], worker_id, popen, time.monotonic())
        log.info("started process %s (pid %d)", worker_id, popen.pid)

    def _fork(self, worker_id: str) -> ForkedChild:
        """A child forked from this (the only) thread, running `process.run_forked`."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # or the child would write the supervisor's buffered output again
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            process.run_forked(
                self.cfg, worker_id, self.database_url, parent_pid=parent, supervisor_id=self.worker_id
            )
        return ForkedChild(pid)

    def _reap(self) -> None:
        now = time.monotonic()
        for index, child in list(self.children.items()):
            code = child.popen.poll()
            if code is None:
                continue
            del self.children[index]
            self._mark_stopped(child.worker_id)
            if self.stop.is_set():
                continue
            if code == EXIT_STUCK:
                log.warning("process %s exited with every slot stuck; replacing it", child.worker_id)
                self.failures[index] = 0
            else:
                # a crash loop (e.g. the database is down at start) backs off
                self.failures[index] = self.failures[index] + 1 if now - child.started < 10 else 1
                log.warning("process %s exited with code %s; replacing it", child.worker_id, code)
            delay = (
                0.0
                if self.failures[index] <= 1
                else min(RESTART_BACKOFF_MAX, 0.5 * 2 ** self.failures[index])
            )
            self.restart_at[index] = now + delay
        for index in range(self.cfg.processes):
            if index not in self.children and now >= self.restart_at[index] and not self.stop.is_set():
                self._spawn(index)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        # the children first, forked before this process starts any thread; they are ready about as
        # soon as the supervisor's own first heartbeat
        for index in range(self.cfg.processes):
            self._spawn(index, fork=True)
        self.heartbeat.beat()
        self.heartbeat.start()
        log.info(
            "pgqueue worker %s connected to %s, queues=%s, processes=%d, threads=%d",
            self.worker_id,
            settings.redact(self.database_url),
            ",".join(self.cfg.queues),
            self.cfg.processes,
            self.cfg.threads,
        )
        self.loader.start()
        if self.maintenance is not None:
            self.maintenance.start()
        while not self.stop.is_set():
            self._reap()
            self.stop.wait(0.1)
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        log.info(
            "stopping: %d process(es) finish their running jobs (up to %.0fs)",
            len(self.children),
            self.cfg.shutdown_timeout,
        )
        for child in self.children.values():
            try:
                child.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.cfg.shutdown_timeout + 15.0
        for child in self.children.values():
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process %s did not stop in time; killing it", child.worker_id)
                child.popen.kill()
                child.popen.wait(5)
            # a child killed here never marked itself stopped: say so, or the rescuer waits --rescue-after
            self._mark_stopped(child.worker_id)
        if self.maintenance is not None:
            self.maintenance.stop()
        self.loader.stop()
        for conn in (self._mark_conn, self._reap_conn):
            if conn is not None:
                conn.close()
        self.heartbeat.stop()
        log.info("pgqueue worker %s stopped", self.worker_id)
