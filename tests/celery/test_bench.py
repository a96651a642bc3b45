"""`make bench-celery` in small: its figures exist and are sane (a benchmark is not a timed test)."""

from __future__ import annotations

import logging
import re
import uuid

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from shared.bench import cli
from shared.bench.databases import scratch_database

from .conftest import WORKER_ENV

pytestmark = pytest.mark.slow


def test_a_small_queue_bench_prints_each_figure_beside_the_raw_ceiling(database_url, capsys, monkeypatch):
    for key, value in WORKER_ENV.items():
        monkeypatch.setenv(key, value)
    # In process: the same `main` as `make bench-celery`, on the test's database (DATABASE_URL is set).
    args = ["queue", "--adapter", "celery", "--jobs", "40", "--one-by-one-jobs", "10", "--repeat", "1"]
    args += ["--latency-seconds", "1", "--rate", "20", "--skip-large", "--no-progress"]
    args += [
        "--brokers",
        "postgres",
        "--configs",
        "reliable",
        "--pools",
        "threads:2",
        "--polling-interval",
        "0.1",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "celery.postgres.reliable.threads (celery --pool threads --concurrency 2 (2 slots))" in out, out
    row = re.search(r"^\| drain of 40 noop jobs, jobs/s \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) \|", out, re.M)
    assert row, out
    drained, ceiling = (int(x.replace(",", "")) for x in row.groups()[:2])
    assert 0 < drained and 0 < ceiling
    assert float(row.group(3)) == pytest.approx(drained / ceiling, abs=0.01)
    assert re.search(r"^\| one-by-one enqueue, jobs/s \| [\d,]+ \| [\d,]+ \|", out, re.M), out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--jobs", "0"], "--jobs"),
        (["--brokers", "kafka"], "kafka"),
        (["--pools", "prefork"], "pool:concurrency"),
        (["--configs", "fast"], "fast"),
    ],
)
def test_bad_queue_bench_options_give_one_clear_line(args, says, capsys):
    assert cli.main(["queue", "--adapter", "celery", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err


def test_each_sql_broker_group_gets_a_migrated_database_that_is_dropped_after(pg_server):
    with scratch_database(pg_server) as fresh:
        assert fresh is not None and fresh != pg_server
        with psycopg.connect(fresh) as conn:
            assert conn.execute("SELECT count(*) FROM queue.kombu_message").fetchone() == (0,)
    name = fresh.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(pg_server) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)


def test_a_role_that_may_not_create_databases_runs_on_its_own(pg_server, caplog):
    role = f"bench_nocreate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
    try:
        url = make_url(pg_server).set(username=role).render_as_string(hide_password=False)
        with caplog.at_level(logging.WARNING), scratch_database(url) as fresh:
            assert fresh is None
        assert "may not create databases" in caplog.text
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
