"""The Flask app factory (the web service's composition root)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from shared import settings

csrf = CSRFProtect()


def check_secrets(admin_password: str, secret_key: str) -> None:
    """Refuse to serve pages with an empty password or signing key: raise `ConfigError` naming the variable."""
    if not admin_password:
        raise settings.ConfigError(
            f"{settings.ENV_ADMIN_PASSWORD} is not set; the admin pages refuse to start without a password "
            f"(set {settings.ENV_ADMIN_PASSWORD}, and {settings.ENV_ADMIN_USER} if not 'admin')"
        )
    if not secret_key:
        raise settings.ConfigError(
            f"{settings.ENV_SECRET_KEY} is not set; it signs the session cookie and CSRF tokens "
            f'(set it to a long random string, e.g. python -c "import secrets; print(secrets.token_hex(32))")'
        )


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app; `config` overrides settings read from the environment (tests use it)."""
    app = Flask(__name__)
    s = settings.load()
    app.config.update(
        SETTINGS=s,
        SECRET_KEY=s.secret_key or None,
        ADMIN_USER=s.admin_user,
        ADMIN_PASSWORD=s.admin_password,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        PAGE_SIZE=50,
        COUNT_CACHE_SECONDS=2.0,
        BROKER_PROBE_TIMEOUT=1.0,
    )
    if config:
        app.config.update(config)
    check_secrets(app.config["ADMIN_PASSWORD"], app.config["SECRET_KEY"] or "")

    from web import admin, api, auth, celery_views, database, filters, health, pgqueue_views, runs

    database.init_app(app)
    # Login first, CSRF second: an anonymous POST is sent to the login page rather than told its token
    # is missing.
    auth.init_app(app)
    csrf.init_app(app)
    filters.init_app(app)

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(runs.bp)
    app.register_blueprint(pgqueue_views.bp)
    app.register_blueprint(celery_views.bp)
    app.register_blueprint(api.bp)
    # The API authenticates with HTTP Basic only, never the cookie: no cross-site request can carry
    # its credentials, so CSRF tokens do not apply to it.
    csrf.exempt(api.bp)
    admin.init_app(app)
    _error_pages(app)

    @app.get("/")
    def home():
        from flask import redirect, url_for

        return redirect(url_for("runs.index"))

    return app


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.endswith(".json")


def _error_pages(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        if _wants_json():
            return jsonify(error=f"CSRF check failed: {exc.description}"), 400
        return render_template(
            "error.html", code=400, title="Form expired or forged", message=exc.description
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        if _wants_json():
            resp = jsonify(error=exc.description or exc.name)
            resp.status_code = code
            if code == 401:
                resp.headers["WWW-Authenticate"] = 'Basic realm="bench", charset="UTF-8"'
            if code == 405 and exc.get_response().headers.get("Allow"):
                resp.headers["Allow"] = exc.get_response().headers["Allow"]
            return resp
        return render_template("error.html", code=code, title=exc.name, message=exc.description), code
