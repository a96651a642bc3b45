"""Hostile input on every route: no 5xx, and a 4xx that says what was wrong (docs/web.md, "Input").

The walk takes the app's URL map, so a route added later is walked too. Each route gets each value of the
corpus in each parameter it declares (the models of `web/inputs.py`, recorded on the view), in an extra
parameter it does not take, and in each path argument; forms are posted with a valid CSRF token, API
bodies as JSON. Flask-Admin's list and details views get its own parameters (`page`, `flt0_0`, ...).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import BASIC, csrf_token, log_in

CORPUS = [
    "a\x00b",  # NUL: PostgreSQL's text refuses it
    "\x00",
    "99999999999999999999",  # digits past bigint
    "9223372036854775808",
    "-1",
    "²",  # str.isdigit() says yes, int() says no
    "٣",  # int() says yes: not an ASCII digit
    "x" * 5000,
    "\x01\x1f\x7f",
    "a\r\nb",
    "' OR 1=1--",
    "",
]
JSON_VALUES: list[Any] = [*CORPUS, 2**64, -(2**63) - 1, -1, 0, 1.5, None, True, [], {}, ["a\x00"]]
PATH_VALUES = ["99999999999999999999", "9223372036854775808", "0", "²", "' OR 1=1--", "a%00b", "x" * 300]
EXTRA = "no_such_parameter"
FLASK_ADMIN = ["page", "page_size", "sort", "desc", "search", "flt0_0", "flt1_1", "id", "url"]
ARG = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
# Routes that are not ours to walk: static files, Flask-Admin's editing views (off: the views are
# read-only) and its exports; the login is walked separately (it answers 200 with its own messages).
SKIP = re.compile(
    r"^/(static|admin/static)/|^/admin/\w+/(new|edit|delete|action|ajax|export)/|^/(login|logout)$"
)

# Query strings that make a route do its work, each hostile value then replacing one of them
QUERY_BASE: dict[str, dict[str, str]] = {
    "/pgqueue/jobs/bulk": {"action": "retry"},
    "/runs/compare": {"ids": "1,2"},
    "/runs/compare/series.json": {"ids": "1,2"},
    "/api/compare": {"ids": "1,2"},
}
FORM_BASE: dict[str, dict[str, str]] = {
    "/pgqueue/jobs/action": {"action": "cancel", "ids": "1"},
    "/pgqueue/jobs/bulk": {"action": "cancel", "queue": "no_such_queue"},
    "/pgqueue/queues/pause": {"name": "no_such_queue"},
    "/pgqueue/queues/<name>/pause": {},
    "/pgqueue/queues/<name>/resume": {},
    # attached mode with no worker running: a form that passes every check still starts nothing
    "/runs/new": {
        "mode": "attached",
        "adapters": "pgqueue",
        "job_count": "1",
        "scheduling_modes": "bulk",
        "workload": "noop",
        "scenario": "drain",
        "processes": "1",
        "slots": "1",
        "repetitions": "1",
    },
}
BODY_BASE: dict[str, dict[str, Any]] = {
    "/api/experiments": {"mode": "attached", "adapters": ["pgqueue"], "jobs": 1, "repetitions": 1},
    "/api/pgqueue/jobs/actions": {"action": "cancel", "ids": [1]},
    "/api/pgqueue/jobs/bulk": {"action": "cancel", "queue": "no_such_queue"},
    "/api/pgqueue/queues/<name>/pause": {},
    "/api/pgqueue/queues/<name>/resume": {},
}


@pytest.fixture
def app(module_app):
    """Nothing here changes a row the walk reads: one database for the module."""
    return module_app


def _names(app, endpoint: str) -> tuple[list[str], list[str]]:
    """(query names, form or body names) a view declares."""
    view = app.view_functions[endpoint]
    op = getattr(view, "openapi_operation", None)
    if op is not None:
        query = list(op.query.model_fields) if op.query else []
        body = list(op.body.model_fields) if op.body else []
        return query, body
    models = getattr(view, "input_models", None)
    if models is not None:
        query_model, form_model = models
        return list(query_model.model_fields), list(form_model.model_fields) if form_model else []
    if endpoint.endswith(".index_view") or endpoint.endswith(".details_view"):
        return FLASK_ADMIN, []
    return [], []


def _paths(rule: str) -> list[str]:
    """The rule with its arguments set to each hostile value, and once to a harmless one."""
    if not ARG.search(rule):
        return [rule]
    harmless = ARG.sub(lambda m: "1" if m.group(1) == "id" else "x", rule)
    return [harmless, *(ARG.sub(lambda m, v=v: quote(v, safe=""), rule) for v in PATH_VALUES)]


def _check(resp, what: str, name: str | None = None) -> None:
    """No 5xx; a 4xx says what is wrong, in JSON under /api/ and on .json routes, else as a page."""
    assert resp.status_code < 500, (what, resp.status_code, resp.text[:500])
    text = resp.get_data().decode("utf-8", "replace")
    assert "Traceback (most recent call last)" not in text, what
    if resp.status_code < 400:
        return
    path = what.split(" ", 1)[1]
    if path.startswith("/api/") or ".json" in path.split("?")[0]:
        assert resp.is_json, (what, resp.status_code, text[:300])
        body = resp.get_json()
        assert isinstance(body.get("error"), str) and body["error"], (what, body)
        if resp.status_code == 400 and name and body.get("errors"):
            assert name in body["errors"] or name in body["error"], (what, body)
    else:
        assert "<h1" in text or 'data-field="' in text or "notice problem" in text, (what, text[:500])
        if resp.status_code == 400 and name:
            assert name in text, (what, text[:800])


def _walk_gets(app, client, headers: dict[str, str], api: bool) -> int:
    count = 0
    for rule in app.url_map.iter_rules():
        if SKIP.search(rule.rule) or "GET" not in (rule.methods or set()):
            continue
        if rule.rule.startswith("/api/") != api:
            continue
        query, _ = _names(app, rule.endpoint)
        for path in _paths(rule.rule):
            resp = client.get(path, headers=headers)
            _check(resp, f"GET {path}")
            count += 1
        base = _paths(rule.rule)[0]
        for name in [*query, EXTRA]:
            for value in CORPUS:
                query_string = {**QUERY_BASE.get(rule.rule, {}), name: value}
                resp = client.get(base, query_string=query_string, headers=headers)
                _check(resp, f"GET {base}?{name}={value[:20]!r}", name if value else None)
                count += 1
    return count


def test_every_page_answers_hostile_query_strings_and_paths_without_a_5xx(app, user):
    assert _walk_gets(app, user, {}, api=False) > 500


def test_every_api_operation_answers_hostile_query_strings_and_paths_without_a_5xx(app, client):
    assert _walk_gets(app, client, BASIC, api=True) > 300


def test_every_form_answers_hostile_fields_without_a_5xx(app, user):
    token = csrf_token(user.get("/runs/new").text)
    walked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule not in FORM_BASE:
            continue
        _, fields = _names(app, rule.endpoint)
        if rule.rule == "/runs/new":
            fields = list(FORM_BASE["/runs/new"]) + ["rate", "bursts", "fault", "workload_ms"]
        for path in _paths(rule.rule):
            resp = user.post(path, data={"csrf_token": token, **FORM_BASE[rule.rule]})
            _check(resp, f"POST {path}")
        base = _paths(rule.rule)[0]
        for name in [*fields, EXTRA]:
            for value in CORPUS:
                data = {"csrf_token": token, **FORM_BASE[rule.rule], name: value}
                resp = user.post(base, data=data)
                _check(resp, f"POST {base} {name}={value[:20]!r}")
                assert resp.status_code != 201
                walked += 1
    assert walked > 100
    # the attached-mode form never started an experiment
    assert "There is no experiment" in user.get("/runs/experiments/1").text


def test_every_api_body_answers_hostile_fields_without_a_5xx(app, client):
    walked = 0
    for rule in app.url_map.iter_rules():
        if rule.rule not in BODY_BASE:
            continue
        _, fields = _names(app, rule.endpoint)
        if rule.rule == "/api/experiments":
            fields = ["adapters", "jobs", "workload", "scenarios", "scheduling", "params", "brokers", "cases"]
        for path in _paths(rule.rule):
            resp = client.post(path, json=BODY_BASE[rule.rule], headers=BASIC)
            _check(resp, f"POST {path}")
        base = _paths(rule.rule)[0]
        for name in [*fields, "mode", EXTRA]:
            for value in JSON_VALUES:
                resp = client.post(base, json={**BODY_BASE[rule.rule], name: value}, headers=BASIC)
                _check(resp, f"POST {base} {name}={str(value)[:20]!r}")
                assert resp.status_code != 201, (base, name, value)
                walked += 1
    assert walked > 100


def test_the_login_form_answers_hostile_fields_without_a_5xx(client):
    for name in ("username", "password", "next", EXTRA):
        for value in CORPUS:
            page = client.get("/login", query_string={"next": value} if name == "next" else {})
            _check(page, f"GET /login?next={value[:20]!r}")
            data = {
                "username": "admin",
                "password": "wrong",
                "csrf_token": csrf_token(page.text),
                name: value,
            }
            resp = client.post("/login", data=data)
            _check(resp, f"POST /login {name}={value[:20]!r}")
            assert resp.status_code != 302 or resp.headers["Location"].startswith("/")
    assert log_in(client).status_code == 302
