"""A worker's heartbeat row (`shared.heartbeat`, its named queries in shared/sql/heartbeat.sql): the first beat
announces the worker on `READY_CHANNEL`, later beats do not; stopping marks the row, and the harness's and
the health check's reads see it."""

from __future__ import annotations

from shared import db, heartbeat


def test_only_the_first_beat_notifies_and_a_stopped_worker_is_no_longer_live(database_url):
    beat = heartbeat.Heartbeat(
        heartbeat.WorkerIdentity(heartbeat.new_worker_id("pgqueue"), "pgqueue", ["default"], host="host-h"),
        database_url,
    )
    with db.connect(database_url, autocommit=True) as listener:
        listener.execute(heartbeat.QUERIES["listen_workers"])
        assert beat.beat()
        first = [n for n in listener.notifies(timeout=5, stop_after=1)]
        assert [(n.channel, n.payload) for n in first] == [(heartbeat.READY_CHANNEL, beat.identity.id)]
        assert beat.beat()
        assert not list(listener.notifies(timeout=0.5, stop_after=1)), "a later beat announces nothing"
        live = heartbeat.rows(listener, "workers_live", {"within": 30, "limit": None})
        assert [w["id"] for w in live] == [beat.identity.id] and live[0]["host"] == "host-h"
        assert heartbeat.check(database_url, "pgqueue", host="host-h").healthy
        beat.stop()
        assert not heartbeat.rows(listener, "workers_live", {"within": 30, "limit": None})
        assert not heartbeat.check(database_url, "pgqueue", host="host-h").healthy
