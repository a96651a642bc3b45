"""Each image's install step, replayed into a fresh environment, holds everything its service needs.

`conftest.replays` runs every Dockerfile's COPYs and `uv sync`s into a folder per stage (tests/deploy/
dockerctx.py). Each service then starts from its runtime stage's folder, as its container would: the
image's ENV, WORKDIR /app and CMD, found on the image's PATH, run by the image's own interpreter (the
console script's `#!` line names the builder stage's path, which a real image rewrites by copying to the
same path). Only the test's flags differ: the port, the database, the queue, a small pool.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from pathlib import Path

import psycopg

from shared import celery_app, embedded, pgqueue, settings

from ..support import ROOT, Proc, service_env, session_processes, wait_until
from .conftest import strip_venv
from .dockerctx import Dockerfile, Replayed
from .project import ROOT_DOCKERFILE, SERVICES, fly

SERVICE_MODULES = {"web": "web", "celery": "celery_worker", "pgqueue": "pgqueue_worker"}
REPLAY_TIMEOUT = 240


def replayed(replays: dict[Path, Future[Replayed]], dockerfile: Path) -> Replayed:
    return replays[dockerfile].result(timeout=REPLAY_TIMEOUT)


def image_env(image: Replayed, database_url: str, **extra: str) -> dict[str, str]:
    """The container's environment: the image's ENV (paths mapped), the test's settings (like `-e`)."""
    env = image.host_env(service_env(database_url))
    env.update(extra)
    env["PATH"] = strip_venv(env["PATH"])
    env.pop("VIRTUAL_ENV", None)
    if "HOME" in image.env:
        # The image's `RUN ... mkdir -p /home/app && chown app:app /home/app`, which a replay does not run.
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    return env


def image_argv(image: Replayed, command: list[str], env: dict[str, str]) -> list[str]:
    """`command` as the container runs it: its program looked up on the image's PATH."""
    program = shutil.which(command[0], path=env["PATH"])
    assert program, f"{command[0]} is not on the image's PATH"
    assert Path(program).is_relative_to(image.root), f"{command[0]} resolved outside the image: {program}"
    python = image.path("/app/.venv/bin/python")
    if Path(program).name.startswith("python"):
        return [str(python), *command[1:]]
    return [str(python), program, *command[1:]]


def start(image: Replayed, command: list[str], env: dict[str, str], log: Path) -> Proc:
    return Proc(image_argv(image, command, env), env, log, cwd=image.path(image.workdir))


