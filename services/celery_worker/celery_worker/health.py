"""`bench-celery-health`: the Celery worker's health, from its heartbeat in queue.workers (docs/deploy.md).

bench-celery-health                 # exit 0 when a Celery worker on this host heartbeats (HEALTHCHECK)
bench-celery-health --serve 8081    # run bench-celery-worker here, GET /up on :8081 (fly.toml's [checks])
"""

from __future__ import annotations

import sys

from shared import heartbeat

from . import cli


def main(argv: list[str] | None = None) -> int:
    return heartbeat.health_main("celery", cli.main, argv)


if __name__ == "__main__":
    sys.exit(main())
