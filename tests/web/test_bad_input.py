"""Bad input: forms re-render with messages, unknown ids give a 404 page, malformed API bodies a JSON 400."""

from __future__ import annotations

import pytest

from .conftest import BASIC, csrf_token


@pytest.fixture
def app(module_app):
    """Bad input changes nothing, so the module shares one database."""
    return module_app


def test_out_of_range_form_values_re_render_the_form_with_messages(user):
    page = user.get("/runs/new")
    resp = user.post(
        "/runs/new",
        data={
            "csrf_token": csrf_token(page.text),
            "mode": "managed",
            "adapters": ["pgqueue"],
            "scheduling_modes": ["bulk"],
            "workload": "noop",
            "scenario": "drain",
            "job_count": "0",
            "processes": "99",
            "slots": "100000",
            "repetitions": "-1",
        },
    )
    assert resp.status_code == 400
    assert 'id="experiment-form"' in resp.text
    for field in ("job_count", "processes", "slots", "repetitions"):
        assert f'data-field="{field}"' in resp.text, field
    assert 'value="99"' in resp.text  # the user's values are kept


def test_a_form_with_nothing_chosen_names_the_missing_fields(user):
    page = user.get("/runs/new")
    resp = user.post("/runs/new", data={"csrf_token": csrf_token(page.text), "job_count": "abc"})
    assert resp.status_code == 400
    assert 'data-field="adapters"' in resp.text and 'data-field="job_count"' in resp.text


@pytest.mark.parametrize(
    "path",
    [
        "/runs/987654",
        "/runs/experiments/987654",
        "/runs/experiments/987654/cases/x",
        "/runs/compare?ids=987654,987655",
        "/nowhere",
    ],
)
def test_unknown_ids_give_a_404_page(user, path):
    resp = user.get(path)
    assert resp.status_code == 404
    assert "<h1" in resp.text and "404" in resp.text


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/987654",
        "/api/experiments/987654",
        "/api/runs/987654/series",
        "/api/runs/99999999999999999999",
    ],
)
def test_unknown_ids_in_the_api_give_a_json_404(client, path):
    resp = client.get(path, headers=BASIC)
    assert resp.status_code == 404 and resp.is_json and resp.get_json()["error"]


@pytest.mark.parametrize("path", ["/api/experiments", "/api/pgqueue/jobs/actions", "/api/pgqueue/jobs/bulk"])
@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b""])
def test_malformed_api_bodies_give_a_400_with_a_json_error(client, path, body):
    resp = client.post(path, data=body, headers={**BASIC, "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.is_json and "JSON object" in resp.get_json()["error"]


@pytest.mark.parametrize("query", ["after=abc", "limit=0", "limit=100000", "after=-5"])
def test_malformed_paging_parameters_are_400_not_500(user, client, query):
    assert user.get(f"/runs/?{query}").status_code == 400
    resp = client.get(f"/api/runs?{query}", headers=BASIC)
    assert resp.status_code == 400 and resp.is_json


def test_compare_needs_two_runs(client):
    resp = client.get("/api/compare?ids=1", headers=BASIC)
    assert resp.status_code == 400 and resp.is_json
    resp = client.get("/api/compare?ids=1,x", headers=BASIC)
    assert resp.status_code == 400 and resp.is_json


def test_attached_mode_offers_only_what_running_workers_can_do(user):
    page = user.get("/runs/new")
    resp = user.post(
        "/runs/new",
        data={
            "csrf_token": csrf_token(page.text),
            "mode": "attached",
            "adapters": ["pgqueue", "celery"],
            "brokers": ["redis"],
            "scheduling_modes": ["bulk"],
            "workload": "noop",
            "scenario": "drain",
            "job_count": "10",
            "processes": "1",
            "slots": "2",
            "repetitions": "1",
        },
    )
    assert resp.status_code == 400
    assert "attached mode: no worker is running for pgqueue, celery.redis.defaults (make dev)" in resp.text


def test_fault_scenario_is_refused_in_attached_mode(user):
    page = user.get("/runs/new")
    resp = user.post(
        "/runs/new",
        data={
            "csrf_token": csrf_token(page.text),
            "mode": "attached",
            "adapters": ["pgqueue"],
            "scheduling_modes": ["bulk"],
            "workload": "noop",
            "scenario": "fault",
            "job_count": "10",
            "processes": "1",
            "slots": "2",
            "repetitions": "1",
        },
    )
    assert resp.status_code == 400 and 'data-field="scenario"' in resp.text
