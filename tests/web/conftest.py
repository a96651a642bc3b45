"""Fixtures of the web tests: the app on a fresh migrated database, clients with and without a login."""

from __future__ import annotations

import base64
import re
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from flask.testing import FlaskClient

PASSWORD = "test-password"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token(html: str) -> str:
    m = TOKEN_RE.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1) or m.group(2)


def make_app(mp: pytest.MonkeyPatch, database_url: str) -> Flask:
    mp.setenv("DATABASE_URL", database_url)
    mp.delenv("QUEUE_DATABASE_URL", raising=False)
    mp.delenv("CELERY_BROKER_URL", raising=False)
    mp.setenv("ADMIN_USER", "admin")
    mp.setenv("ADMIN_PASSWORD", PASSWORD)
    mp.setenv("SECRET_KEY", "test-secret-key")
    from web import cache, throughput
    from web.app import create_app

    cache.clear()
    throughput.clear()
    return create_app({"TESTING": True, "BROKER_PROBE_TIMEOUT": 0.5})


def dispose(app: Flask) -> None:
    for engine in set(app.extensions["bench_engines"].values()):
        engine.dispose()


@pytest.fixture
def app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The app on this test's own fresh database."""
    app = make_app(monkeypatch, database_url)
    yield app
    dispose(app)


@pytest.fixture(scope="module")
def module_database_url(pg_server: str, template_db: str) -> Iterator[str]:
    """One fresh database for a whole module of tests that do not depend on each other's rows."""
    from ..conftest import create_database, drop_database

    name = f"bench_wm_{uuid.uuid4().hex[:10]}"
    url = create_database(pg_server, name, template=template_db)
    yield url
    drop_database(pg_server, name)


@pytest.fixture(scope="module")
def module_app(module_database_url: str) -> Iterator[Flask]:
    with pytest.MonkeyPatch.context() as mp:
        app = make_app(mp, module_database_url)
        yield app
    dispose(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def log_in(client: FlaskClient, password: str = PASSWORD):
    page = client.get("/login")
    return client.post(
        "/login",
        data={"username": "admin", "password": password, "csrf_token": csrf_token(page.text)},
    )


@pytest.fixture
def user(client: FlaskClient) -> FlaskClient:
    """A client with a logged-in session (and CSRF checks on, as in production)."""
    resp = log_in(client)
    assert resp.status_code == 302, resp.text
    return client


@contextmanager
def served(pg_server: str, template_db: str, name: str, **env: str) -> Iterator[tuple[str, str]]:
    """The real web service (`bench-web`: gunicorn) on a fresh database: yields (base URL, database URL)."""
    from shared import embedded

    from ..conftest import OUTPUT, create_database, drop_database
    from ..support import VENV_BIN, Proc, service_env, wait_until

    db_name = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    database_url = create_database(pg_server, db_name, template=template_db)
    port = embedded.free_port()
    web = Proc(
        [str(VENV_BIN / "bench-web")],
        service_env(
            database_url,
            PORT=str(port),
            WEB_CONCURRENCY="1",
            WEB_THREADS="8",
            BENCH_WEB_HOST="127.0.0.1",
            ADMIN_PASSWORD=PASSWORD,
            **env,
        ),
        OUTPUT / f"web-{name}" / "web.log",
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with urllib.request.urlopen(url + "/up", timeout=2) as resp:
            return resp.status == 200

    try:
        wait_until(up, 60, message="gunicorn answering /up")
        yield url, database_url
    finally:
        web.stop()
        drop_database(pg_server, db_name)
