"""`make dev`, `dev-*` and `dev-stop` (scripts/dev.sh) as a newcomer meets them, on macOS as on Linux.

Every test runs make with a PATH that has no `setsid` (macOS has none) and no `overmind` (so honcho
runs the Procfile), and with a data folder of its own (BENCH_DATA_DIR), so that the PID files, the spools
and an embedded cluster never touch the checkout's `.data/`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from shared import embedded

from ..support import ROOT, VENV_BIN, Proc, service_env, wait_until
from .test_procfile import up

MISSING_ON_MACOS = {"setsid", "overmind"}


def path_without(tmp_path: Path, path: str, missing: set[str]) -> str:
    """`path` with every program but `missing`: the venv's bin folder, then one folder of links to the rest."""
    shadow = tmp_path / "bin"
    shadow.mkdir()
    for folder in path.split(os.pathsep):
        if not folder or Path(folder) == VENV_BIN or not Path(folder).is_dir():
            continue
        for program in Path(folder).iterdir():
            link = shadow / program.name
            if program.name in missing or link.exists() or link.is_symlink():
                continue
            if program.is_file() and os.access(program, os.X_OK):
                link.symlink_to(program)
    new_path = os.pathsep.join([str(VENV_BIN), str(shadow)])
    for program in missing:
        assert shutil.which(program, path=new_path) is None, program
    return new_path


def dev_env(tmp_path: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    """A service environment in a data folder of its own, on a PATH without setsid."""
    env = service_env(database_url or "", BENCH_DATA_DIR=str(tmp_path / "data"), WEB_CONCURRENCY="1", **extra)
    if database_url is None:
        del env["DATABASE_URL"]
    env["PATH"] = path_without(tmp_path, env["PATH"], MISSING_ON_MACOS)
    return env


def make(target: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", target], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(proc)
        except psutil.NoSuchProcess:
            continue
    return left


def run_dev_then_stop(env: dict[str, str], port: int, output_dir: Path) -> None:
    """`make dev` until the web answers, then `make dev-stop`: every process it started is gone."""
    data = Path(env["BENCH_DATA_DIR"])
    dev = Proc(["make", "-s", "dev"], env, output_dir / "make-dev.log")
    try:
        wait_until(lambda: up(port), 120, message="web /up under make dev")
        assert [p.name for p in data.glob("dev-*.pid")] == ["dev-honcho.pid"]
        started = psutil.Process(dev.pid).children(recursive=True)
        # honcho, then web, celery and pgqueue (each with children of its own)
        assert len(started) >= 4, [p.name() for p in started]
        stop = make("dev-stop", env)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "stopped 1 process group(s)" in stop.stdout
        wait_until(lambda: not alive(started), 60, message="no process of make dev left")
        # A stop that was asked for is not a failure.
        assert dev.popen.wait(30) == 0, dev.log()
        assert not list(data.glob("dev-*.pid"))
        assert not up(port)
    finally:
        dev.stop()


def test_make_dev_starts_without_setsid_and_dev_stop_stops_everything(database_url, output_dir, tmp_path):
    port = embedded.free_port()
    env = dev_env(tmp_path, database_url, PORT=str(port), BENCH_CELERY_CONCURRENCY="2")
    run_dev_then_stop(env, port, output_dir)


@pytest.mark.parametrize("target", ["dev", "dev-celery"])
def test_a_service_that_cannot_start_fails_make(target, database_url, tmp_path):
    # The Celery worker exits 2 when its broker does not answer; make must say so and fail.
    broker = f"redis://127.0.0.1:{embedded.free_port()}/0"
    env = dev_env(tmp_path, database_url, PORT=str(embedded.free_port()), CELERY_BROKER_URL=broker)
    proc = make(target, env)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "cannot reach the redis broker" in proc.stdout + proc.stderr
    name = "honcho" if target == "dev" else "celery"
    assert f"dev.sh: {name} exited with status 2" in proc.stderr, proc.stderr
    assert not list((tmp_path / "data").glob("dev-*.pid"))


@pytest.mark.embedded
def test_make_dev_starts_the_embedded_database_when_it_finds_none(output_dir, tmp_path):
    port = embedded.free_port()
    # No DATABASE_URL, no embedded cluster yet, nothing at LOCAL_PG_ADDR: a fresh machine.
    env = dev_env(
        tmp_path,
        None,
        PORT=str(port),
        LOCAL_PG_ADDR=f"127.0.0.1:{embedded.free_port()}",
        BENCH_CELERY_CONCURRENCY="2",
    )
    cluster = embedded.EmbeddedCluster(tmp_path / "data" / "embedded-pg")
    try:
        run_dev_then_stop(env, port, output_dir)
        assert "starting the embedded one (make db-up)" in (output_dir / "make-dev.log").read_text()
        assert cluster.running_pid(), "make dev left the embedded cluster running, as make db-up does"
        url = (tmp_path / "data" / "embedded-pg.url").read_text().strip()
        assert url == cluster.url
    finally:
        cluster.destroy()
