"""Security of the pages and the API (docs/architecture.md, "The web"), with Flask's test client on real PostgreSQL."""

from __future__ import annotations

import re
import subprocess

import pytest
import sqlalchemy as sa

from shared import settings

from ..support import VENV_BIN, service_env
from .conftest import BASIC, PASSWORD, csrf_token, log_in

OPEN = {"health.up", "auth.login", "static", "favicon"}
SAMPLE = {"int": "1", "id": "1", "default": "x", "string": "x", "path": "x"}
ARG_RE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>")


def concrete_urls(app):
    """Every rule of the URL map with sample arguments, and its methods (HEAD and OPTIONS aside)."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint in OPEN or rule.endpoint.endswith(".static"):
            continue
        path = ARG_RE.sub(lambda m: SAMPLE.get(m.group(1) or "default", "x"), rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path


def test_every_route_without_login_answers_401_or_redirects_to_the_login(app, client):
    seen = 0
    for endpoint, method, path in concrete_urls(app):
        resp = client.open(path, method=method)
        seen += 1
        if path.startswith("/api/"):
            assert resp.status_code == 401, (endpoint, method, path, resp.status_code)
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
            assert resp.is_json
        elif resp.status_code == 302:
            assert resp.headers["Location"].startswith("/login"), (endpoint, method, path)
        else:
            assert resp.status_code == 401, (endpoint, method, path, resp.status_code)
    assert seen > 30  # the whole map was walked, not an empty one


def test_up_and_login_stay_open(client):
    assert client.get("/up").status_code == 200
    assert client.get("/login").status_code == 200


def test_wrong_password_is_refused_and_no_session_is_opened(client):
    assert log_in(client, password="nope").status_code == 401
    assert client.get("/runs/").status_code == 302


def test_login_opens_a_session_and_logout_ends_it(client):
    assert log_in(client).status_code == 302
    page = client.get("/runs/")
    assert page.status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf_token(page.text)}).status_code == 302
    assert client.get("/runs/").status_code == 302


def test_login_never_redirects_off_site(client):
    page = client.get("/login")
    resp = client.post(
        "/login",
        data={
            "username": "admin",
            "password": PASSWORD,
            "next": "//evil.example/phish",
            "csrf_token": csrf_token(page.text),
        },
    )
    assert resp.headers["Location"] == "/runs/"


@pytest.mark.parametrize(
    "path, data",
    [
        ("/logout", {}),
        ("/runs/new", {"job_count": "10"}),
        ("/pgqueue/jobs/action", {"action": "retry", "ids": "1"}),
        ("/pgqueue/queues/default/pause", {}),
    ],
)
def test_a_form_post_without_csrf_token_answers_400(user, path, data):
    resp = user.post(path, data=data)
    assert resp.status_code == 400
    assert "CSRF" in resp.text or "csrf" in resp.text.lower()
    assert user.get("/runs/").status_code == 200  # still logged in: nothing happened


def test_the_api_ignores_the_session_cookie(user):
    assert user.get("/runs/").status_code == 200
    resp = user.get("/api/runs")
    assert resp.status_code == 401 and resp.is_json


def test_the_api_takes_http_basic_and_needs_no_csrf_token(client):
    assert client.get("/api/runs", headers=BASIC).status_code == 200
    bad = {"Authorization": "Basic YWRtaW46d3Jvbmc="}  # admin:wrong
    assert client.get("/api/runs", headers=bad).status_code == 401
    # A POST without any CSRF token reaches the handler (a 400 naming its bad fields, not a CSRF failure).
    resp = client.post("/api/pgqueue/jobs/actions", json={"action": "explode", "ids": []}, headers=BASIC)
    assert resp.status_code == 400 and set(resp.get_json()["errors"]) == {"action", "ids"}
    assert "CSRF" not in resp.get_json()["error"]


def test_a_changed_password_ends_open_sessions(app, user):
    assert user.get("/runs/").status_code == 200
    app.config["ADMIN_PASSWORD"] = "rotated"
    assert user.get("/runs/").status_code == 302


def test_admin_queries_run_under_a_statement_timeout(app):
    from web import database

    with app.app_context():
        with database.admin_conn(timeout_ms=1234) as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "1234ms"
        with database.admin_conn(timeout_ms=50) as conn:
            with pytest.raises(sa.exc.OperationalError) as exc:
                conn.execute(sa.text("SELECT pg_sleep(2)"))
        assert database.is_timeout(exc.value)


def test_sql_in_filters_changes_nothing_and_shows_no_error_page(user, database_url):
    payloads = ["x' OR '1'='1", "'; DROP TABLE queue.celery_taskmeta; --", "1; DELETE FROM experiments"]
    for p in payloads:
        for path, params, status in [
            ("/celery/tasks", {"name": p, "search": p}, 200),
            ("/celery/tasks", {"status": p}, 400),  # not a Celery status: said so
            ("/pgqueue/jobs", {"task": p, "search": p}, 200),
            ("/pgqueue/jobs", {"queue": p, "state": p}, 400),  # not a queue name, not a state
            ("/runs/compare", {}, 200),
        ]:
            resp = user.get(path, query_string=params)
            assert resp.status_code == status, (path, p, resp.status_code)
            assert "Traceback" not in resp.text and "Internal Server Error" not in resp.text
    engine = sa.create_engine(settings.sqlalchemy_url(database_url))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('queue.celery_taskmeta') IS NOT NULL")).scalar()
        assert conn.execute(sa.text("SELECT to_regclass('public.experiments') IS NOT NULL")).scalar()
    engine.dispose()


def test_stored_script_tags_render_escaped(user, database_url):
    evil = "<script>window.pwned=1</script>"
    engine = sa.create_engine(settings.sqlalchemy_url(database_url))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO queue.celery_taskmeta (id, task_id, status, name, traceback) VALUES (nextval('queue.task_id_sequence'), :id, 'FAILURE', :n, :t)"
            ),
            {"id": "t-1", "n": evil, "t": evil},
        )
        exp_id = conn.execute(
            sa.text("INSERT INTO experiments (status, error) VALUES ('failed', :e) RETURNING id"), {"e": evil}
        ).scalar()
    engine.dispose()
    for path in ["/celery/tasks", f"/runs/experiments/{exp_id}", "/runs/"]:
        page = user.get(path).text
        assert evil not in page, path
        assert "&lt;script&gt;" in page, path


def test_create_app_refuses_to_start_without_password_or_secret(database_url, monkeypatch):
    from web.app import create_app

    monkeypatch.setenv("SECRET_KEY", "k")
    monkeypatch.setenv("ADMIN_PASSWORD", "")
    with pytest.raises(settings.ConfigError, match="ADMIN_PASSWORD"):
        create_app()
    monkeypatch.setenv("ADMIN_PASSWORD", "p")
    monkeypatch.setenv("SECRET_KEY", "")
    with pytest.raises(settings.ConfigError, match="SECRET_KEY"):
        create_app()


@pytest.mark.parametrize("variable", ["ADMIN_PASSWORD", "SECRET_KEY"])
def test_bench_web_exits_2_with_one_line_when_a_secret_is_unset(database_url, variable):
    env = service_env(database_url, **{variable: ""})
    proc = subprocess.run(
        [str(VENV_BIN / "bench-web")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and variable in lines[0] and "Traceback" not in proc.stderr
