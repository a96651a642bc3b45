"""The client API on a real PostgreSQL: enqueue in the caller's transaction, validation, admin actions."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from psycopg import ClientCursor
from psycopg.types.json import Jsonb

from shared import db, pgqueue
from shared.pgqueue import queries

from ..support import plan_nodes


@pytest.fixture
def conn(database_url):
    with db.connect(database_url, autocommit=True) as c:
        yield c


def state_of(conn, job_id):
    return conn.execute("SELECT state::text FROM queue.pgqueue_jobs WHERE id = %s", (job_id,)).fetchone()[0]


def test_enqueue_in_a_rolled_back_transaction_leaves_no_job(database_url, conn):
    engine = db.make_engine(database_url)
    with engine.connect() as sa_conn:
        job_id = pgqueue.enqueue(sa_conn, "noop", {}, meta={"run_id": 1, "seq": 1})
        assert job_id is not None
        sa_conn.rollback()
    with db.connect(database_url) as psy:
        pgqueue.enqueue(psy, "noop")
        psy.rollback()
    assert conn.execute("SELECT count(*) FROM queue.pgqueue_jobs").fetchone()[0] == 0
    with engine.begin() as sa_conn:
        kept = pgqueue.enqueue(sa_conn, "noop", {}, meta={"run_id": 1, "seq": 2})
        sa_conn.execute(sa.text("SELECT 1"))
    engine.dispose()
    row = conn.execute("SELECT state::text, meta FROM queue.pgqueue_jobs").fetchall()
    assert row == [("available", {"run_id": 1, "seq": 2})]
    assert state_of(conn, kept) == "available"


def test_enqueue_sqlalchemy_connection_commit_without_prior_statement(database_url, conn):
    engine = db.make_engine(database_url)
    with engine.connect() as sa_conn:
        pgqueue.enqueue(sa_conn, "noop")
        sa_conn.commit()
    engine.dispose()
    assert conn.execute("SELECT count(*) FROM queue.pgqueue_jobs").fetchone()[0] == 1


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"task": "no_such_task"}, "unknown task 'no_such_task'"),
        ({"task": "noop", "params": {"x": {1, 2}}}, "cannot be encoded as JSON"),
        ({"task": "noop", "params": {"x": float("nan")}}, "cannot be encoded as JSON"),
        ({"task": "noop", "priority": 10}, "priority must be an integer from 0"),
        ({"task": "noop", "priority": -1}, "priority must be an integer from 0"),
        ({"task": "noop", "queue": ""}, "invalid queue name ''"),
        ({"task": "noop", "queue": "q" * 65}, "invalid queue name"),
        ({"task": "noop", "queue": "Upper"}, "invalid queue name 'Upper'"),
        ({"task": "noop", "max_attempts": 0}, "max_attempts must be"),
        ({"task": "noop", "run_at": dt.datetime(2030, 1, 1)}, "timezone-aware"),
        ({"task": "noop", "timeout": -1}, "timeout must be"),
    ],
)
def test_bad_input_is_a_clear_error_at_enqueue_time(conn, kwargs, fragment):
    task = kwargs.pop("task")
    with pytest.raises(pgqueue.InvalidJob, match=fragment.replace("(", r"\(")):
        pgqueue.enqueue(conn, task, **kwargs)
    with pytest.raises(pgqueue.InvalidJob, match=fragment.replace("(", r"\(")):
        pgqueue.enqueue_many(conn, [pgqueue.JobSpec(task, **kwargs)])
    assert conn.execute("SELECT count(*) FROM queue.pgqueue_jobs").fetchone()[0] == 0


def test_enqueue_many_copies_with_one_notify_per_queue(database_url, conn):
    listener = db.connect(database_url, autocommit=True)
    listener.execute("LISTEN pgqueue")
    shared_params = {"ms": 1}
    jobs = [
        pgqueue.JobSpec("sleep", shared_params, queue="q1", meta={"run_id": 3, "seq": i}) for i in range(500)
    ]
    jobs += [
        pgqueue.JobSpec("noop", {"s": "tab\there \\ back"}, queue="q2", priority=3, meta={"n": "a\\b\n"})
        for _ in range(10)
    ]
    jobs += [pgqueue.JobSpec("noop", queue="q2", run_at=dt.timedelta(hours=1)) for _ in range(5)]
    jobs += [pgqueue.JobSpec("noop", queue="q3", unique_key=f"k{i % 3}") for i in range(6)]
    assert pgqueue.enqueue_many(conn, jobs) == 500 + 10 + 5 + 3
    notes = [n.payload for n in listener.notifies(timeout=0.5)]
    listener.close()
    assert sorted(notes) == ["q1", "q2", "q3"]
    rows = dict(conn.execute("SELECT state::text, count(*) FROM queue.pgqueue_jobs GROUP BY 1").fetchall())
    assert rows == {"available": 513, "scheduled": 5}
    assert conn.execute("SELECT meta FROM queue.pgqueue_jobs WHERE priority = 3 LIMIT 1").fetchone()[0] == {
        "n": "a\\b\n"
    }
    assert conn.execute("SELECT params FROM queue.pgqueue_jobs WHERE priority = 3 LIMIT 1").fetchone()[0] == {
        "s": "tab\there \\ back"
    }
    seqs = conn.execute(
        "SELECT (meta->>'seq')::int FROM queue.pgqueue_jobs WHERE queue = 'q1' ORDER BY 1"
    ).fetchall()
    assert [s for (s,) in seqs] == list(range(500))


def test_unique_key_deduplicates_while_active_and_frees_after(conn):
    first = pgqueue.enqueue(conn, "noop", unique_key="report:1")
    assert first is not None
    assert pgqueue.enqueue(conn, "noop", unique_key="report:1") is None
    assert pgqueue.enqueue_many(conn, [pgqueue.JobSpec("noop", unique_key="report:1")]) == 0
    assert pgqueue.cancel(conn, [first]) == 1
    second = pgqueue.enqueue(conn, "noop", unique_key="report:1")
    assert second is not None and second != first
    # retrying the cancelled one while the second is active changes nothing
    assert pgqueue.retry(conn, [first]) == 0


def test_delayed_job_is_scheduled(conn):
    job = pgqueue.enqueue(conn, "noop", run_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    assert state_of(conn, job) == "scheduled"
    past = pgqueue.enqueue(conn, "noop", run_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    assert state_of(conn, past) == "available"
    assert pgqueue.run_now(conn, [job]) == 1
    assert state_of(conn, job) == "available"


def test_actions_counts_listing_and_pause(conn):
    ids = [pgqueue.enqueue(conn, "noop", queue="mail", meta={"seq": i}) for i in range(5)]
    other = pgqueue.enqueue(conn, "sleep", {"ms": 1}, queue="reports")
    assert pgqueue.cancel(conn, ids[:2]) == 2
    assert pgqueue.discard(conn, [ids[2]]) == 1
    assert pgqueue.cancel(conn, ids[:2]) == 0  # already finished
    assert pgqueue.retry(conn, [ids[0]]) == 1
    assert state_of(conn, ids[0]) == "available"
    job = pgqueue.get_job(conn, ids[2])
    assert job["state"] == "discarded" and job["errors"][0]["class"] == "Discarded"
    assert pgqueue.get_job(conn, 10**12) is None

    pgqueue.refresh_counts(conn)
    c = pgqueue.counts(conn)
    assert c["mail"]["available"] == 3 and c["mail"]["cancelled"] == 1 and c["mail"]["discarded"] == 1
    assert c["reports"]["available"] == 1 and c["reports"]["completed"] == 0
    info = pgqueue.counts_info(conn)
    assert info["age"] is not None and info["duration_ms"] >= 0

    page1 = pgqueue.list_jobs(conn, queue="mail", limit=2)
    page2 = pgqueue.list_jobs(conn, queue="mail", limit=2, after=page1[-1]["id"])
    assert [j["id"] for j in page1 + page2] == sorted(ids, reverse=True)[:4]
    assert [j["id"] for j in pgqueue.list_jobs(conn, state="discarded")] == [ids[2]]
    assert [j["id"] for j in pgqueue.list_jobs(conn, search=str(other))] == [other]
    assert [j["id"] for j in pgqueue.list_jobs(conn, search="sle")] == [other]
    assert pgqueue.list_jobs(conn, search="no_%") == []
    assert pgqueue.count_matching(conn, queue="mail", state="available") == 3
    assert pgqueue.bulk_action(conn, "cancel", queue="mail", state="available") == 3
    assert pgqueue.count_matching(conn, queue="mail", state="available") == 0
    with pytest.raises(pgqueue.InvalidJob, match="unknown job state 'bogus'"):
        pgqueue.list_jobs(conn, state="bogus")
    with pytest.raises(pgqueue.InvalidJob, match="unknown action"):
        pgqueue.bulk_action(conn, "explode")

    pgqueue.pause_queue(conn, "reports")
    qs = {q["name"]: q for q in pgqueue.queues(conn)}
    assert qs["reports"]["paused"] and not qs["mail"]["paused"]
    pgqueue.resume_queue(conn, "reports")
    assert not {q["name"]: q for q in pgqueue.queues(conn)}["reports"]["paused"]


def test_counts_refresh_when_stale_and_not_per_call(conn):
    pgqueue.enqueue(conn, "noop")
    assert pgqueue.counts(conn)["default"]["available"] == 1  # no cache yet: refreshed once
    pgqueue.enqueue(conn, "noop")
    assert pgqueue.counts(conn)["default"]["available"] == 1  # cached: not a count per call
    assert pgqueue.counts(conn, max_age=0)["default"]["available"] == 2


def test_cron_entries(conn):
    pgqueue.register_cron(conn, "tick", "*/2 * * * * *", "noop", {}, queue="cron")
    pgqueue.register_cron(conn, "every", "@every 10s", "noop")
    entries = {e["name"]: e for e in pgqueue.cron_entries(conn)}
    assert set(entries) == {"tick", "every"}
    assert entries["tick"]["next_tick"] > entries["tick"]["last_tick"]
    with pytest.raises(pgqueue.InvalidJob, match="invalid cron schedule"):
        pgqueue.register_cron(conn, "bad", "every day", "noop")
    with pytest.raises(pgqueue.InvalidJob, match="unknown task"):
        pgqueue.register_cron(conn, "bad", "@every 1s", "nope")
    s = pgqueue.Schedule.parse("@every 5s")
    t0 = dt.datetime(2026, 1, 1, 0, 0, 3, tzinfo=dt.UTC)
    assert s.ticks_between(t0, t0 + dt.timedelta(seconds=12)) == [
        dt.datetime(2026, 1, 1, 0, 0, 5, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 1, 0, 0, 10, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 1, 0, 0, 15, tzinfo=dt.UTC),
    ]


def test_enqueue_many_from_a_generator_of_fresh_params(conn):
    # each params dict dies after its JobSpec is read: a cache keyed by id() alone would mix them up
    n = pgqueue.enqueue_many(conn, (pgqueue.JobSpec("sleep", {"ms": i}) for i in range(2000)))
    assert n == 2000
    rows = conn.execute("SELECT (params->>'ms')::int FROM queue.pgqueue_jobs ORDER BY id").fetchall()
    assert [r[0] for r in rows] == list(range(2000))


def test_enqueue_many_invalid_job_after_streamed_rows_inserts_nothing(database_url, conn):
    # 20,000 valid rows fill several COPY chunks before the bad one: the COPY has started streaming
    jobs = [pgqueue.JobSpec("noop", meta={"seq": i}) for i in range(20_000)]
    bad = [*jobs, pgqueue.JobSpec("noop", priority=10)]
    with pytest.raises(pgqueue.InvalidJob, match="priority must be"):
        pgqueue.enqueue_many(conn, bad)  # autocommit: a transaction of its own
    # inside the caller's transaction (psycopg, then SQLAlchemy): rolled back to a savepoint, usable after
    with db.connect(database_url) as psy:
        kept = pgqueue.enqueue(psy, "noop")
        with pytest.raises(pgqueue.InvalidJob):
            pgqueue.enqueue_many(psy, bad)
        assert pgqueue.enqueue_many(psy, jobs[:3]) == 3
        psy.commit()
    with db.connect(database_url) as psy:  # idle: the implicit transaction held only our rows
        with pytest.raises(pgqueue.InvalidJob):
            pgqueue.enqueue_many(psy, bad)
        assert pgqueue.enqueue_many(psy, jobs[:2]) == 2
        psy.commit()
    engine = db.make_engine(database_url)
    with engine.connect() as sa_conn:
        with pytest.raises(pgqueue.InvalidJob):
            pgqueue.enqueue_many(sa_conn, bad)
        assert pgqueue.enqueue_many(sa_conn, jobs[:1]) == 1
        sa_conn.commit()
    engine.dispose()
    assert conn.execute("SELECT count(*) FROM queue.pgqueue_jobs").fetchone()[0] == 1 + 3 + 2 + 1
    assert state_of(conn, kept) == "available"


def generic_plan(conn, name: str, args: dict, meanwhile: Callable[[], object] | None = None) -> list[dict]:
    """Prepare the named query as the worker does, run it once (its generic plan is built then and kept),
    call `meanwhile`, run it again under EXPLAIN ANALYZE, and return that plan's nodes with the rows
    they really produced. Both runs are rolled back."""
    order: list[str] = []

    def positional(m):
        if m.group(1) not in order:
            order.append(m.group(1))
        return f"${order.index(m.group(1)) + 1}"

    conn.execute("PREPARE q AS " + re.sub(r"%\((\w+)\)s", positional, queries.get(name)))
    conn.execute("SET plan_cache_mode = force_generic_plan")
    execute = f"EXECUTE q({', '.join(f'%({k})s' for k in order)})"
    with conn.transaction(force_rollback=True):
        ClientCursor(conn).execute(execute, args)
    if meanwhile is not None:
        meanwhile()
    with conn.transaction(force_rollback=True):
        (plan,) = ClientCursor(conn).execute("EXPLAIN (ANALYZE, FORMAT JSON) " + execute, args).fetchone()[0]
    conn.execute("DEALLOCATE q")
    return plan_nodes(plan["Plan"])


@pytest.fixture
def hot_conn(database_url):
    """A connection with the worker's hot-path planner settings."""
    with db.connect(database_url, autocommit=True, options=queries.HOT_PATH_OPTIONS) as c:
        yield c


