"""Starting an experiment through the API (the operation schemathesis leaves out): 201, 400, 409, 422."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared import settings

from .conftest import BASIC

experiments = pytest.importorskip("shared.bench.experiments")

SPEC = {"adapters": ["pgqueue"], "jobs": 10, "scheduling": ["bulk"], "workload": "noop", "repetitions": 1}


@pytest.fixture
def launched(monkeypatch):
    """Record executor launches instead of starting one (the browser test runs a real executor)."""
    calls: list[int] = []
    monkeypatch.setattr(experiments, "launch_executor", lambda eid, **_: calls.append(eid) or 424242)
    return calls


def test_a_valid_spec_starts_an_experiment_and_its_executor(client, launched, database_url):
    resp = client.post("/api/experiments", json={**SPEC, "mode": "managed"}, headers=BASIC)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "pending" and body["mode"] == "managed"
    assert launched == [body["id"]]
    runs = client.get(f"/api/runs?experiment_id={body['id']}", headers=BASIC).get_json()["items"]
    assert [r["adapter"] for r in runs] == ["pgqueue"]

    # one experiment at a time: the second is a 409
    again = client.post("/api/experiments", json=SPEC, headers=BASIC)
    assert again.status_code == 409 and again.is_json
    assert launched == [body["id"]]


def test_an_invalid_spec_is_a_422_naming_each_field(client, launched):
    for body, field in [
        ({**SPEC, "repetitions": 99}, "repetitions"),
        ({**SPEC, "jobs": 0}, "jobs"),
        ({**SPEC, "adapters": ["kafka"]}, "adapters"),
    ]:
        resp = client.post("/api/experiments", json=body, headers=BASIC)
        assert resp.status_code == 422, body
        assert field in resp.get_json()["errors"], resp.get_json()
    assert launched == []
    bad_mode = client.post("/api/experiments", json={**SPEC, "mode": "sideways"}, headers=BASIC)
    assert bad_mode.status_code == 422 and "mode" in bad_mode.get_json()["errors"]


def test_attached_mode_refuses_a_fault_case(client, launched):
    resp = client.post(
        "/api/experiments", json={**SPEC, "mode": "attached", "scenarios": ["fault"]}, headers=BASIC
    )
    assert resp.status_code == 422 and launched == []


def test_a_dead_executor_is_reaped_when_the_pages_look(user, database_url):
    engine = sa.create_engine(settings.sqlalchemy_url(database_url))
    with engine.begin() as conn:
        eid = conn.execute(
            sa.text(
                "INSERT INTO experiments (status, executor_pid, executor_host) "
                "VALUES ('running', 2147483646, :host) RETURNING id"
            ),
            {"host": settings.host_name()},
        ).scalar()
    assert user.get("/runs/").status_code == 200
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM experiments WHERE id = :id"), {"id": eid}).scalar()
    engine.dispose()
    assert status == "failed"
