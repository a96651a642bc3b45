"""Apply (or inspect) both Alembic lineages: `python -m shared.migrate [upgrade|downgrade|check|heads]`.

Used by `make migrate`, Fly's `release_command` and the tests. Lineages: `app` (schema public) and
`queue` (schema queue); see `db/alembic.ini`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from shared import db, settings

LINEAGES = ("app", "queue")


def alembic_ini() -> Path:
    """`db/alembic.ini` next to the package in a checkout, or in the image's working directory."""
    for base in (settings.PROJECT_ROOT, Path.cwd()):
        path = base / "db" / "alembic.ini"
        if path.exists():
            return path
    raise settings.ConfigError("db/alembic.ini not found; run from the repository root")


def config(lineage: str, url: str | None = None) -> Config:
    """The Alembic config of one lineage, optionally pointed at `url` instead of the settings."""
    cfg = Config(str(alembic_ini()), ini_section=lineage)
    if url:
        cfg.attributes["url"] = url
    return cfg


def upgrade(url: str | None = None, queue_url: str | None = None, revision: str = "head") -> None:
    """Upgrade both lineages (app, then queue) to `revision`."""
    command.upgrade(config("app", url), revision)
    command.upgrade(config("queue", queue_url or url), revision)


def downgrade(url: str | None = None, queue_url: str | None = None, revision: str = "base") -> None:
    """Downgrade both lineages (queue, then app) to `revision`."""
    command.downgrade(config("queue", queue_url or url), revision)
    command.downgrade(config("app", url), revision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.migrate", description=__doc__.split("\n")[0])
    parser.add_argument(
        "action", nargs="?", default="upgrade", choices=["upgrade", "downgrade", "check", "heads"]
    )
    args = parser.parse_args(argv)
    try:
        s = settings.load()
        if args.action == "upgrade":
            upgrade(s.database_url, s.queue_database_url)
            print(f"migrated app and queue lineages at {settings.redact(s.database_url)}")
        elif args.action == "downgrade":
            downgrade(s.database_url, s.queue_database_url)
        elif args.action == "check":
            command.check(config("app", s.database_url))
        else:
            for lineage in LINEAGES:
                command.heads(config(lineage))
    except settings.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - turn connection failures into one line
        import sqlalchemy.exc

        if isinstance(exc, sqlalchemy.exc.OperationalError):
            print(f"error: {db.describe_connect_error(s.database_url, exc.orig or exc)}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
