"""Integration: what the pages say for a fleet (docs/deploy.md): the form's mode and why, the executor's
host, and report files that outlive the machine that wrote them."""

from __future__ import annotations

import re
import shutil

import psycopg
from psycopg.types.json import Jsonb

from shared import heartbeat
from shared.bench import experiments, report

from .conftest import dispose, log_in, make_app

SPEC = {"cases": [{"adapter": "pgqueue", "jobs": 10}], "repetitions": 1}


def selected_mode(html: str) -> str:
    m = re.search(r'<option selected value="(\w+)">|<option value="(\w+)" selected>', html)
    assert m, "no selected mode in the form"
    return m.group(1) or m.group(2)


def test_the_form_proposes_managed_mode_when_no_worker_runs_and_says_why(user, monkeypatch):
    monkeypatch.delenv("FLY_APP_NAME", raising=False)
    page = user.get("/runs/new")
    assert page.status_code == 200
    assert selected_mode(page.text) == "managed"
    assert "no worker heartbeats" in page.text


def test_on_fly_the_form_proposes_attached_mode_and_says_why(user, monkeypatch):
    monkeypatch.setenv("FLY_APP_NAME", "bench-fleet")
    page = user.get("/runs/new")
    assert selected_mode(page.text) == "attached"
    assert "runs on Fly (app bench-fleet)" in page.text


def test_with_live_workers_the_form_proposes_attached_mode(user, database_url):
    beat = heartbeat.Heartbeat(
        heartbeat.WorkerIdentity(heartbeat.new_worker_id("pgqueue"), "pgqueue", ["default"], host="host-a"),
        database_url,
    )
    assert beat.beat()
    try:
        page = user.get("/runs/new")
        assert selected_mode(page.text) == "attached"
        assert "live on host-a" in page.text
    finally:
        beat.stop()
    with psycopg.connect(database_url) as conn:
        machine = conn.execute("SELECT info->'machine' FROM queue.workers").fetchone()[0]
    assert machine["cpus"] >= 1 and machine["memory_mb"] > 0, "the heartbeat tells its machine"


def test_a_report_outlives_its_folder_and_the_web_process_and_downloads_from_its_page(
    database_url, monkeypatch, tmp_path
):
    eid = experiments.start_experiment(experiments.validate_spec(SPEC), database_url=database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE benchmark_runs SET status = 'completed', metrics = %s WHERE experiment_id = %s",
            (Jsonb({"throughput": 100.0, "audit": {"enqueued": 10, "lost": 0, "duplicates": 0}}), eid),
        )
        conn.execute("UPDATE experiments SET status = 'completed' WHERE id = %s", (eid,))
        files = report.write(conn, eid, tmp_path / "report")
        report.store_files(conn, eid, files)
    written = {p.name: p.read_bytes() for p in files}
    shutil.rmtree(tmp_path / "report")  # the machine's disk is gone after a deploy

    # A web process that did not write it (a new app: the old one's state is gone with it).
    app = make_app(monkeypatch, database_url)
    try:
        client = app.test_client()
        assert log_in(client).status_code == 302
        page = client.get(f"/runs/experiments/{eid}")
        assert page.status_code == 200
        links = re.findall(rf'href="(/runs/experiments/{eid}/report/[^"]+)"', page.text)
        assert {link.rsplit("/", 1)[1] for link in links} == set(written)
        for link in links:
            resp = client.get(link)
            assert resp.status_code == 200
            assert resp.data == written[link.rsplit("/", 1)[1]]
        assert client.get(f"/runs/experiments/{eid}/report/results.json").mimetype == "application/json"
        assert client.get(f"/runs/experiments/{eid}/report/nothing.txt").status_code == 404
        # Only for a logged-in user.
        anonymous = app.test_client()
        assert anonymous.get(f"/runs/experiments/{eid}/report/results.json").status_code in (302, 401)
    finally:
        dispose(app)


def test_the_celery_page_reads_the_heartbeats_through_the_named_queries(app, database_url):
    """`/celery/`'s heartbeat table and the queues it asks each broker for come from `queue.workers`
    (shared/sql/heartbeat.sql): running workers first, `alive` while fresh and not stopped."""
    from web import celery_info

    def identity(broker: str, queue: str) -> heartbeat.WorkerIdentity:
        return heartbeat.WorkerIdentity(
            heartbeat.new_worker_id("celery"), "celery", [queue], info={"broker": broker}, host="host-b"
        )

    gone = heartbeat.Heartbeat(identity("redis", "q-gone"), database_url)
    assert gone.beat()
    gone.stop()
    live = heartbeat.Heartbeat(identity("redis", "q-live"), database_url)
    assert live.beat()
    other = heartbeat.Heartbeat(identity("postgres", "q-sql"), database_url)
    assert other.beat()
    try:
        with app.app_context():
            workers = celery_info.heartbeat_workers()
            queues = celery_info._heartbeat_queues("redis")
    finally:
        live.stop()
        other.stop()
    assert [w["id"] for w in workers][-1] == gone.identity.id, "a stopped worker comes last"
    by_id = {w["id"]: w for w in workers}
    assert by_id[live.identity.id]["alive"] and not by_id[gone.identity.id]["alive"]
    assert by_id[live.identity.id]["broker"] == "redis" and by_id[live.identity.id]["host"] == "host-b"
    assert by_id[gone.identity.id]["stopped_at"] is not None
    assert {"q-gone", "q-live"} <= set(queues) and "q-sql" not in queues
