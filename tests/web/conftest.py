"""Fixtures of the web tests: the app on a fresh migrated database, clients with and without a login."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

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


@pytest.fixture
def app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("ADMIN_USER", "admin")
    monkeypatch.setenv("ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("SECRET_KEY", "test-secret-key")
    from web import cache
    from web.app import create_app

    cache.clear()
    app = create_app({"TESTING": True, "BROKER_PROBE_TIMEOUT": 0.5})
    yield app
    for engine in set(app.extensions["bench_engines"].values()):
        engine.dispose()


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
