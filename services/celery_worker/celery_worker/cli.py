"""`bench-celery-worker`: the Celery worker service's one start command.

Builds the shared Celery app for the chosen broker and configuration, registers the task wrappers,
checks the broker and the database first (one clear line and exit 2 when either is unusable), then runs
`celery worker`. Each worker heartbeats to `queue.workers`, and its spools (one per pool process) are
loaded by a thread of the main process. SIGTERM is Celery's warm shutdown: running tasks finish.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, signals
from celery import __version__ as celery_version
from kombu import __version__ as kombu_version

from shared import celery_app, db, heartbeat, settings, spool

from . import tasks

log = logging.getLogger("celery_worker")

POOLS = ("prefork", "threads", "solo")


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


def make_worker(args: argparse.Namespace) -> tuple[Celery, list[str]]:
    """The composition root: the app with tasks, signals wired, and the `celery worker` argv."""
    s = settings.load()
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
    tasks.register(app)
    check_broker(app.conf.broker_url, broker)
    db.check_ready(s.database_url, queue_url=s.queue_database_url)

    worker_id = heartbeat.new_worker_id("celery")
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
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
    processes = args.concurrency if args.pool == "prefork" else 1
    slots = 1 if args.pool == "prefork" else args.concurrency
    hb = heartbeat.Heartbeat(
        heartbeat.WorkerIdentity(worker_id, "celery", queues, processes=processes, slots=slots, info=info),
        s.queue_database_url,
        interval=args.heartbeat_interval,
    )
    loader = spool.SpoolLoader(f"{worker_id}-", worker_id, s.database_url, on_loaded=hb.mark_spool_loaded)
    record = not args.no_record

    def install_recorder(**_: Any) -> None:
        tasks.set_worker_id(worker_id)
        if record:
            spool.install(spool.SpoolRecorder(spool.path_for(worker_id), worker_id, "celery"))

    # Prefork children record to their own spool; threads and solo pools record in the main process.
    signals.worker_process_init.connect(install_recorder, weak=False)
    if args.pool != "prefork":
        signals.worker_init.connect(install_recorder, weak=False)

    def started(**_: Any) -> None:
        hb.beat()
        hb.start()
        loader.start()
        log.info(
            "celery worker %s ready: broker=%s config=%s pool=%s concurrency=%d queues=%s",
            worker_id,
            broker,
            args.configuration,
            args.pool,
            args.concurrency,
            ",".join(queues),
        )

    def stopping(**_: Any) -> None:
        loader.stop()
        hb.stop()

    signals.worker_ready.connect(started, weak=False)
    signals.worker_shutdown.connect(stopping, weak=False)

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
    try:
        args = parse_args(argv)
    except settings.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app, worker_argv = make_worker(args)
    except (settings.ConfigError, db.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app.worker_main(worker_argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
