"""What the Celery pages show: queue depth on each broker, tasks from the result table, workers.

Each broker is asked the way it can answer: the SQL broker by counting visible rows of
`queue.kombu_message` (bounded, never a full count), Redis by `LLEN` of the queue's list, RabbitMQ by a
passive `queue_declare` (its message count). Workers come from `inspect` on Redis and RabbitMQ (short
timeout) and from the heartbeats in `queue.workers` everywhere, the SQL broker included.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from typing import Any

import sqlalchemy as sa
from flask import current_app

from shared import celery_app, heartbeat, settings
from web import cache, database, serializers

DEPTH_CAP = 100_000
"""Visible messages are counted up to this bound; past it the page says '100,000+'."""

SQL_BROKER_LIMITS = (
    "On the PostgreSQL broker (kombu's SQL transport) Celery's workers cannot be inspected or "
    "controlled, and they send no events: the transport has no fanout exchange, so broadcast messages "
    "(inspect, control, events) never reach them, and the workers turn remote control off. What this page "
    "shows for that broker comes from the database instead: the workers' own heartbeats in queue.workers, "
    "and the visible rows of queue.kombu_message. Messages a worker has taken are invisible rows (kombu "
    "never deletes them), and one taken by a worker whose main process was SIGKILLed is never delivered "
    "again, so the tasks in flight and the tasks lost that way cannot be shown."
)

taskmeta = sa.Table(
    "celery_taskmeta",
    sa.MetaData(schema="queue"),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.String(155)),
    sa.Column("status", sa.String(50)),
    sa.Column("date_done", sa.DateTime),
    sa.Column("traceback", sa.Text),
    sa.Column("name", sa.String(155)),
    sa.Column("args", sa.LargeBinary),
    sa.Column("kwargs", sa.LargeBinary),
    sa.Column("worker", sa.String(155)),
    sa.Column("retries", sa.Integer),
    sa.Column("queue", sa.String(155)),
    sa.Column("result", sa.LargeBinary),
)


SQL_DEPTH = sa.text(
    """
    SELECT q.name,
           (SELECT count(*) FROM (SELECT 1 FROM queue.kombu_message m
                                   WHERE m.queue_id = q.id AND m.visible
                                   LIMIT :cap) AS capped) AS visible
      FROM queue.kombu_queue q
     ORDER BY q.name
    """
)
ALL_ROWS = sa.text("SELECT count(*) FROM (SELECT 1 FROM queue.kombu_message LIMIT :cap) AS capped")
ESTIMATED_ROWS = sa.text(
    """
    SELECT greatest(c.reltuples, 0)::bigint,
           extract(epoch FROM now() - greatest(s.last_analyze, s.last_autoanalyze, s.last_vacuum,
                                               s.last_autovacuum))
      FROM pg_class c LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
     WHERE c.oid = to_regclass('queue.kombu_message')
    """
)


def _heartbeat_queues(broker: str) -> list[str]:
    """The queues Celery's workers on `broker` consume, as their heartbeats say, and the default queue."""
    with database.admin_conn("queue") as conn:
        rows = heartbeat.rows(
            database.raw(conn),
            "worker_queues_on_broker",
            {"adapter": "celery", "broker": broker, "limit": 200},
        )
    names = {celery_app.DEFAULT_QUEUE}
    for r in rows:
        names.update(r["queues"] or [])
    return sorted(names)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never analysed yet"
    minutes = int(seconds // 60)
    return f"as of {minutes} min ago" if minutes else f"as of {int(seconds)} s ago"


def sql_depth() -> dict[str, Any]:
    """Visible messages per queue, and the table's rows in all: counted exactly up to `DEPTH_CAP`, past it
    the planner's estimate, said to be one, with the age of the statistics it comes from."""
    with database.admin_conn("queue") as conn:
        rows = conn.execute(SQL_DEPTH, {"cap": DEPTH_CAP}).all()
        total = int(conn.execute(ALL_ROWS, {"cap": DEPTH_CAP}).scalar() or 0)
        estimate = conn.execute(ESTIMATED_ROWS).first() if total >= DEPTH_CAP else None
    if estimate is None:
        held = f"holds {total:,} rows in all"
    else:
        held = (
            f"holds more than {DEPTH_CAP:,} rows in all (about {int(estimate[0] or 0):,}: the planner's "
            f"estimate, {_age(estimate[1])})"
        )
    return {
        "broker": "postgres",
        "ok": True,
        "queues": [{"name": name, "messages": int(n), "capped": int(n) >= DEPTH_CAP} for name, n in rows],
        "rows": total,
        "rows_exact": estimate is None,
        "note": (
            f"queue.kombu_message {held}: kombu never deletes consumed messages, it marks them invisible."
        ),
    }


def redis_depth(url: str, queues: list[str], timeout: float) -> dict[str, Any]:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        with client.pipeline(transaction=False) as pipe:
            for q in queues:
                pipe.llen(q)
            lengths = pipe.execute()
        client.close()
    except redis.RedisError as exc:
        return {
            "broker": "redis",
            "ok": False,
            "error": f"Redis at {settings.redact(url)}: {exc}",
            "queues": [],
        }
    return {
        "broker": "redis",
        "ok": True,
        "queues": [
            {"name": q, "messages": int(n), "capped": False} for q, n in zip(queues, lengths, strict=True)
        ],
        "note": "LLEN of each queue's list; messages a worker has reserved (unacked) are not in the list.",
    }


def rabbitmq_depth(url: str, queues: list[str], timeout: float) -> dict[str, Any]:
    import kombu

    out = []
    try:
        with kombu.Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
            for q in queues:
                channel = conn.channel()
                try:
                    _, messages, consumers = channel.queue_declare(queue=q, passive=True)
                    out.append(
                        {"name": q, "messages": int(messages), "consumers": int(consumers), "capped": False}
                    )
                except Exception:  # noqa: BLE001 - NOT_FOUND closes the channel; the queue is not declared
                    out.append({"name": q, "messages": None, "capped": False, "missing": True})
                finally:
                    try:
                        channel.close()
                    except Exception:  # noqa: BLE001,S110
                        pass
    except Exception as exc:  # noqa: BLE001 - any connection failure is shown, not raised
        return {
            "broker": "rabbitmq",
            "ok": False,
            "error": f"RabbitMQ at {settings.redact(url)}: {exc}",
            "queues": [],
        }
    return {
        "broker": "rabbitmq",
        "ok": True,
        "queues": out,
        "note": "Ready messages from a passive queue_declare; unacknowledged ones are not counted.",
    }


def depths() -> list[dict[str, Any]]:
    s = current_app.config["SETTINGS"]
    timeout = float(current_app.config["BROKER_PROBE_TIMEOUT"])

    def compute() -> list[dict[str, Any]]:
        return [
            sql_depth(),
            redis_depth(s.redis_url, _heartbeat_queues("redis"), timeout),
            rabbitmq_depth(s.rabbitmq_url, _heartbeat_queues("rabbitmq"), timeout),
        ]

    value, _ = cache.cached("celery.depths", current_app.config["COUNT_CACHE_SECONDS"], compute)
    return value


_apps: dict[str, Any] = {}


def inspect_workers(broker: str, s: settings.Settings, timeout: float) -> dict[str, Any]:
    """Workers answering `inspect().stats()` on a broker that supports broadcast (Redis, RabbitMQ)."""
    try:
        app = _apps.get(broker)
        if app is None:
            app = _apps[broker] = celery_app.make_app(broker, s=s)
            app.conf.broker_connection_timeout = timeout
            app.conf.broker_connection_max_retries = 0
        stats = app.control.inspect(timeout=timeout).stats() or {}
    except Exception as exc:  # noqa: BLE001 - a broker that is down is shown as such
        return {
            "broker": broker,
            "ok": False,
            "error": str(exc).splitlines()[0] if str(exc) else repr(exc),
            "workers": [],
        }
    workers = []
    for name, st in sorted(stats.items()):
        pool = st.get("pool") or {}
        workers.append(
            {
                "name": name,
                "pid": st.get("pid"),
                "pool": pool.get("implementation"),
                "concurrency": pool.get("max-concurrency"),
                "total": serializers.plain(st.get("total") or {}),
                "uptime": st.get("uptime"),
            }
        )
    return {"broker": broker, "ok": True, "workers": workers}


class InspectRefresher:
    """Asks the brokers' workers (`inspect().stats()`) in a background thread, so no request waits for
    them: a broker whose workers do not answer costs its whole timeout, every time. Requests read the
    last answer and its age; the thread starts on the first read of each process (gunicorn's workers are
    forked, and a thread does not survive the fork) and asks again every `interval` seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._answer: list[dict[str, Any]] | None = None
        self._at = 0.0

    def read(
        self, s: settings.Settings, timeout: float, interval: float
    ) -> tuple[list[dict[str, Any]] | None, float]:
        """(the last answer or None before the first one, its age in seconds)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._answer = None
                self._thread = threading.Thread(
                    target=self._run, args=(s, timeout, interval), name="celery-inspect", daemon=True
                )
                self._thread.start()
            return self._answer, time.monotonic() - self._at

    def _run(self, s: settings.Settings, timeout: float, interval: float) -> None:
        while True:
            answer = [inspect_workers("redis", s, timeout), inspect_workers("rabbitmq", s, timeout)]
            with self._lock:
                self._answer, self._at = answer, time.monotonic()
            time.sleep(interval)  # a daemon thread's pace between two probes, not a wait on a condition


refresher = InspectRefresher()


def inspected(ours: set[str]) -> dict[str, Any]:
    """The background refresher's last answer, with its age; only the workers of this project (their
    Celery name is `<worker id>@<host>`, the worker id being the one in `queue.workers`)."""
    cfg = current_app.config
    answer, age = refresher.read(
        cfg["SETTINGS"], float(cfg["BROKER_PROBE_TIMEOUT"]), float(cfg["CELERY_PROBE_INTERVAL"])
    )
    if answer is None:
        return {"age_seconds": None, "brokers": []}
    brokers = []
    for b in answer:
        mine = [w for w in b["workers"] if str(w["name"]).split("@", 1)[0] in ours]
        brokers.append({**b, "workers": mine, "others": len(b["workers"]) - len(mine)})
    return {"age_seconds": round(age, 1), "brokers": brokers}


def heartbeat_workers(limit: int = 200) -> list[dict[str, Any]]:
    """Celery's workers from their heartbeats (`workers_of_adapter` in shared/sql/heartbeat.sql), running
    ones first; `alive`: not stopped, and beat within `heartbeat.HEALTH_MAX_AGE`."""
    with database.admin_conn("queue") as conn:
        rows = heartbeat.rows(
            database.raw(conn),
            "workers_of_adapter",
            {"adapter": "celery", "within": heartbeat.HEALTH_MAX_AGE, "limit": limit},
        )
    out = []
    for r in rows:
        w = serializers.worker(r)
        w["alive"] = bool(r["fresh"]) and r["stopped_at"] is None
        w["broker"] = (r["info"] or {}).get("broker")
        out.append(w)
    return out


def list_tasks(
    *, status: str | None, name: str | None, search: str | None, after: int | None, limit: int
) -> list[dict[str, Any]]:
    """Rows of the result table, newest first, keyset by id (the result backend is off unless a run asks)."""
    T = taskmeta
    q = (
        sa.select(
            T.c.id,
            T.c.task_id,
            T.c.status,
            T.c.name,
            T.c.date_done,
            T.c.worker,
            T.c.retries,
            T.c.queue,
            T.c.traceback,
        )
        .order_by(T.c.id.desc())
        .limit(limit)
    )
    if after is not None:  # within int4, Celery's key (web/inputs.py bounds it)
        q = q.where(T.c.id < after)
    if status is not None:
        q = q.where(T.c.status == status)
    if name is not None:
        q = q.where(T.c.name.startswith(name, autoescape=True))
    if search is not None:
        q = q.where(T.c.task_id == search)
    with database.admin_conn("queue") as conn:
        return [serializers.celery_task(r) for r in conn.execute(q)]


def overview() -> dict[str, Any]:
    heartbeats = heartbeat_workers()
    return {
        "depths": depths(),
        "inspect": inspected({w["id"] for w in heartbeats}),
        "heartbeats": heartbeats,
        "sql_broker_limits": SQL_BROKER_LIMITS,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
    }
