"""`make bench-celery` in small: its figures exist and are sane (a benchmark is not a timed test)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from shared import bench_celery

from ..support import ROOT, service_env

pytestmark = pytest.mark.slow


def test_a_small_bench_prints_a_table_of_sane_figures(database_url):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.bench_celery",
            "--jobs",
            "40",
            "--repeat",
            "1",
            "--brokers",
            "postgres",
        ]
        + ["--configs", "reliable", "--pools", "threads:2", "--polling-interval", "0.1"],
        env=service_env(database_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = re.search(r"^\| postgres \| reliable \| threads \| 2 \| ([\d,]+) \| ([\d,]+) \|", proc.stdout, re.M)
    assert row, proc.stdout
    published, drained = (int(x.replace(",", "")) for x in row.groups())
    assert published > 0 and drained > 0
    assert "polling interval 0.1 s" in proc.stdout


@pytest.mark.parametrize(
    "args", [["--jobs", "0"], ["--brokers", "kafka"], ["--pools", "prefork"], ["--configs", "fast"]]
)
def test_bad_bench_options_give_one_clear_line(args, capsys):
    assert bench_celery.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