@pytest.mark.parametrize("name", ["complete", "fail"])
def test_completion_plans_one_key_lookup_per_id_whatever_the_statistics(conn, hot_conn, name):
    # The statistics a queue has after it sat empty: a vacuum saw no live row in pages it kept, so the
    # planner takes the table for empty while a burst fills it. The worker's statements are prepared
    # and run by a generic plan; with the statistics of an empty table, a join to the batch was
    # planned as a whole-table scan nested with the batch (0.2-0.8 s per batch of 500 at 100,000 rows).
    conn.execute("ALTER TABLE queue.pgqueue_jobs SET (autovacuum_enabled = false)")
    conn.execute("INSERT INTO queue.pgqueue_jobs (task) SELECT 'noop' FROM generate_series(1, 2000)")
    conn.execute("DELETE FROM queue.pgqueue_jobs")
    conn.execute("VACUUM (TRUNCATE false, ANALYZE) queue.pgqueue_jobs")
    conn.execute(
        "INSERT INTO queue.pgqueue_jobs (task, state, attempt, attempted_at, worker_id) "
        "SELECT 'noop', 'running', 1, now(), 'w' FROM generate_series(1, 5000)"
    )
    ids = [r[0] for r in conn.execute("SELECT id FROM queue.pgqueue_jobs ORDER BY random() LIMIT 200")]
    n = len(ids)
    args = {
        "ids": ids,
        "keys": queries.attempt_keys(ids, [1] * n),
        "worker_id": "w",
        "entries": Jsonb(
            {str(i): {"discard": False, "delay": 1.0, "error": {"message": "boom"}} for i in ids}
        ),
    }
    # the query alone, and on the worker's connection
    for c in (conn, hot_conn):
        nodes = generic_plan(c, name, args)
        kinds = [node["Node Type"] for node in nodes]
        assert not {"Nested Loop", "Hash Join", "Merge Join", "Seq Scan"} & set(kinds), kinds
        # found by the primary key (not by ix_pgqueue_jobs_running, whose dead entries grow per job)
        indexes = {node["Index Name"]: node.get("Index Cond", "") for node in nodes if "Index Name" in node}
        assert list(indexes) == ["pgqueue_jobs_pkey"], indexes
        assert "ANY" in indexes["pgqueue_jobs_pkey"], indexes
        assert nodes[1]["Actual Rows"] == n, "every job of the batch was found and changed"


