"""`bench-pgqueue-health`: the pgqueue worker's health, from its heartbeat in queue.workers (docs/deploy.md).

bench-pgqueue-health                # exit 0 when a pgqueue worker on this host heartbeats (HEALTHCHECK)
bench-pgqueue-health --serve 8081   # run bench-pgqueue-worker here, GET /up on :8081 (fly.toml's [checks])
"""

from __future__ import annotations

import sys

from pgqueue_worker import cli
from shared import heartbeat


def main(argv: list[str] | None = None) -> int:
    return heartbeat.health_main("pgqueue", cli.main, argv)


if __name__ == "__main__":
    sys.exit(main())
