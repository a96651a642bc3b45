"""`make bench-celery` in small: its figures exist and are sane (a benchmark is not a timed test)."""

from __future__ import annotations

import re

import pytest

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