def run(image: Replayed, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        image_argv(image, command, env),
        env=env,
        cwd=image.path(image.workdir),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def installed_modules(image: Replayed, env: dict[str, str]) -> dict[str, bool]:
    """Which service packages (and pytest, a dev dependency) the image's interpreter can import."""
    probe = (
        "import importlib.util, json; "
        f"print(json.dumps({{m: importlib.util.find_spec(m) is not None for m in {[*SERVICE_MODULES.values(), 'shared', 'pytest']!r}}}))"
    )
    proc = run(image, ["python", "-c", probe], env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def assert_only(image: Replayed, env: dict[str, str], *modules: str) -> None:
    found = installed_modules(image, env)
    assert found.pop("shared") and not found.pop("pytest"), "shared installed, no dev dependency"
    assert {m for m, present in found.items() if present} == set(modules)


def assert_packages_complete(image: Replayed, modules: list[str]) -> None:
    """Every file of these workspace packages (SQL, templates, static assets too) reached the image."""
    [site] = image.path("/app/.venv/lib").glob("python*/site-packages")
    for module in modules:
        [source] = [p for p in (ROOT / "shared", *(ROOT / "services").iterdir()) if (p / module).is_dir()]
        files = {
            f.relative_to(source).as_posix()
            for f in (source / module).rglob("*")
            if f.is_file() and "__pycache__" not in f.parts
        }
        missing = sorted(f for f in files if not (site / f).is_file())
        assert not missing, f"not in the image's {module} package: {missing}"


def migrate_from(image: Replayed, env: dict[str, str]) -> None:
    """fly.toml's release_command, run inside the image."""
    proc = run(image, shlex.split(fly()["deploy"]["release_command"]), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "migrated app and queue lineages" in proc.stdout


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def stop_with_sigterm(proc: Proc, timeout: float = 60) -> int:
    """What the container runtime does with STOPSIGNAL: SIGTERM to PID 1 alone, then wait.

    The service's own children (gunicorn's workers, pgqueue's processes) must go with it: a container
    ends when PID 1 does, so a child left behind would be killed, not stopped.
    """
    proc.popen.send_signal(signal.SIGTERM)
    code = proc.popen.wait(timeout)
    wait_until(lambda: not session_processes(proc.pid), 15, message="no child of the service left")
    return code


def finished(url: str, run_id: int) -> int:
    """How many finish records job_events holds for job 1 of `run_id`."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM job_events WHERE run_id = %s AND seq = 1 AND kind = 'finish'", (run_id,)
        ).fetchone()[0]


def versions(url: str) -> dict[str, str | None]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT max(version_num) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("public.alembic_version", "queue.alembic_version")
        }


def test_fly_image_migrates_an_empty_database_and_holds_every_service(replays, empty_database_url):
    image = replayed(replays, ROOT_DOCKERFILE)
    env = image_env(image, empty_database_url)
    migrate_from(image, env)
    assert all(versions(empty_database_url).values()), "both lineages at a revision"
    assert_only(image, env, *SERVICE_MODULES.values())
    assert_packages_complete(image, ["shared", *SERVICE_MODULES.values()])
    for process, command in fly()["processes"].items():
        program = shutil.which(shlex.split(command)[0], path=env["PATH"])
        assert program and Path(program).is_relative_to(image.root), (process, program)
    # Nothing of the checkout leaks in: the image has the virtual environment and db/ only.
    assert sorted(p.name for p in image.path("/app").iterdir()) == [".venv", "db"]


def test_web_image_answers_up_and_stops_on_sigterm(replays, database_url, output_dir):
    [web] = [s for s in SERVICES if s.process == "web"]
    image = replayed(replays, web.dockerfile)
    port = embedded.free_port()
    env = image_env(image, database_url, PORT=str(port), WEB_CONCURRENCY="1")
    # The migrations need nothing the service images lack (the workers' images are built alike).
    migrate_from(image, env)
    # The executor the web starts writes its reports where the image allows the non-root user to write.
    probe = "from shared import settings; from shared.bench import executor; print(settings.REPORTS_DIR)"
    reports = run(image, ["python", "-c", probe], env)
    assert reports.returncode == 0, reports.stderr
    assert Path(reports.stdout.strip()).is_relative_to(image.path(image.env["BENCH_DATA_DIR"]))
    assert_only(image, env, "web")
    proc = start(image, image.cmd, env, output_dir / "web.log")
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/up") == 200, 60, message="/up 200")
        # The image's HEALTHCHECK, run inside the image, agrees.
        [check] = Dockerfile(web.dockerfile).final.of("HEALTHCHECK")
        health = run(image, list(check.value[1:]), env)
        assert health.returncode == 0, health.stderr
        assert stop_with_sigterm(proc) == 0, proc.log()
    finally:
        proc.stop()


def test_celery_image_takes_a_job_and_stops_on_sigterm(replays, database_url, output_dir):
    [celery] = [s for s in SERVICES if s.process == "celery"]
    image = replayed(replays, celery.dockerfile)
    queue = f"deploy-{time.time_ns()}"
    env = image_env(
        image,
        database_url,
        BENCH_CELERY_QUEUES=queue,
        BENCH_CELERY_POOL="threads",
        BENCH_CELERY_CONCURRENCY="2",
        BENCH_CELERY_POLLING_INTERVAL="0.1",
    )
    assert_only(image, env, "celery_worker")
    proc = start(image, image.cmd, env, output_dir / "celery.log")
    run_id = 700_000 + time.time_ns() % 100_000
    try:
        wait_until(lambda: "ready" in proc.log(), 60, message="celery worker ready")
        app = celery_app.make_app("postgres", s=settings.load())
        celery_app.send(
            app, "noop", {}, {"run_id": run_id, "seq": 1, "enqueued_at": time.time()}, queue=queue
        )

        wait_until(
            lambda: finished(database_url, run_id), 60, message="the noop's finish record in job_events"
        )
        assert stop_with_sigterm(proc) == 0, proc.log()
    finally:
        proc.stop()
    # The spool went where the image says (BENCH_DATA_DIR), inside the container's filesystem.
    assert list(image.path(image.env["BENCH_DATA_DIR"]).glob("spool/*.spool"))


def test_pgqueue_image_takes_a_job_and_stops_on_sigterm(replays, database_url, output_dir):
    [pgqueue_service] = [s for s in SERVICES if s.process == "pgqueue"]
    image = replayed(replays, pgqueue_service.dockerfile)
    queue = f"deploy-{time.time_ns()}"
    env = image_env(
        image, database_url, PGQUEUE_QUEUES=queue, PGQUEUE_THREADS="2", PGQUEUE_POLL_INTERVAL="0.2"
    )
    assert_only(image, env, "pgqueue_worker")
    proc = start(image, image.cmd, env, output_dir / "pgqueue.log")
    run_id = 800_000 + time.time_ns() % 100_000

    def heartbeat() -> int:
        with psycopg.connect(database_url) as conn:
            return conn.execute(
                "SELECT count(*) FROM queue.workers WHERE adapter = 'pgqueue' AND pid = %s", (proc.pid,)
            ).fetchone()[0]

    try:
        wait_until(heartbeat, 60, message="a pgqueue heartbeat in queue.workers")
        # The image's HEALTHCHECK, run inside the image, finds the worker's heartbeat.
        [check] = Dockerfile(pgqueue_service.dockerfile).final.of("HEALTHCHECK")
        health = run(image, list(check.value[1:]), env)
        assert health.returncode == 0, health.stdout + health.stderr
        with psycopg.connect(database_url) as conn:  # the job exists once this transaction commits
            pgqueue.enqueue(
                conn, "noop", {}, queue=queue, meta={"run_id": run_id, "seq": 1, "enqueued_at": time.time()}
            )
        wait_until(
            lambda: finished(database_url, run_id), 60, message="the noop's finish record in job_events"
        )
        assert stop_with_sigterm(proc) == 0, proc.log()
    finally:
        proc.stop()
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT bool_and(stopped_at IS NOT NULL) FROM queue.workers WHERE adapter = 'pgqueue'"
        ).fetchone()[0]
