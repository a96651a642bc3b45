"""What both peer workers share: P child processes, each running the peer's own worker, under one main
process that heartbeats and loads their spools (docs/architecture.md, "Adding a queue").

The main process checks the database, starts the children (the same console script's `main`, `--child`), waits
until each has opened its connections and says so through a pipe, then heartbeats in `queue.workers` (the
harness calls the worker ready then) and runs one `SpoolLoader` over every child's spool
(`<worker id>-<pid>.spool`), so the records of a child that was killed still arrive. A child that dies is
replaced, as pgqueue's supervisor and Celery's prefork pool do. SIGTERM (or SIGINT) is forwarded to the
children, whose own worker finishes its running jobs; children still alive after `shutdown_timeout` are
killed.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared import db, heartbeat, peers, settings, spool, workloads

log = logging.getLogger("peers_worker")

READY_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0
ENV_WORKER_ID = "BENCH_PEER_WORKER_ID"


def common_arguments(p: argparse.ArgumentParser) -> None:
    """The options every peer worker takes (`--child` and `--ready-fd` are the supervisor's own)."""
    p.add_argument("--queues", default="default", help="comma-separated queue names")
    p.add_argument("--processes", type=int, default=2, help="worker processes")
    p.add_argument("--slots", type=int, default=5, help="jobs each process runs at once")
    p.add_argument(
        "--execution",
        choices=peers.EXECUTIONS,
        default=peers.EXECUTIONS[0],
        help="a job's synchronous body: in a thread (threads, the library's way), or called on the event loop with no "
        "thread hand-off (inline: the slots still bound the jobs a process holds, but a blocking body holds "
        "the loop, so a process runs one body at a time)",
    )
    p.add_argument("--no-record", action="store_true", help="do not write spool records (overhead runs)")
    p.add_argument("--loglevel", default=os.environ.get("BENCH_LOGLEVEL", "INFO"))
    p.add_argument("--heartbeat-interval", type=float, default=heartbeat.DEFAULT_INTERVAL)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, default=-1, help=argparse.SUPPRESS)


def queues_of(args: argparse.Namespace) -> list[str]:
    return [q.strip() for q in args.queues.split(",") if q.strip()]


def child_setup(adapter: str, args: argparse.Namespace) -> str:
    """In a child: its recorder installed (unless `--no-record`); returns the worker id it records as."""
    worker_id = os.environ.get(ENV_WORKER_ID) or heartbeat.new_worker_id(adapter)
    workloads.load_user_modules()
    if not args.no_record:
        spool.install(spool.SpoolRecorder(spool.path_for(worker_id), worker_id, adapter))
    return worker_id


def say_ready(args: argparse.Namespace) -> None:
    """In a child: tell the supervisor its worker is connected and about to take jobs."""
    args.ready_fd = heartbeat.tell_ready(args.ready_fd)


@dataclass
class Child:
    popen: subprocess.Popen
    ready_r: int
    ready: bool = False


@dataclass
class Supervisor:
    """The main process of one peer worker."""

    adapter: str
    module: str
    """The module whose `main` runs a child (`main(["--child", ...])`)."""
    args: argparse.Namespace
    child_argv: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    children: list[Child | None] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        s = settings.load()
        self.settings = s
        self.worker_id = heartbeat.new_worker_id(self.adapter)
        self.heartbeat = heartbeat.Heartbeat(
            heartbeat.WorkerIdentity(
                self.worker_id,
                self.adapter,
                queues_of(self.args),
                processes=self.args.processes,
                slots=self.args.slots,
                info={"role": "supervisor", "recording": not self.args.no_record, **self.info},
            ),
            s.queue_database_url,
            interval=self.args.heartbeat_interval,
        )
        self.loader = spool.SpoolLoader(
            f"{self.worker_id}-", self.worker_id, s.database_url, on_loaded=self.heartbeat.mark_spool_loaded
        )
        self.children = [None] * self.args.processes

    def _spawn(self, index: int) -> None:
        r, w = os.pipe()
        env = dict(os.environ)
        env[ENV_WORKER_ID] = self.worker_id
        # `-c`, not `-m`: the module keeps its name (procrastinate warns of an app in `__main__`).
        run = f"import sys; from {self.module} import main; sys.exit(main())"
        argv = [sys.executable, "-c", run, "--child", "--ready-fd", str(w), *self.child_argv]
        popen = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, pass_fds=(w,))
        os.close(w)
        self.children[index] = Child(popen, r)
        log.info("%s: started process %d (pid %d)", self.worker_id, index, popen.pid)

    def _collect_ready(self, timeout: float) -> None:
        waiting = {c.ready_r: c for c in self.children if c is not None and not c.ready}
        if not waiting:
            return
        readable, _, _ = select.select(list(waiting), [], [], timeout)
        for fd in readable:
            child = waiting[fd]
            child.ready = True  # a byte, or the end of the pipe if it died (then it is replaced)
            os.close(fd)

    def _reap(self) -> None:
        for index, child in enumerate(self.children):
            if child is None or child.popen.poll() is None:
                continue
            log.warning(
                "%s: process %d exited with code %s; replacing it",
                self.worker_id,
                index,
                child.popen.returncode,
            )
            if not child.ready:
                os.close(child.ready_r)
            if not self.stop.is_set():
                self._spawn(index)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        for index in range(self.args.processes):
            self._spawn(index)
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(c is not None and c.ready for c in self.children):
            if self.stop.is_set() or time.monotonic() > deadline:
                self._shutdown()
                print(f"error: the {self.adapter} worker's processes did not start", file=sys.stderr)
                return 1
            self._collect_ready(0.1)
            if any(c is not None and c.popen.poll() is not None for c in self.children):
                self._shutdown()
                print(f"error: a {self.adapter} worker process exited at start (see above)", file=sys.stderr)
                return 1
        self.loader.start()
        self.heartbeat.beat()
        self.heartbeat.start()
        log.info(
            "%s worker %s ready: queues=%s processes=%d slots=%d",
            self.adapter,
            self.worker_id,
            ",".join(queues_of(self.args)),
            self.args.processes,
            self.args.slots,
        )
        while not self.stop.wait(0.2):
            self._reap()
            self._collect_ready(0)
        self._shutdown()
        return 0

    def _shutdown(self) -> None:
        live = [c for c in self.children if c is not None and c.popen.poll() is None]
        for c in live:
            try:
                c.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + SHUTDOWN_TIMEOUT
        for c in live:
            try:
                c.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.popen.kill()
                c.popen.wait(5)
        if self.loader.is_alive():
            self.loader.stop()
        if self.heartbeat.is_alive():
            self.heartbeat.stop()


def main(
    adapter: str,
    module: str,
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    run_child: Callable[[argparse.Namespace], int],
    info: Callable[[argparse.Namespace], dict[str, Any]],
) -> int:
    """A peer worker's console script: a child runs `run_child`, the main process supervises."""
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.child:
        return run_child(args)
    if args.processes < 1 or args.slots < 1:
        print("error: --processes and --slots must be at least 1", file=sys.stderr)
        return 2
    try:
        workloads.load_user_modules()
        s = settings.load()
        db.check_ready(s.database_url, queue_url=s.queue_database_url)
    except (settings.ConfigError, db.DatabaseError, workloads.WorkloadModuleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return Supervisor(adapter, module, args, raw, info=info(args)).run()