def test_claim_planned_on_a_small_table_stays_an_ordered_index_scan(conn, hot_conn):
    # A worker prepares its claim on its first claims, often while the burst is still being enqueued:
    # planned for a table of a few rows, it was a sequential scan and a sort of every available job
    # (and a hash of the whole table for the update), kept while the table grew to 100,000 rows.
    conn.execute("ALTER TABLE queue.pgqueue_jobs SET (autovacuum_enabled = false)")
    conn.execute(
        "INSERT INTO queue.pgqueue_jobs (task, queue) SELECT 'noop', 'q' FROM generate_series(1, 20)"
    )
    conn.execute("ANALYZE queue.pgqueue_jobs")
    nodes = generic_plan(
        hot_conn,
        "claim",
        {"queue": "q", "limit": 100, "worker_id": "w"},
        meanwhile=lambda: conn.execute(
            "INSERT INTO queue.pgqueue_jobs (task, queue) SELECT 'noop', 'q' FROM generate_series(1, 5000)"
        ),
    )
    kinds = [node["Node Type"] for node in nodes]
    assert not {"Seq Scan", "Sort", "Hash Join", "Nested Loop"} & set(kinds), kinds
    indexes = {node["Index Name"]: node.get("Index Cond", "") for node in nodes if "Index Name" in node}
    assert "ix_pgqueue_jobs_claim" in indexes and "ANY" in indexes.get("pgqueue_jobs_pkey", ""), indexes
    assert nodes[0]["Actual Rows"] == 100, "claimed a full batch"


