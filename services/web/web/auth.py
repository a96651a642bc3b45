"""Authentication: a login form and a session for pages, HTTP Basic for `/api/` (docs/web.md, "Security").

Credentials come from the environment (`ADMIN_USER`, `ADMIN_PASSWORD`) and are compared in constant time.
A page session is a row of `web.sessions` (`web/sessions.py`): logging out deletes it, so a copied cookie
opens nothing afterwards; it also ends when idle, when too old, and when the credentials change. The API
never reads the session: a browser's cookie cannot authorise an API call, which is why the API needs no
CSRF token.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from web import sessions

bp = Blueprint("auth", __name__)

# Endpoints that answer without a login: the health check, the login page, static assets, the icon.
OPEN_ENDPOINTS = {"health.up", "auth.login", "static", "favicon"}


def credentials_match(user: str, password: str) -> bool:
    """Constant-time comparison of both fields (no early exit on the user name)."""
    cfg = current_app.config
    ok_user = hmac.compare_digest(user.encode(), str(cfg["ADMIN_USER"]).encode())
    ok_password = hmac.compare_digest(password.encode(), str(cfg["ADMIN_PASSWORD"]).encode())
    return ok_user and ok_password


def logged_in() -> bool:
    """Whether this request carries a live session (read once per request; the user is `g.user`)."""
    if "user" not in g:
        g.user = sessions.user_of(session.get("sid"))
    return g.user is not None


def basic_auth_ok() -> bool:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return False
    return credentials_match(auth.username or "", auth.password or "")


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: an open redirect would hand a phishing link our login page."""
    if not target:
        return url_for("runs.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return url_for("runs.index")
    return target


def require_login():
    """App-wide `before_request`: pages need the session; the API checks Basic itself."""
    endpoint = request.endpoint or ""
    if endpoint in OPEN_ENDPOINTS or endpoint.endswith(".static"):
        return None
    if request.blueprint == "api" or request.path.startswith("/api/"):
        return None  # the API blueprint answers 401 itself; it never looks at the session
    if logged_in():
        return None
    if request.path.endswith(".json") or request.accept_mimetypes.best == "application/json":
        return jsonify(error="login required"), 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def init_app(app: Flask) -> None:
    app.before_request(require_login)


class LoginForm(FlaskForm):
    username = StringField("User", validators=[DataRequired(), Length(max=200)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])
    next = HiddenField()


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm(next=request.args.get("next", ""))
    if form.validate_on_submit():
        if credentials_match(form.username.data or "", form.password.data or ""):
            sessions.close(session.get("sid"))
            session.clear()
            session["sid"] = sessions.open_session(form.username.data or "")
            session["user"] = form.username.data
            session.permanent = True
            return redirect(_safe_next(form.next.data))
        flash("Wrong user name or password.", "error")
        return render_template("login.html", form=form), 401
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form), status


@bp.post("/logout")
def logout():
    sessions.close(session.get("sid"))
    session.clear()
    flash("Logged out.", "info")
    return redirect(url_for("auth.login"))
