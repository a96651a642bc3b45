"""Test helpers: waiting on conditions with deadlines, process groups, environments for services, query plans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def plan_nodes(plan: dict) -> list[dict]:
    """The nodes of a plan from `EXPLAIN (FORMAT JSON)` (its "Plan" object), depth first."""
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


def wait_until(cond: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "") -> Any:
    """Poll `cond` until it returns a truthy value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message or cond}; last error: {last_exc!r}"
            )
        time.sleep(interval)


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment a service subprocess gets: our venv first on PATH, the test database."""
    env = {k: v for k, v in os.environ.items() if k not in {"QUEUE_DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(
        DATABASE_URL=database_url,
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        ADMIN_USER="admin",
        ADMIN_PASSWORD=env.get("TEST_ADMIN_PASSWORD", "test-password"),
        SECRET_KEY="test-secret-key",
    )
    env.update(extra)
    return env


class Proc:
    """A subprocess started in its own session (process group), stopped by its group id."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 30.0) -> int | None:
        """TERM the group, wait, then KILL what is left of it."""
        if self.alive():
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        return self.popen.returncode


def session_processes(sid: int) -> list[psutil.Process]:
    """Every live process whose session id is `sid`."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found