def test_queue_busy_until_nothing_is_left_to_run(conn):
    assert not pgqueue.queue_busy(conn, "drainq")
    later = pgqueue.enqueue(conn, "noop", queue="drainq", run_at=dt.timedelta(hours=1))
    assert pgqueue.queue_busy(conn, "drainq"), "a scheduled job is still to run"
    now = pgqueue.enqueue(conn, "noop", queue="drainq")
    pgqueue.enqueue(conn, "noop", queue="otherq")
    assert pgqueue.cancel(conn, [later]) == 1
    assert pgqueue.queue_busy(conn, "drainq"), "an available job is still to run"
    # a running job (as a worker's claim leaves it) keeps the queue busy
    conn.execute(
        "UPDATE queue.pgqueue_jobs SET state = 'running', attempt = 1, attempted_at = now(), worker_id = 'w' "
        "WHERE id = %s",
        (now,),
    )
    assert pgqueue.queue_busy(conn, "drainq")
    conn.execute(
        "UPDATE queue.pgqueue_jobs SET state = 'completed', finished_at = now() WHERE id = %s", (now,)
    )
    assert not pgqueue.queue_busy(conn, "drainq"), "only finished jobs are left; otherq is not drainq"
    assert pgqueue.queue_busy(conn, "otherq")


