"""The Flask app factory (the web service's composition root)."""

from __future__ import annotations

from typing import Any

from flask import Flask

from shared import settings


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `config` overrides settings read from the environment (tests use it)."""
    app = Flask(__name__)
    s = settings.load()
    app.config.update(
        SETTINGS=s,
        SECRET_KEY=s.secret_key or None,
        ADMIN_USER=s.admin_user,
        ADMIN_PASSWORD=s.admin_password,
    )
    if config:
        app.config.update(config)

    from web import health

    app.register_blueprint(health.bp)
    return app
