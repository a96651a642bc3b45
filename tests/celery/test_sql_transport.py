"""Findings about kombu's SQLAlchemy transport (docs/architecture.md, "Settings and the database"), measured on a real PostgreSQL.

- A fetch takes one message with `SELECT ... LIMIT 1 FOR UPDATE`, without `SKIP LOCKED`: a consumer waits
  behind another's row lock instead of taking the next message.
- It has no fanout: a message published to a fanout exchange reaches no queue (so Celery's `inspect`,
  `control` and events, which broadcast, cannot work on it).
- An acknowledged message's row stays in `queue.kombu_message` (marked invisible), never deleted.
- Its tables are found through `search_path=queue`, and nothing is created in `public`.

(A message taken by a worker whose main process is SIGKILLed is never redelivered: test_reliability.)
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from kombu import Exchange, Queue

from shared import celery_app, db, settings

from ..support import wait_until
from .conftest import unique


@pytest.fixture
def broker(database_url):
    app = celery_app.make_app("postgres", s=settings.load())
    conn = app.connection_for_write()
    conn.connect()
    yield app, conn
    conn.release()


def queue_rows(database_url: str, queue: str) -> list[tuple[int, bool]]:
    with db.connect(database_url) as conn:
        return conn.execute(
            "SELECT m.id, m.visible FROM queue.kombu_message m JOIN queue.kombu_queue q ON q.id = m.queue_id "
            "WHERE q.name = %s ORDER BY m.id",
            (queue,),
        ).fetchall()


def test_a_fetch_locks_one_row_without_skip_locked_and_waits_behind_a_lock(broker, database_url):
    app, conn = broker
    name = unique("sql-fetch")
    statements: list[str] = []
    engine, _ = conn.default_channel._open()
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    simple = conn.SimpleQueue(name)
    for i in range(3):
        simple.put({"n": i})
    rows = queue_rows(database_url, name)
    assert [visible for _, visible in rows] == [True, True, True]

    first = simple.get(timeout=5)
    assert first.payload == {"n": 0}
    fetches = [s for s in statements if "FROM kombu_message" in s and "FOR UPDATE" in s]
    assert fetches, statements
    assert all("LIMIT" in s and "SKIP LOCKED" not in s for s in fetches), fetches
    # One message per fetch: the other two are still visible.
    assert [visible for _, visible in queue_rows(database_url, name)] == [False, True, True]

    # Another session locks the oldest visible row; a second consumer waits for it instead of skipping it.
    with db.connect(database_url) as locker:
        locker.execute("SELECT id FROM queue.kombu_message WHERE id = %s FOR UPDATE", (rows[1][0],))
        got: list[object] = []
        other = app.connection_for_write()
        thread = threading.Thread(target=lambda: got.append(other.SimpleQueue(name).get(timeout=30).payload))
        thread.start()

        def waiting_on_a_lock() -> bool:
            with db.connect(database_url) as c:
                return bool(
                    c.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND application_name = 'bench-celery-broker' AND wait_event_type = 'Lock'"
                    ).fetchone()[0]
                )

        wait_until(waiting_on_a_lock, 20, message="the second consumer waiting on the row lock")
        assert got == []
        locker.rollback()
    thread.join(30)
    other.release()
    assert got == [{"n": 1}]  # it took the row it waited for, not the unlocked third one


def test_acknowledged_messages_are_never_deleted(broker, database_url):
    _, conn = broker
    name = unique("sql-ack")
    simple = conn.SimpleQueue(name)
    for i in range(3):
        simple.put({"n": i})
    for _ in range(3):
        simple.get(timeout=5).ack()
    assert simple.qsize() == 0
    assert [visible for _, visible in queue_rows(database_url, name)] == [False, False, False]


def test_there_is_no_fanout(broker, database_url):
    _, conn = broker
    name = unique("sql-fanout")
    exchange = Exchange(name, type="fanout")
    bound = Queue(name, exchange=exchange, routing_key=name)
    channel = conn.channel()
    bound(channel).declare()
    conn.Producer(channel).publish({"broadcast": True}, exchange=exchange, routing_key=name, declare=[bound])
    # Delivery is synchronous in kombu's virtual transport: nothing to wait for.
    assert queue_rows(database_url, name) == []
    # The same queue receives a direct publish: the queue works, the fanout does not.
    conn.Producer(channel).publish({"direct": True}, exchange="", routing_key=name)
    assert len(queue_rows(database_url, name)) == 1
    channel.close()


def test_the_broker_tables_live_in_the_queue_schema(broker, database_url):
    _, conn = broker
    conn.SimpleQueue(unique("sql-schema")).put({"n": 1})
    with db.connect(database_url) as c:
        found = c.execute(
            "SELECT to_regclass('queue.kombu_message') IS NOT NULL, to_regclass('public.kombu_message') IS NULL"
        ).fetchone()
    assert found == (True, True)
