"""`bench-celery-worker`: the Celery worker service's one start command.

Two levels of processes, as pgqueue's and the peers' workers (docs/celery.md, "The worker process"):

- **this process**, the worker's main process, builds the shared Celery app for the chosen broker and
  configuration, checks the broker and the database first (one clear line and exit 2 when either is
  unusable), then runs `celery worker` as its child (this console script's `main` with `--child`). Once
  Celery says it is ready, it heartbeats to `queue.workers`, loads the spools of the processes that run
  jobs (`<worker id>-<pid>.spool`: one per prefork child, or Celery's own process with the threads and
  solo pools) and writes their count of completed jobs (`shared.completions`). It consumes no job, so the
  recording's loader and the count's writer cost the process that consumes nothing, as pgqueue's
  supervisor does; a killed child's records and count still arrive.
- **`celery worker`** consumes and runs the jobs; its processes append to their spools (unless
  `--no-record`) and count what they complete, and write nothing to the database for the benchmark.

SIGTERM (or SIGINT) to this process is passed on to `celery worker` as SIGTERM, Celery's warm shutdown:
running tasks finish; then the last spool load and count, and the heartbeat row is marked stopped. If
`celery worker` exits by itself, this process does the same and exits with its code.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import socket
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, signals
from celery import __version__ as celery_version
from kombu import __version__ as kombu_version

from shared import celery_app, completions, db, heartbeat, settings, spool, workloads

from . import tasks

log = logging.getLogger("celery_worker")

POOLS = ("prefork", "threads", "solo")
RUN_CHILD = "import sys; from celery_worker.cli import main; sys.exit(main())"
"""How the main process starts `celery worker`: this module's `main`, with `--child`."""


def _env_float(name: str) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise settings.ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench-celery-worker", description="Run a Celery worker on the shared workloads."
    )
    p.add_argument(
        "--broker",
        default=os.environ.get("BENCH_CELERY_BROKER"),
        help="postgres, redis or rabbitmq (default: the kind of CELERY_BROKER_URL, else postgres)",
    )
    p.add_argument(
        "--config",
        dest="configuration",
        default=os.environ.get("BENCH_CELERY_CONFIG", "defaults"),
        choices=celery_app.CONFIGURATIONS,
    )
    p.add_argument("--pool", default=os.environ.get("BENCH_CELERY_POOL", "prefork"), choices=POOLS)
    p.add_argument("--concurrency", type=int, default=int(os.environ.get("BENCH_CELERY_CONCURRENCY", "4")))
    p.add_argument(
        "--queues",
        default=os.environ.get("BENCH_CELERY_QUEUES", celery_app.DEFAULT_QUEUE),
        help="comma-separated queue names",
    )
    p.add_argument(
        "--polling-interval",
        type=float,
        default=_env_float("BENCH_CELERY_POLLING_INTERVAL") or celery_app.DEFAULT_SQL_POLLING_INTERVAL,
        help="SQL transport polling interval in seconds (kombu's default: 1.0)",
    )
    p.add_argument(
        "--visibility-timeout",
        type=float,
        default=_env_float("BENCH_CELERY_VISIBILITY_TIMEOUT"),
        help="Redis only: seconds before an unacknowledged message is handed out again (kombu: 3600)",
    )
    p.add_argument(
        "--restore-interval",
        type=float,
        default=_env_float("BENCH_CELERY_RESTORE_INTERVAL"),
        help="Redis only: seconds between sweeps for such messages (kombu: about 100)",
    )
    p.add_argument("--result-backend", action="store_true", help="store results in queue.celery_taskmeta")
    p.add_argument("--no-record", action="store_true", help="do not write spool records (overhead runs)")
    p.add_argument("--loglevel", default=os.environ.get("BENCH_LOGLEVEL", "INFO"))
    p.add_argument("--heartbeat-interval", type=float, default=heartbeat.DEFAULT_INTERVAL)
    # The main process's own options for its child, `celery worker`.
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--worker-id", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def check_broker(url: str, broker: str, timeout: float = 5.0) -> None:
    """Raise `ConfigError` with one line when the broker does not answer."""
    if broker == "postgres":
        pg_url = "postgresql://" + url.split("://", 1)[1]
        try:
            with db.connect(pg_url, role="check", connect_timeout=int(timeout)):
                return
        except Exception as exc:  # noqa: BLE001
            raise settings.ConfigError(db.describe_connect_error(pg_url, exc)) from None
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (6379 if broker == "redis" else 5672)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise settings.ConfigError(
            f"cannot reach the {broker} broker at {settings.redact(url)}: {exc.strerror or exc}. "
            f"Is it running? Check {'REDIS_URL' if broker == 'redis' else 'RABBITMQ_URL'} or CELERY_BROKER_URL."
        ) from None


def make_app(args: argparse.Namespace, s: settings.Settings) -> tuple[Celery, str]:
    """The shared app for the chosen broker and configuration, and the broker's kind."""
    broker = args.broker or settings.broker_kind(s.celery_broker_url)
    app = celery_app.make_app(
        broker,
        args.configuration,
        result_backend=args.result_backend,
        polling_interval=args.polling_interval,
        visibility_timeout=args.visibility_timeout,
        restore_interval=args.restore_interval,
        s=s,
    )
    return app, broker


def queues_of(args: argparse.Namespace) -> list[str]:
    return [q.strip() for q in args.queues.split(",") if q.strip()]


# ---- the main process ----------------------------------------------------------------------------


