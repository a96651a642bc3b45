"""`bench-pgqueue-worker`: the pgqueue worker service's one start command.

Foundation stage: connects, heartbeats its identity, and exits cleanly on SIGTERM. The queue engine
(fetch, execute, complete, maintenance) replaces the idle loop.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from shared import db, heartbeat, settings

log = logging.getLogger("pgqueue_worker")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench-pgqueue-worker", description="Run the pgqueue worker.")
    p.add_argument("--queues", default="default", help="comma-separated queue names")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--loglevel", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        s = settings.load()
        db.check_ready(s.database_url, queue_url=s.queue_database_url)
    except (settings.ConfigError, db.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    queues = [q for q in args.queues.split(",") if q]
    worker_id = heartbeat.new_worker_id("pgqueue")
    hb = heartbeat.Heartbeat(
        heartbeat.WorkerIdentity(worker_id, "pgqueue", queues, args.processes, args.threads),
        s.queue_database_url,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    hb.beat()
    hb.start()
    log.info(
        "pgqueue worker %s connected to %s, queues=%s",
        worker_id,
        settings.redact(s.queue_database_url),
        queues,
    )
    stop.wait()
    hb.stop()
    log.info("pgqueue worker %s stopped", worker_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