def test_delete_finished_takes_only_the_finished_jobs_of_one_queue(conn):
    done, dropped, gone = (pgqueue.enqueue(conn, "noop", queue="cleanq") for _ in range(3))
    waiting = pgqueue.enqueue(conn, "noop", queue="cleanq")
    later = pgqueue.enqueue(conn, "noop", queue="cleanq", run_at=dt.timedelta(hours=1))
    other = pgqueue.enqueue(conn, "noop", queue="otherq")
    conn.execute(
        "UPDATE queue.pgqueue_jobs SET state = 'completed', attempt = 1, attempted_at = now(), finished_at = now() "
        "WHERE id = ANY(%s)",
        ([done, other],),
    )
    assert pgqueue.discard(conn, [dropped]) == 1
    assert pgqueue.cancel(conn, [gone]) == 1
    assert pgqueue.delete_finished(conn, "cleanq") == 3
    left = {
        r[0]
        for r in conn.execute(
            "SELECT id FROM queue.pgqueue_jobs WHERE id = ANY(%s)",
            ([done, dropped, gone, waiting, later, other],),
        )
    }
    assert left == {waiting, later, other}, "available and scheduled jobs stay; another queue is not touched"
    with pytest.raises(pgqueue.InvalidJob):
        pgqueue.delete_finished(conn, "Not A Queue!")


