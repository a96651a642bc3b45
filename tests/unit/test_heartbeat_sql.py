"""Unit: the named queries of `queue.workers` (shared/sql/heartbeat.sql, docs/architecture.md "SQL")."""

from __future__ import annotations

import re

from shared import heartbeat


def test_the_ready_channel_is_the_one_the_first_beat_notifies_and_the_harness_listens_on():
    """`READY_CHANNEL` names the channel once in Python; the .sql names it as a literal in two queries
    (LISTEN takes no parameter): all three must be the same name."""
    notified = re.findall(r"pg_notify\('([a-z_]+)'", heartbeat.QUERIES["worker_beat"])
    assert notified == [heartbeat.READY_CHANNEL]
    assert heartbeat.QUERIES["listen_workers"] == f"LISTEN {heartbeat.READY_CHANNEL}"


def test_every_statement_on_the_table_outside_pgqueue_is_a_named_query_of_heartbeat_sql():
    """Heartbeats, health checks, the harness and the web read and write `queue.workers` only through
    `shared/sql/heartbeat.sql`; the harness's own file holds none of them any more."""
    from shared.bench import store

    names = {
        "worker_beat",
        "worker_stopped",
        "worker_processes_spool_loaded",
        "worker_freshest_running",
        "worker_by_pid",
        "listen_workers",
        "worker_ready",
        "workers_live",
        "workers_behind_spool",
        "workers_of_adapter",
        "worker_queues_on_broker",
    }
    assert set(heartbeat.QUERIES.queries) == names
    assert not [n for n, q in store.QUERIES.queries.items() if "queue.workers" in q]
