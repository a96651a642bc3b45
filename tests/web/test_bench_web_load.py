"""Acceptance: the load phase of `make bench-web` (`webbench.load`) against the real web service (gunicorn),
from sender processes of its own: every request leaves once, on schedule, and is answered."""

from __future__ import annotations

from urllib.parse import urlsplit

import psutil
import pytest

from shared.bench import httpload, openloop, webbench

from .conftest import PASSWORD, served


def test_the_load_phase_sends_every_request_once_from_its_own_processes(pg_server, template_db, monkeypatch):
    monkeypatch.setattr(webbench, "PASSWORD", PASSWORD)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with served(pg_server, template_db, "load") as (url, _):
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        client = webbench.Client(parts.hostname, parts.port)
        client.login()
        opener = httpload.HttpOpener(parts.hostname, parts.port, "/pgqueue/", client.cookie, connections=2)
        run = openloop.run(opener, 120, 60.0, processes=2)
        summary = webbench.load(parts.hostname, parts.port, client.cookie, "/pgqueue/", 60, 1, processes=2)
    assert run.processes == 2 and run.sent == 120
    assert [a.seq for a in run.arrivals] == list(range(120)), "every request once"
    for a in run.arrivals:
        written, answered, status = a.outcome
        assert status == 200, a
        assert a.due <= a.sent_at <= written <= answered, "none leaves before it is due"
        assert a.due == pytest.approx(run.started_at + a.seq / 60.0)
    # on time: requests leave while earlier ones still wait for their answers
    assert sorted(a.lag for a in run.arrivals)[60] < 0.1
    assert summary["requests"] == 60 and summary["errors"] == 0, summary["error_kinds"]
    assert summary["processes"] == 2
    assert summary["p50"] >= summary["service_p50"] > 0
    openloop.shutdown()
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before, "every sender process ended"
