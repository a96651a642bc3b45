"""fly.toml follows docs/deploy.md, and each service's start command is the same in all four places.

The four places: the service's console script (`[project.scripts]` of its pyproject.toml), its Dockerfile's
CMD (and the root Dockerfile's, for web), its `[processes]` entry in fly.toml, and its Procfile.dev line,
where only development flags (`--...`) may follow the script.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest

from pgqueue_worker import config as pgqueue_config

from ..support import ROOT
from .dockerctx import Dockerfile
from .project import ROOT_DOCKERFILE, SERVICES, fly, procfile

FLY_MAX_KILL_TIMEOUT = 300  # seconds; Fly refuses more
GUNICORN_GRACEFUL_TIMEOUT = 20  # services/web/web/gunicorn_conf.py


def seconds(value: int | str) -> float:
    """A Fly duration (`120`, `"120s"`, `"2m"`) in seconds."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", value)
    assert m, f"not a duration: {value!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def test_one_app_three_process_groups_from_the_root_dockerfile():
    conf = fly()
    assert conf["app"]
    assert conf["build"]["dockerfile"] == "Dockerfile"
    assert (ROOT / conf["build"]["dockerfile"]).resolve() == ROOT_DOCKERFILE
    assert set(conf["processes"]) == {s.process for s in SERVICES}


def test_only_web_is_routed_and_its_health_check_is_up():
    conf = fly()
    http = conf["http_service"]
    assert http["processes"] == ["web"]
    assert http["internal_port"] == int(conf["env"]["PORT"])
    [check] = http["checks"]
    assert check["path"] == "/up" and check.get("method", "GET").upper() == "GET"
    assert "services" not in conf, "no other routed service"


def test_release_command_migrates_both_lineages():
    argv = shlex.split(fly()["deploy"]["release_command"])
    assert argv[:3] == ["python", "-m", "shared.migrate"]
    # `upgrade` (the default action) runs the app lineage, then the queue lineage.
    assert argv[3:] in ([], ["upgrade"])


def test_kill_signal_and_timeout_allow_a_graceful_worker_shutdown():
    conf = fly()
    assert conf["kill_signal"] == "SIGTERM"
    timeout = seconds(conf["kill_timeout"])
    assert 60 <= timeout <= FLY_MAX_KILL_TIMEOUT
    assert timeout > GUNICORN_GRACEFUL_TIMEOUT
    # pgqueue lets its running jobs finish for up to shutdown_timeout, then flushes and exits.
    assert timeout >= 2 * pgqueue_config.Config().shutdown_timeout
    for path in [ROOT_DOCKERFILE, *(s.dockerfile for s in SERVICES)]:
        assert Dockerfile(path).final.of("STOPSIGNAL")[0].value[0] == conf["kill_signal"]


def test_both_workers_get_equal_vm_sizes():
    vms = fly()["vm"]
    by_process = {}
    for vm in vms:
        assert vm.get("processes"), "each [[vm]] names its process groups"
        for process in vm["processes"]:
            assert process not in by_process, f"{process} in two [[vm]] blocks"
            size = {k: v for k, v in vm.items() if k != "processes"}
            by_process[process] = size
    assert set(by_process) == {s.process for s in SERVICES}
    assert by_process["celery"] == by_process["pgqueue"]
    assert by_process["celery"], "a size, not the platform default"


def test_both_workers_get_equal_slots():
    env = fly()["env"]
    assert env["BENCH_CELERY_POOL"] == "prefork"  # one slot per process
    pgqueue_slots = int(env["PGQUEUE_PROCESSES"]) * int(env["PGQUEUE_THREADS"])
    assert int(env["BENCH_CELERY_CONCURRENCY"]) == pgqueue_slots
    # Both values pass the workers' own validation.
    pgqueue_config.from_args(pgqueue_config.parser().parse_args([]), env)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.process)
def test_start_command_agrees_everywhere(service):
    script = service.script
    module, _, func = service.pyproject["project"]["scripts"][script].partition(":")
    assert module.startswith(service.folder + ".") and func
    cmd = Dockerfile(service.dockerfile).final.of("CMD")[-1]
    assert list(cmd.value) == [script]
    fly_cmd = shlex.split(fly()["processes"][service.process])
    if service.health_script:
        # A worker group starts its worker through its health check, which serves fly.toml's [checks].
        health_module = service.pyproject["project"]["scripts"][service.health_script].partition(":")[0]
        assert health_module == f"{service.folder}.health"
        assert fly_cmd[:2] == [service.health_script, "--serve"] and len(fly_cmd) == 3, fly_cmd
    else:
        assert fly_cmd == [script]
    dev = shlex.split(procfile()[service.process])
    assert dev[0] == script
    assert all(arg.startswith("-") or dev[i - 1].startswith("--") for i, arg in enumerate(dev[1:], 1)), (
        f"Procfile.dev may add only flags after {script}: {dev}"
    )


def test_every_worker_group_has_a_health_check_on_its_heartbeat():
    """fly.toml's [checks] ask each worker group's health port; the worker images check the same heartbeat."""
    checks = fly()["checks"]
    workers = [s for s in SERVICES if s.health_script]
    assert {s.process for s in workers} == {"celery", "pgqueue"}
    for service in workers:
        port = int(shlex.split(fly()["processes"][service.process])[2])
        [check] = [c for c in checks.values() if service.process in c["processes"]]
        assert check["type"] == "http" and check["path"] == "/up" and int(check["port"]) == port
        assert seconds(check["grace_period"]) >= 10 and seconds(check["timeout"]) < seconds(check["interval"])
        [healthcheck] = Dockerfile(service.dockerfile).final.of("HEALTHCHECK")
        assert list(healthcheck.value)[-1] == service.health_script


def test_the_images_home_is_writable_by_their_user():
    """`HOME` is the app user's own folder, made and chowned in the image (tools write under $HOME)."""
    for path in [ROOT_DOCKERFILE, *(s.dockerfile for s in SERVICES)]:
        final = Dockerfile(path).final
        env = dict(pair for i in final.of("ENV") for pair in zip(i.value[::2], i.value[1::2], strict=True))
        assert env["HOME"] == "/home/app", path
        run = " ".join(i.original for i in final.of("RUN"))
        assert "--home-dir /home/app" in run and "chown app:app /home/app" in run, path


def test_web_image_checks_its_health_on_up():
    [web] = [s for s in SERVICES if s.process == "web"]
    [check] = Dockerfile(web.dockerfile).final.of("HEALTHCHECK")
    assert check.value[0] == "CMD" and "/up" in check.value[-1]


def test_root_image_runs_web_by_default_and_holds_every_script():
    assert list(Dockerfile(ROOT_DOCKERFILE).final.of("CMD")[-1].value) == ["bench-web"]
    assert set(procfile()) == {s.process for s in SERVICES}


def test_make_deploy_says_clearly_when_flyctl_is_missing(tmp_path):
    # A PATH with make's own tools but no flyctl (nor fly).
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ["bash", "sh", "env", "dirname", "awk"]:
        found = shutil.which(tool)
        if found:
            (bindir / tool).symlink_to(found)
    proc = subprocess.run(
        [shutil.which("make") or "make", "-s", "deploy"],
        cwd=ROOT,
        env={"PATH": str(bindir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "flyctl" in proc.stderr and "docs/deploy.md" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
