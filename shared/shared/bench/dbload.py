"""The load a run puts on the database: deltas of `pg_stat_database` (transactions, rows inserted,
updated and deleted) and of the WAL position across the run, and the dead and live rows of the `queue`
schema's tables at its end. These are whole-database figures: idle workers' polling is in them.
"""

from __future__ import annotations

import psycopg

from shared.bench import store


def snapshot(conn: psycopg.Connection) -> dict[str, float]:
    """Counters of the current database now (the statistics snapshot is refreshed first)."""
    try:
        conn.execute(store.q("stats_flush"))
    except psycopg.Error:
        pass  # before PostgreSQL 15: statistics are flushed as they come
    conn.execute(store.q("stats_clear_snapshot"))
    stats = conn.execute(store.q("database_counters")).fetchone()
    rows = conn.execute(store.q("queue_rows")).fetchone()
    if stats is None or rows is None:  # the current database always has a row; satisfy the types
        raise RuntimeError("pg_stat_database has no row for the current database")
    xacts, ins, upd, dele, wal = stats
    dead, live = rows
    return {
        "transactions": float(xacts),
        "rows_inserted": float(ins),
        "rows_updated": float(upd),
        "rows_deleted": float(dele),
        "wal_bytes": float(wal),
        "queue_dead_rows": float(dead),
        "queue_live_rows": float(live),
    }


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Counters' deltas; dead and live rows are levels (after the run), not deltas."""
    out = {k: after[k] - before[k] for k in before if not k.startswith("queue_")}
    out["queue_dead_rows"] = after["queue_dead_rows"]
    out["queue_live_rows"] = after["queue_live_rows"]
    return out
