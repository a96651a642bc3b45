"""pgqueue pages and API with Flask's test client, through pgqueue's real client on a fresh database."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from shared import pgqueue, settings

from .conftest import BASIC, csrf_token


@pytest.fixture
def jobs(database_url):
    """Jobs in two queues: alpha (noop, one with a <script> argument), beta (sleep)."""
    engine = sa.create_engine(settings.sqlalchemy_url(database_url))
    ids: dict[str, list[int]] = {"alpha": [], "beta": []}
    with engine.begin() as conn:
        for i in range(5):
            ids["alpha"].append(pgqueue.enqueue(conn, "noop", {"n": i}, queue="alpha"))
        ids["alpha"].append(
            pgqueue.enqueue(conn, "noop", {"x": "<script>window.pwned=1</script>"}, queue="alpha")
        )
        for _ in range(2):
            ids["beta"].append(pgqueue.enqueue(conn, "sleep", {"ms": 1}, queue="beta"))
    yield engine, ids
    engine.dispose()


def listed(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'data-job="(\d+)"', html)]


def state_of(engine, job_id: int) -> str:
    with engine.connect() as conn:
        return pgqueue.get_job(conn, job_id)["state"]


def test_filters_by_queue_state_task_and_search(user, jobs):
    _, ids = jobs
    assert sorted(listed(user.get("/pgqueue/jobs?queue=alpha").text)) == sorted(ids["alpha"])
    assert sorted(listed(user.get("/pgqueue/jobs?task=sleep").text)) == sorted(ids["beta"])
    assert listed(user.get("/pgqueue/jobs?state=completed").text) == []
    assert listed(user.get(f"/pgqueue/jobs?search={ids['beta'][0]}").text) == [ids["beta"][0]]
    assert sorted(listed(user.get("/pgqueue/jobs?search=sle").text)) == sorted(ids["beta"])


def test_keyset_pagination_walks_every_job_once(user, jobs):
    _, ids = jobs
    seen: list[int] = []
    url = "/pgqueue/jobs?limit=3"
    while url:
        page = user.get(url).text
        seen += listed(page)
        m = re.search(r'id="next-page" href="([^"]+)"', page)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert seen == sorted(ids["alpha"] + ids["beta"], reverse=True)


def test_job_detail_shows_arguments_escaped(user, jobs):
    _, ids = jobs
    page = user.get(f"/pgqueue/jobs/{ids['alpha'][-1]}").text
    assert "<script>window.pwned=1</script>" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    listing = user.get("/pgqueue/jobs").text
    assert "<script>window" not in listing


def test_unknown_job_is_a_404_page(user, jobs):
    assert user.get("/pgqueue/jobs/987654321").status_code == 404


def test_discard_then_retry_from_the_page(user, jobs):
    engine, ids = jobs
    job_id = ids["alpha"][0]
    page = user.get(f"/pgqueue/jobs/{job_id}")
    token = csrf_token(page.text)
    resp = user.post("/pgqueue/jobs/action", data={"csrf_token": token, "ids": job_id, "action": "discard"})
    assert resp.status_code == 302
    assert state_of(engine, job_id) == "discarded"
    user.post("/pgqueue/jobs/action", data={"csrf_token": token, "ids": job_id, "action": "retry"})
    assert state_of(engine, job_id) == "available"


def test_bulk_action_shows_the_count_then_applies_to_the_filter(user, jobs):
    engine, ids = jobs
    confirm = user.get("/pgqueue/jobs/bulk?action=cancel&queue=beta")
    assert confirm.status_code == 200
    assert re.search(r'id="bulk-count" data-exact="true">2<', confirm.text)
    resp = user.post(
        "/pgqueue/jobs/bulk",
        data={"csrf_token": csrf_token(confirm.text), "action": "cancel", "queue": "beta"},
    )
    assert resp.status_code == 302
    assert {state_of(engine, i) for i in ids["beta"]} == {"cancelled"}
    assert {state_of(engine, i) for i in ids["alpha"]} == {"available"}


def test_pause_and_resume_a_queue_from_the_page(user, jobs):
    engine, _ = jobs
    page = user.get("/pgqueue/queues")
    assert 'data-queue="alpha"' in page.text
    token = csrf_token(page.text)
    assert user.post("/pgqueue/queues/alpha/pause", data={"csrf_token": token}).status_code == 302
    with engine.connect() as conn:
        assert {q["name"]: q["paused"] for q in pgqueue.queues(conn)}["alpha"] is True
    assert re.search(
        r'data-queue="alpha">.*?<td class="queue-state">paused', user.get("/pgqueue/queues").text, re.S
    )
    user.post("/pgqueue/queues/alpha/resume", data={"csrf_token": token})
    with engine.connect() as conn:
        assert {q["name"]: q["paused"] for q in pgqueue.queues(conn)}["alpha"] is False


def test_sql_in_pgqueue_filters_changes_nothing(user, jobs):
    engine, ids = jobs
    for payload in ["alpha' OR '1'='1", "x'; UPDATE queue.pgqueue_jobs SET state='discarded'; --"]:
        for key in ("task", "search"):  # any text: it matches no job
            resp = user.get("/pgqueue/jobs", query_string={key: payload})
            assert resp.status_code == 200 and listed(resp.text) == []
        for key in ("queue", "state"):  # not a queue name, not a state: said so, next to the form
            resp = user.get("/pgqueue/jobs", query_string={key: payload})
            assert resp.status_code == 400 and listed(resp.text) == []
            assert 'id="job-filters"' in resp.text and f"{key}:" in resp.text
    assert {state_of(engine, i) for i in ids["alpha"] + ids["beta"]} == {"available"}


def test_overview_shows_counts_by_queue_and_state(user, jobs):
    page = user.get("/pgqueue/").text
    assert re.search(r'data-queue="alpha">.*?data-state="available">.*?>6<', page, re.S)
    data = user.get("/pgqueue/overview.json").get_json()
    assert data["counts"]["beta"]["available"] == 2 and data["totals"]["available"] == 8


def test_api_lists_gets_and_acts_on_jobs(client, jobs):
    engine, ids = jobs
    page = client.get("/api/pgqueue/jobs?queue=beta", headers=BASIC).get_json()
    assert [j["id"] for j in page["items"]] == sorted(ids["beta"], reverse=True)
    job = client.get(f"/api/pgqueue/jobs/{ids['beta'][0]}", headers=BASIC).get_json()
    assert job["params"] == {"ms": 1} and job["state"] == "available"
    assert client.get("/api/pgqueue/jobs/count?queue=alpha", headers=BASIC).get_json()["count"] == 6
    resp = client.post(
        "/api/pgqueue/jobs/actions", json={"action": "discard", "ids": ids["beta"]}, headers=BASIC
    )
    assert resp.get_json() == {"action": "discard", "changed": 2}
    resp = client.post(
        "/api/pgqueue/jobs/bulk", json={"action": "retry", "state": "discarded"}, headers=BASIC
    )
    assert resp.get_json()["changed"] == 2
    assert client.post("/api/pgqueue/queues/alpha/pause", headers=BASIC).get_json() == {
        "queue": "alpha",
        "paused": True,
    }
    assert client.post("/api/pgqueue/queues/nosuchqueue/pause", headers=BASIC).status_code == 404
    bad = client.post("/api/pgqueue/jobs/actions", json={"action": "explode", "ids": ["x"]}, headers=BASIC)
    assert bad.status_code == 400 and set(bad.get_json()["errors"]) == {"action", "ids"}
    assert client.get("/api/pgqueue/jobs?state=bogus", headers=BASIC).status_code == 400


def test_a_count_filtered_on_the_task_is_exact_within_the_window_and_a_lower_bound_past_it(
    client, jobs, monkeypatch
):
    from web import pgqueue_views

    count = client.get("/api/pgqueue/jobs/count?task=sleep", headers=BASIC).get_json()
    assert (count["count"], count["exact"]) == (2, True)  # the window holds every job: nothing left out
    monkeypatch.setattr(pgqueue_views, "SCAN_WINDOW", 1)  # as if the table held more jobs than the window
    count = client.get("/api/pgqueue/jobs/count?task=sleep", headers=BASIC).get_json()
    assert (count["count"], count["exact"]) == (1, False) and count["basis"].startswith("at least")
    confirm = client.get("/api/pgqueue/jobs/count?search=noo", headers=BASIC).get_json()
    assert (confirm["count"], confirm["exact"]) == (0, False)  # the newest job is a sleep
    assert client.get("/api/pgqueue/jobs/count?queue=alpha", headers=BASIC).get_json()["exact"] is True
