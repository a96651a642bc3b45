"""Sessions that end, and the headers of every answer (docs/web.md, "Sessions" and "Security")."""

from __future__ import annotations

import sqlalchemy as sa

from shared import settings
from web import sessions

from .conftest import BASIC, csrf_token, log_in


def _engine(database_url: str) -> sa.Engine:
    return sa.create_engine(settings.sqlalchemy_url(database_url))


def _opens_private_page(client) -> bool:
    resp = client.get("/pgqueue/jobs")
    assert resp.status_code in (200, 302), resp.status_code
    return resp.status_code == 200


def test_a_copied_cookie_opens_nothing_after_logout(app, user):
    cookie = user.get_cookie("session")
    assert cookie is not None and _opens_private_page(user)
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    assert _opens_private_page(thief)
    page = user.get("/runs/")
    assert user.post("/logout", data={"csrf_token": csrf_token(page.text)}).status_code == 302
    assert not _opens_private_page(thief)
    assert thief.get("/pgqueue/jobs").headers["Location"].startswith("/login")


def test_an_idle_session_ends(app, user, database_url):
    assert _opens_private_page(user)
    idle = app.config["SESSION_IDLE_SECONDS"]
    with _engine(database_url).begin() as conn:
        conn.execute(
            sa.text("UPDATE web.sessions SET last_seen_at = now() - make_interval(secs => :s)"),
            {"s": idle + 5},
        )
    assert not _opens_private_page(user)


def test_use_keeps_a_session_alive_and_the_sessions_lifetime_bounds_it(app, user, database_url):
    engine = _engine(database_url)
    idle = app.config["SESSION_IDLE_SECONDS"]
    with engine.begin() as conn:  # used a while ago, within the idle timeout: the visit moves it on
        conn.execute(
            sa.text("UPDATE web.sessions SET last_seen_at = now() - make_interval(secs => :s)"),
            {"s": idle - 5},
        )
    assert _opens_private_page(user)
    with engine.connect() as conn:
        age = conn.execute(
            sa.text("SELECT extract(epoch FROM now() - last_seen_at) FROM web.sessions")
        ).scalar()
    assert age is not None and age < 60
    lifetime = app.config["PERMANENT_SESSION_LIFETIME"].total_seconds()
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE web.sessions SET created_at = now() - make_interval(secs => :s)"),
            {"s": lifetime + 5},
        )
    assert not _opens_private_page(user)


def test_the_table_holds_no_usable_token(user, database_url):
    cookie = user.get_cookie("session")
    assert cookie is not None
    with _engine(database_url).connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM web.sessions")).scalars().all()
    assert len(ids) == 1 and len(ids[0]) == 64 and ids[0] not in cookie.value


def test_the_sessions_table_matches_its_declaration(database_url):
    inspector = sa.inspect(_engine(database_url))
    columns = {c["name"]: c for c in inspector.get_columns("sessions", schema="web")}
    declared = sessions.sessions.c
    assert set(columns) == {c.name for c in declared}
    for c in declared:
        assert columns[c.name]["nullable"] == c.nullable, c.name
        assert (
            type(columns[c.name]["type"]).__name__.lower()
            in {
                "text": {"text"},
                "datetime": {"timestamp"},
            }[type(c.type).__name__.lower()]
        ), c.name


def test_the_session_cookie_is_httponly_lax_and_secure_behind_https(client):
    resp = log_in(client)
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # plain http: dev
    page = client.get("/login", headers={"X-Forwarded-Proto": "https"})
    resp = client.post(
        "/login",
        data={"username": "admin", "password": "test-password", "csrf_token": csrf_token(page.text)},
        # over HTTPS Flask-WTF also wants a same-site Referer, which the browser sends (Referrer-Policy)
        headers={"X-Forwarded-Proto": "https", "Referer": "https://localhost/login"},
    )
    assert resp.status_code == 302, resp.text[:500]
    assert "Secure" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]


def test_every_answer_carries_the_security_headers_and_private_ones_no_store(user):
    for path, headers, private in [
        ("/login", {}, True),
        ("/runs/", {}, True),
        ("/pgqueue/jobs?state=bogus", {}, True),
        ("/nowhere", {}, True),
        ("/api/runs", BASIC, True),
        ("/api/runs", {}, True),
        ("/admin/experiments/", {}, True),
        ("/up", {}, True),
        ("/favicon.ico", {}, False),
    ]:
        resp = user.get(path, headers=headers)
        csp = resp.headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", path
        assert resp.headers.get("Referrer-Policy"), path
        assert (resp.headers.get("Cache-Control") == "no-store") == private, (path, resp.headers)
    static = user.get("/favicon.ico")
    assert static.status_code == 200 and static.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
