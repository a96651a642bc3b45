"""The Flask app factory (the web service's composition root)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, jsonify, redirect, render_template, request, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from shared import settings, workloads
from web import inputs

csrf = CSRFProtect()

CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""Scripts, styles, fonts and fetches from the app itself only (no inline script or style anywhere);
images also as `data:` URIs, which Flask-Admin's Bootstrap stylesheet uses for its form controls' icons."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class SessionCookies(SecureCookieSessionInterface):
    """The session cookie is `Secure` whenever the request came over HTTPS (behind Fly's proxy: see
    `ProxyFix` in `create_app`), as well as when `SESSION_COOKIE_SECURE` says so."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(super().get_cookie_secure(app) or request.is_secure)


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
        SESSION_IDLE_SECONDS=30 * 60,
        SESSION_TOUCH_SECONDS=60,
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        PAGE_SIZE=50,
        COUNT_CACHE_SECONDS=2.0,
        BROKER_PROBE_TIMEOUT=1.0,
        CELERY_PROBE_INTERVAL=5.0,
        PROXY_HOPS=1,
    )
    if config:
        app.config.update(config)
    check_secrets(app.config["ADMIN_PASSWORD"], app.config["SECRET_KEY"] or "")
    app.session_interface = SessionCookies()
    if app.config["PROXY_HOPS"]:
        # fly.toml forces HTTPS at Fly's proxy, which forwards plain HTTP with X-Forwarded-Proto. Trust
        # that header from one proxy and nothing else (not the client address, host or prefix).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=0, x_proto=app.config["PROXY_HOPS"], x_host=0, x_port=0
        )
    app.url_map.converters["id"] = inputs.IdConverter
    # The user's own workloads (`BENCH_WORKLOADS`): the form offers them, and the executor it launches
    # inherits the variable (docs/benchmark.md, "Your own workload").
    try:
        workloads.load_user_modules()
    except workloads.WorkloadModuleError as exc:
        raise settings.ConfigError(str(exc)) from None

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
    app.after_request(_security_headers)

    @app.get("/")
    @inputs.page()
    def home():
        return redirect(url_for("runs.index"))

    @app.get("/favicon.ico")
    def favicon():
        return app.send_static_file("favicon.ico")

    return app


def _security_headers(resp):
    """Every answer: the CSP and its friends. Every answer but static files: not to be stored anywhere
    (the pages show private data; a shared or back-button cache would keep it after logout)."""
    for name, value in SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    if request.endpoint not in ("static", "favicon") and not (request.endpoint or "").endswith(".static"):
        resp.headers["Cache-Control"] = "no-store"
    return resp


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.endswith(".json")


def _same_site_referrer() -> str | None:
    ref = request.referrer or ""
    parts = urlsplit(ref)
    if parts.netloc and parts.netloc == request.host and parts.path.startswith("/"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return None


def _error_pages(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        if _wants_json():
            return jsonify(error=f"CSRF check failed: {exc.description}"), 400
        return render_template(
            "error.html", code=400, title="Form expired or forged", message=exc.description
        ), 400

    @app.errorhandler(inputs.BadInput)
    def bad_input(exc: inputs.BadInput):
        if _wants_json():
            return jsonify(error=exc.message, errors=exc.errors), 400
        return render_template(
            "error.html",
            code=400,
            title="Bad input",
            message=exc.message,
            errors=exc.errors,
            back=_same_site_referrer(),
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
        return render_template(
            "error.html", code=code, title=exc.name, message=exc.description, back=_same_site_referrer()
        ), code