def test_a_batch_holding_a_job_twice_completes_its_current_attempt(database_url, conn):
    # A timed-out attempt can finish late, in the same flush as the job's next attempt on this worker.
    from pgqueue_worker.completer import Completer

    done, failed = pgqueue.enqueue(conn, "noop"), pgqueue.enqueue(conn, "noop")
    conn.execute(
        "UPDATE queue.pgqueue_jobs SET state = 'running', attempt = 2, attempted_at = now(), worker_id = 'w'"
    )
    completer = Completer(database_url, "w", flush_interval=60.0, bound=100, retry_base=1.0)
    completer.complete(done, 1)  # the stale attempt first: the statements look an id up by its first position
    completer.complete(done, 2)
    completer.fail(failed, 1, {"message": "timed out"})
    completer.fail(failed, 2, {"message": "boom"})
    assert completer.flush()
    assert state_of(conn, done) == "completed"
    assert state_of(conn, failed) == "retryable"
    errors = conn.execute("SELECT errors FROM queue.pgqueue_jobs WHERE id = %s", (failed,)).fetchone()[0]
    assert [e["message"] for e in errors] == ["boom"], errors


def finish(conn, ids, state="completed"):
    """Put jobs where a worker's run leaves them: finished after one attempt."""
    conn.execute(
        "UPDATE queue.pgqueue_jobs SET state = %s::queue.pgqueue_job_state, attempt = 1, attempted_at = now(), "
        "finished_at = now(), worker_id = 'w' WHERE id = ANY(%s)",
        (state, list(ids)),
    )


def test_retry_of_finished_jobs_sharing_a_unique_key_retries_one_and_leaves_the_other(conn):
    # Issue 17, defect 4: the NOT EXISTS of the retry cannot see the rows its own statement updates,
    # so two finished jobs of one key were both made active and the unique index failed the whole retry.
    older = pgqueue.enqueue(conn, "noop", unique_key="report:7")
    finish(conn, [older])
    newer = pgqueue.enqueue(conn, "noop", unique_key="report:7")
    plain = pgqueue.enqueue(conn, "noop")
    finish(conn, [newer, plain])
    assert pgqueue.count_matching(conn, state="completed") == 3
    assert pgqueue.bulk_action(conn, "retry", state="completed") == 2
    assert (state_of(conn, older), state_of(conn, newer), state_of(conn, plain)) == (
        "completed",
        "available",
        "available",
    ), "the newest job of the key runs again; the other one is left alone"
    finish(conn, [newer, plain], state="cancelled")
    assert pgqueue.retry(conn, [older, newer]) == 1
    assert sorted([state_of(conn, older), state_of(conn, newer)]) == ["available", "completed"]
    # a key an active job holds is still left alone
    assert pgqueue.retry(conn, [older, newer]) == 0


@pytest.mark.parametrize(
    "text", ["a NUL \x00 byte", "a lone \udc80 low surrogate", "a lone \ud83d high surrogate"]
)
def test_a_character_postgresql_cannot_store_is_an_invalid_job_not_a_database_error(conn, text):
    # Issue 17, suspected: a NUL in params reached jsonb and came back as a raw DataError, which also
    # aborted the caller's transaction.
    for kwargs in ({"params": {"message": text}}, {"params": {text: 1}}, {"meta": {"note": [text]}}):
        for key in (None, "k"):
            with pytest.raises(pgqueue.InvalidJob, match="PostgreSQL cannot store"):
                pgqueue.enqueue(conn, "always_fail", unique_key=key, **kwargs)
            with pytest.raises(pgqueue.InvalidJob, match="PostgreSQL cannot store"):
                pgqueue.enqueue_many(conn, [pgqueue.JobSpec("always_fail", unique_key=key, **kwargs)])
    with pytest.raises(pgqueue.InvalidJob, match="PostgreSQL cannot store"):
        pgqueue.register_cron(conn, "nul", "@every 1s", "always_fail", {"message": text})
    with conn.transaction():
        pgqueue.enqueue(conn, "noop")
        with pytest.raises(pgqueue.InvalidJob):
            pgqueue.enqueue(conn, "always_fail", {"message": text})
        pgqueue.enqueue(conn, "noop")  # the caller's transaction is still usable
    # what jsonb does take: a surrogate pair (an astral character), an escaped backslash before u0000
    fine = {"message": "\ud83d\ude00 😀 \\u0000 \\\\ud83d"}
    pgqueue.enqueue(conn, "always_fail", fine, meta={"note": "\\\x01"})
    pgqueue.enqueue_many(conn, [pgqueue.JobSpec("always_fail", fine, meta={"note": "\\\x01"})])
    assert conn.execute("SELECT count(*) FROM queue.pgqueue_jobs").fetchone()[0] == 4
    stored = conn.execute("SELECT params->>'message' FROM queue.pgqueue_jobs WHERE task = 'always_fail'")
    assert {r[0] for r in stored} == {"😀 😀 \\u0000 \\\\ud83d"}


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4 *", "never fires"),
        ("* 0 0 31 2 *", "never fires"),
        ("@every 100000000h", "at most"),
        ("@every 9000h", "at most"),
    ],
)
def test_register_cron_refuses_a_schedule_that_never_fires_or_an_absurd_interval(conn, schedule, fragment):
    # Issue 17, defect 1: croniter's is_valid passes 31 February, and an interval had no upper bound;
    # the leader then failed on the entry's next tick.
    with pytest.raises(pgqueue.InvalidJob, match=fragment):
        pgqueue.register_cron(conn, "bad", schedule, "noop")
    assert pgqueue.cron_entries(conn) == []
    pgqueue.register_cron(conn, "leap-day", "0 0 29 2 *", "noop")  # rare, but it fires
    pgqueue.register_cron(conn, "yearly", "@every 8760h", "noop")
    assert {e["name"] for e in pgqueue.cron_entries(conn)} == {"leap-day", "yearly"}


