"""`make bench-celery` in small: its figures exist and are sane (a benchmark is not a timed test)."""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from shared import bench_celery

from .conftest import WORKER_ENV

pytestmark = pytest.mark.slow


def test_a_small_bench_prints_a_table_of_sane_figures(database_url, capsys, monkeypatch):
    for key, value in WORKER_ENV.items():
        monkeypatch.setenv(key, value)
    # In process: the same `main` as `make bench-celery`, on the test's database (DATABASE_URL is set).
    args = ["--jobs", "40", "--repeat", "1", "--brokers", "postgres", "--configs", "reliable"]
    assert bench_celery.main([*args, "--pools", "threads:2", "--polling-interval", "0.1"]) == 0
    out = capsys.readouterr().out
    row = re.search(r"^\| postgres \| reliable \| threads \| 2 \| ([\d,]+) \| ([\d,]+) \|", out, re.M)
    assert row, out
    published, drained = (int(x.replace(",", "")) for x in row.groups())
    assert published > 0 and drained > 0
    assert "polling interval 0.1 s" in out


@pytest.mark.parametrize(
    "args", [["--jobs", "0"], ["--brokers", "kafka"], ["--pools", "prefork"], ["--configs", "fast"]]
)
def test_bad_bench_options_give_one_clear_line(args, capsys):
    assert bench_celery.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_each_sql_broker_run_gets_a_migrated_database_that_is_dropped_after(pg_server):
    with bench_celery.fresh_database(pg_server) as fresh:
        assert fresh != pg_server
        with psycopg.connect(fresh) as conn:
            assert conn.execute("SELECT count(*) FROM queue.kombu_message").fetchone() == (0,)
    name = fresh.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(pg_server) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone() == (0,)


def test_a_role_that_may_not_create_databases_runs_on_its_own(pg_server, capsys):
    role = f"bench_nocreate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
    try:
        url = make_url(pg_server).set(username=role).render_as_string(hide_password=False)
        with bench_celery.fresh_database(url) as fresh:
            assert fresh == url
        assert "may not create databases" in capsys.readouterr().err
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
