"""The run form reaches every scenario's parameters; a one-repetition case offers no comparison of one run."""

from __future__ import annotations

import re

import pytest

from shared.bench import terms

from .conftest import BASIC, csrf_token

experiments = pytest.importorskip("shared.bench.experiments")

FORM = {
    "mode": "managed",
    "adapters": "pgqueue",
    "job_count": "10",
    "scheduling_modes": "bulk",
    "workload": "noop",
    "processes": "1",
    "slots": "1",
    "repetitions": "1",
}


@pytest.fixture
def launched(monkeypatch):
    """Record executor launches instead of starting one."""
    calls: list[int] = []
    monkeypatch.setattr(experiments, "launch_executor", lambda eid, **_: calls.append(eid) or 424242)
    return calls


def _start(user, **fields: str) -> int:
    page = user.get("/runs/new")
    resp = user.post("/runs/new", data={"csrf_token": csrf_token(page.text), **FORM, **fields})
    assert resp.status_code == 302, resp.text[-2000:]
    return int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[-1])


def test_the_form_offers_every_fault_and_the_burst_count(user):
    page = user.get("/runs/new").text
    select = re.search(r'<select[^>]*name="fault".*?</select>', page, re.S)
    assert select, "no fault field"
    assert set(re.findall(r'<option[^>]*value="([^"]+)"', select.group())) == set(terms.FAULTS)
    assert "restart_postgres" in terms.FAULTS
    assert re.search(r'<input[^>]*name="bursts"', page)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"scenario": "fault", "fault": "restart_postgres"},
            {"scenario": "fault", "fault": "restart_postgres"},
        ),
        ({"scenario": "fault", "fault": "kill_worker"}, {"scenario": "fault", "fault": "kill_worker"}),
        ({"scenario": "burst", "bursts": "3"}, {"scenario": "burst", "bursts": 3}),
    ],
)
def test_the_form_starts_the_scenario_it_describes(user, launched, client, fields, expected):
    experiment_id = _start(user, **fields)
    assert launched == [experiment_id]
    exp = client.get(f"/api/experiments/{experiment_id}", headers=BASIC).get_json()
    (case,) = exp["spec"]["cases"]
    assert {k: case[k] for k in expected} == expected


@pytest.mark.parametrize("repetitions", [1, 2])
def test_a_case_links_to_a_comparison_of_its_repetitions_only_when_it_has_two(
    user, launched, client, repetitions
):
    experiment_id = _start(user, repetitions=str(repetitions))
    runs = client.get(f"/api/runs?experiment_id={experiment_id}", headers=BASIC).get_json()["items"]
    assert len(runs) == repetitions
    case = user.get(f"/runs/experiments/{experiment_id}/cases/{runs[0]['case_key']}")
    assert case.status_code == 200
    link = re.search(r'id="compare-repetitions" href="([^"]+)"', case.text)
    assert (link is not None) == (repetitions > 1)
    if link:
        assert user.get(link.group(1).replace("&amp;", "&")).status_code == 200
        # the picker's checkboxes send the ids as a repeated parameter: the same comparison
        repeated = "&".join(f"ids={r['id']}" for r in runs)
        assert user.get(f"/runs/compare?{repeated}").status_code == 200