def test_cron_entries_never_raise_on_a_bad_row_and_show_its_error(conn):
    # Issue 17, defect 1: an entry written before the schedule checks (or by hand) made the listing raise.
    pgqueue.register_cron(conn, "good", "@every 10s", "noop")
    for name, schedule in (("feb-31", "0 0 31 2 *"), ("huge", "@every 100000000h"), ("garbage", "soon")):
        conn.execute(
            "INSERT INTO queue.pgqueue_cron (name, schedule, task) VALUES (%s, %s, 'noop')", (name, schedule)
        )
    entries = {e["name"]: e for e in pgqueue.cron_entries(conn)}
    assert entries["good"]["next_tick"] is not None and entries["good"]["error"] is None
    for name in ("feb-31", "huge", "garbage"):
        assert entries[name]["next_tick"] is None, entries[name]
        assert entries[name]["error"], entries[name]
    assert "never fires" in entries["feb-31"]["error"]
    assert "invalid cron schedule" in entries["garbage"]["error"]


def test_cleaner_finds_old_jobs_by_an_index_range_not_by_reading_every_finished_job(conn):
    # Issue 17, suspected: the retention chosen by a CASE on the row's state made the finished_at
    # comparison a filter, so the cleaner read every finished job's index entry on each run.
    conn.execute(
        "INSERT INTO queue.pgqueue_jobs (task, state, attempt, attempted_at, finished_at) "
        "SELECT 'noop', 'completed', 1, now(), now() FROM generate_series(1, 20000)"
    )
    conn.execute(
        "INSERT INTO queue.pgqueue_jobs (task, state, attempt, attempted_at, finished_at) "
        "SELECT 'noop', s::queue.pgqueue_job_state, 1, now(), now() - interval '30 days' "
        "FROM unnest(ARRAY['completed', 'discarded', 'cancelled']) AS s, generate_series(1, 10)"
    )
    conn.execute("ANALYZE queue.pgqueue_jobs")
    args = {
        "completed_retention": 86400.0,
        "discarded_retention": 7 * 86400.0,
        "cancelled_retention": 7 * 86400.0,
        "limit": 10000,
    }
    nodes = generic_plan(conn, "clean", args)
    kinds = {(n["Node Type"], n.get("Index Name")) for n in nodes}
    assert not {k for k in kinds if k[0] in ("Seq Scan", "Bitmap Heap Scan")}, kinds
    finished = [n for n in nodes if n.get("Index Name") == "ix_pgqueue_jobs_finished"]
    assert finished and all("finished_at <" in n.get("Index Cond", "") for n in finished), finished
    assert sum(n.get("Rows Removed by Filter", 0) for n in nodes) < 100, "the recent jobs were not read"
    deleted = conn.execute(queries.get("clean"), args).rowcount
    assert deleted == 30, "the old jobs of each state, none of the recent ones"