class Supervisor:
    """The worker's main process: runs `celery worker` as its child, and heartbeats, loads the spools and
    writes the completion count of its processes while it runs."""

    def __init__(self, args: argparse.Namespace, raw: list[str]) -> None:
        s = settings.load()
        app, broker = make_app(args, s)
        check_broker(app.conf.broker_url, broker)
        db.check_ready(s.database_url, queue_url=s.queue_database_url)
        self.args = args
        self.raw = raw
        self.broker = broker
        self.worker_id = heartbeat.new_worker_id("celery")
        self.queues = queues_of(args)
        # What the admin pages, the attached mode and the run's record read from the heartbeat: the
        # delivery settings (polling interval, visibility timeout, acks, prefetch) and the pool.
        info: dict[str, Any] = {
            **celery_app.describe(app),
            "pool": args.pool,
            "concurrency": args.concurrency,
            "recording": not args.no_record,
            "celery_version": celery_version,
            "kombu_version": kombu_version,
        }
        app.close()
        processes = args.concurrency if args.pool == "prefork" else 1
        slots = 1 if args.pool == "prefork" else args.concurrency
        self.heartbeat = heartbeat.Heartbeat(
            heartbeat.WorkerIdentity(
                self.worker_id, "celery", self.queues, processes=processes, slots=slots, info=info
            ),
            s.queue_database_url,
            interval=args.heartbeat_interval,
        )
        self.loader = spool.SpoolLoader(
            f"{self.worker_id}-", self.worker_id, s.database_url, on_loaded=self.heartbeat.mark_spool_loaded
        )
        self.counts = completions.Flusher(self.worker_id, "celery", self.queues, s.queue_database_url)
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self._pass_on()

    def _pass_on(self) -> None:
        """Celery's warm shutdown: SIGTERM to `celery worker` alone (its prefork children reset SIGTERM to
        its default action, so a SIGTERM to them would kill the tasks they run)."""
        if self.child is not None and self.child.poll() is None:
            try:
                self.child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _wait_ready(self, ready_r: int) -> bool:
        """Whether `celery worker` said it is ready (False when it exited first)."""
        assert self.child is not None
        try:
            while True:
                readable, _, _ = select.select([ready_r], [], [], 0.2)
                if readable:
                    return os.read(ready_r, 1) == b"r"  # b"" when it exited without saying so
                if self.child.poll() is not None:
                    return False
        finally:
            os.close(ready_r)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        ready_r, ready_w = os.pipe()
        argv = [sys.executable, "-c", RUN_CHILD, "--child", "--ready-fd", str(ready_w)]
        argv += ["--worker-id", self.worker_id, *self.raw]
        self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(ready_w,))
        os.close(ready_w)
        if self.stopping:
            self._pass_on()
        ready = self._wait_ready(ready_r)
        if ready:
            self.heartbeat.beat()
            self.heartbeat.start()
            self.loader.start()
            self.counts.start()
            log.info(
                "celery worker %s ready: broker=%s config=%s pool=%s concurrency=%d queues=%s (pid %d)",
                self.worker_id,
                self.broker,
                self.args.configuration,
                self.args.pool,
                self.args.concurrency,
                ",".join(self.queues),
                self.child.pid,
            )
        code = self.child.wait()
        if ready:
            # After the last task: its count and records, then the row marked stopped.
            self.counts.stop()
            self.loader.stop()
            self.heartbeat.stop()
        if code != 0 and not self.stopping:
            log.warning("%s: celery worker exited with code %s", self.worker_id, code)
        return code if code >= 0 else 128 - code


# ---- `celery worker`, the child ------------------------------------------------------------------


def _die_with_parent() -> None:
    """Ask the kernel for a SIGTERM (a warm shutdown) if the main process dies: a worker whose spools nobody
    loads must not go on taking jobs (Linux; elsewhere nothing)."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def make_worker(args: argparse.Namespace) -> tuple[Celery, list[str]]:
    """The child's composition root: the app with tasks, signals wired, and the `celery worker` argv."""
    s = settings.load()
    app, _ = make_app(args, s)
    tasks.register(app)
    worker_id = args.worker_id or heartbeat.new_worker_id("celery")
    queues = queues_of(args)
    record = not args.no_record

    def install_recorder(**_: Any) -> None:
        tasks.set_worker_id(worker_id)
        completions.install(completions.Counter(completions.path_for(worker_id)))
        if record:
            spool.install(spool.SpoolRecorder(spool.path_for(worker_id), worker_id, "celery"))

    # Prefork children record to their own spool; threads and solo pools record in Celery's process.
    signals.worker_process_init.connect(install_recorder, weak=False)
    if args.pool != "prefork":
        signals.worker_init.connect(install_recorder, weak=False)

    def ready(**_: Any) -> None:
        # Tell the main process, which heartbeats from now on: the harness's runs start then.
        args.ready_fd = heartbeat.tell_ready(args.ready_fd)

    signals.worker_ready.connect(ready, weak=False)

    argv = [
        "worker",
        f"--loglevel={args.loglevel}",
        "-Q",
        ",".join(queues),
        "-P",
        args.pool,
        "-c",
        str(args.concurrency),
        "--without-gossip",
        "--without-mingle",
        "-n",
        f"{worker_id}@{socket.gethostname()}",
    ]
    return app, argv


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(raw)
    except settings.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.child:
        _die_with_parent()
        app, worker_argv = make_worker(args)
        app.worker_main(worker_argv)
        return 0
    try:
        workloads.load_user_modules()
        supervisor = Supervisor(args, raw)
    except (settings.ConfigError, db.DatabaseError, workloads.WorkloadModuleError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
