"""Acceptance: the worker groups' health checks (fly.toml's [checks], the worker images' HEALTHCHECK).

`bench-<adapter>-health --serve PORT` runs the worker in its own process and answers `GET /up` from that
worker's heartbeat; `bench-<adapter>-health` alone checks once (exit 0 or 1). A worker that exits 2 because
its database does not answer leaves nothing listening, which fails a rolling deploy.
"""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

from shared import embedded

from ..support import VENV_BIN, Proc, service_env, wait_until


def get_up(port: int) -> tuple[int, dict] | None:
    """(status, body) of GET /up, or None when nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/up", timeout=3) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def check_once(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("adapter", "worker_flags"),
    [
        ("pgqueue", ["--threads", "2", "--heartbeat-interval", "0.5"]),
        ("celery", ["--pool", "threads", "--concurrency", "2"]),
    ],
)
def test_a_worker_is_healthy_while_it_heartbeats_and_not_once_it_stopped(
    adapter, worker_flags, database_url, output_dir, tmp_path
):
    port = embedded.free_port()
    env = service_env(database_url, BENCH_SPOOL_DIR=str(tmp_path / "spool"))
    script = f"bench-{adapter}-health"
    proc = Proc(
        [str(VENV_BIN / script), "--serve", str(port), "--", *worker_flags], env, output_dir / "w.log"
    )
    try:
        wait_until(lambda: (get_up(port) or (0,))[0] == 200 or not proc.alive(), 90, message="/up 200")
        status, body = get_up(port) or (0, {})
        assert status == 200, proc.log()[-3000:]
        assert body["status"] == "up" and body["heartbeat_age_s"] < 15
        once = check_once(script, env)
        assert once.returncode == 0 and once.stdout.startswith("healthy:"), once.stdout + once.stderr
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(60) == 0, proc.log()[-3000:]
        assert get_up(port) is None, "nothing answers once the worker has exited"
        once = check_once(script, env)
        assert once.returncode == 1 and f"no running {adapter} worker" in once.stdout, once.stdout
    finally:
        proc.stop()


def test_a_worker_whose_database_does_not_answer_exits_and_leaves_no_health_port(output_dir):
    port = embedded.free_port()
    closed = embedded.free_port()
    env = service_env(f"postgresql://postgres@127.0.0.1:{closed}/none")
    proc = Proc([str(VENV_BIN / "bench-pgqueue-health"), "--serve", str(port)], env, output_dir / "w.log")
    try:
        code = proc.popen.wait(60)
        assert code == 2, proc.log()[-2000:]
        assert get_up(port) is None
    finally:
        proc.stop()


def test_the_health_script_refuses_bad_input_in_one_line():
    result = subprocess.run(
        [str(VENV_BIN / "bench-pgqueue-health"), "--serve", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "TCP port" in result.stderr and "Traceback" not in result.stderr
