"""Login sessions held by the server (`web.sessions`, migration a0006): logging out ends them for good.

The cookie (Flask's signed session) carries a random token; the table holds its SHA-256, so a session
exists while its row does. A session ends when its user logs out (the row is deleted), when it has been
idle longer than `SESSION_IDLE_SECONDS`, when it is older than `PERMANENT_SESSION_LIFETIME`, or when the
credentials change (the row's keyed digest of them no longer matches: the row is deleted on sight).
Each page request reads the row in one statement, which also moves `last_seen_at` on when it is more
than `SESSION_TOUCH_SECONDS` old (a write per minute of use, not per request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa
from flask import current_app

from web import database

metadata = sa.MetaData(schema="web")
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("user_name", sa.Text, nullable=False),
    sa.Column("credentials", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

READ = sa.text(
    """
    WITH s AS (
        SELECT id, user_name, credentials, last_seen_at
          FROM web.sessions
         WHERE id = :id
           AND last_seen_at > now() - make_interval(secs => :idle)
           AND created_at > now() - make_interval(secs => :lifetime)
    ), touched AS (
        UPDATE web.sessions t SET last_seen_at = now()
          FROM s
         WHERE t.id = s.id AND s.last_seen_at < now() - make_interval(secs => :touch)
    )
    SELECT user_name, credentials FROM s
    """
)


def credentials_digest() -> str:
    """A keyed digest of the current credentials: it changes with ADMIN_PASSWORD, ADMIN_USER or SECRET_KEY."""
    cfg = current_app.config
    material = f"{cfg['ADMIN_USER']}\0{cfg['ADMIN_PASSWORD']}".encode()
    return hmac.new(str(cfg["SECRET_KEY"]).encode(), material, hashlib.sha256).hexdigest()


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _limits() -> dict[str, float]:
    cfg = current_app.config
    return {
        "idle": float(cfg["SESSION_IDLE_SECONDS"]),
        "lifetime": cfg["PERMANENT_SESSION_LIFETIME"].total_seconds(),
        "touch": float(cfg["SESSION_TOUCH_SECONDS"]),
    }


def open_session(user: str) -> str:
    """A new session for `user`; returns the token for the cookie. Ended sessions are swept here."""
    token = secrets.token_urlsafe(32)
    limits = _limits()
    with database.admin_conn() as conn:
        conn.execute(
            sa.text(
                "DELETE FROM web.sessions WHERE last_seen_at < now() - make_interval(secs => :idle) "
                "OR created_at < now() - make_interval(secs => :lifetime) OR credentials <> :credentials"
            ),
            {"idle": limits["idle"], "lifetime": limits["lifetime"], "credentials": credentials_digest()},
        )
        conn.execute(
            sessions.insert().values(id=_key(token), user_name=user, credentials=credentials_digest())
        )
    return token


def user_of(token: object) -> str | None:
    """The user of a live session, or None (no such session, idle too long, too old, credentials changed)."""
    if not isinstance(token, str) or not token or len(token) > 200:
        return None
    with database.admin_conn() as conn:
        row = conn.execute(READ, {"id": _key(token), **_limits()}).first()
        if row is None:
            return None
        if not hmac.compare_digest(row.credentials, credentials_digest()):
            conn.execute(sessions.delete().where(sessions.c.id == _key(token)))
            return None
    return row.user_name


def close(token: object) -> None:
    """End a session: its cookie, copied or not, opens nothing any more."""
    if isinstance(token, str) and token:
        with database.admin_conn() as conn:
            conn.execute(sessions.delete().where(sessions.c.id == _key(token)))
