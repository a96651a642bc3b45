"""`bench-pgqueue-worker`: the pgqueue worker service's one start command.

    bench-pgqueue-worker --queues default,mail --processes 2 --threads 4

Composition root: reads the settings and the worker configuration once (`make_worker`), checks the
database, and runs the supervisor until SIGTERM. Bad input gets one clear line and exit status 2.
"""

from __future__ import annotations

import logging
import sys

from pgqueue_worker import config as config_mod
from pgqueue_worker.supervisor import Supervisor
from shared import db, settings

log = logging.getLogger("pgqueue_worker")


def make_worker(cfg: config_mod.Config, s: settings.Settings) -> Supervisor:
    """The worker for `cfg` on the database of `s`."""
    return Supervisor(cfg, s)


def main(argv: list[str] | None = None) -> int:
    args = config_mod.parser().parse_args(argv)
    try:
        cfg = config_mod.from_args(args)
        s = settings.load()
        db.check_ready(s.database_url, queue_url=s.queue_database_url)
    except (settings.ConfigError, db.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=cfg.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return make_worker(cfg, s).run()


if __name__ == "__main__":
    sys.exit(main())
