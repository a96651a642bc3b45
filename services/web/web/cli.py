"""`bench-web`: the web service's one start command (gunicorn serving `create_app()`)."""

from __future__ import annotations

import sys

from shared import db, settings


def main(argv: list[str] | None = None) -> int:
    try:
        s = settings.load()
        from web.app import check_secrets

        check_secrets(s.admin_password, s.secret_key)
        db.check_ready(s.database_url, queue_url=s.queue_database_url)
    except (settings.ConfigError, db.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from gunicorn.app.wsgiapp import run

    sys.argv = [
        "gunicorn",
        "--config",
        "python:web.gunicorn_conf",
        *(argv if argv is not None else sys.argv[1:]),
        "web.app:create_app()",
    ]
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
