"""Replays of every Dockerfile, built once per session, all four at the same time."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from ..support import ROOT, VENV_BIN
from .dockerctx import Dockerfile, Replayed, replay
from .project import ALL_DOCKERFILES


def find_uv() -> str:
    """The uv the Makefile uses: from PATH, else the project-local copy."""
    found = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is not installed: run `make setup` (it installs a project-local uv)")
    return found


def uv_env() -> dict[str, str]:
    """The environment of a replayed `uv sync`: nothing of this checkout's own virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}}
    env["PATH"] = strip_venv(env.get("PATH", ""))
    # The base interpreter of the test run, standing in for the image's python:3.x-slim; never a download.
    env["UV_PYTHON"] = getattr(sys, "_base_executable", sys.executable)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_LINK_MODE"] = "hardlink"
    return env


def strip_venv(path: str) -> str:
    """PATH without this checkout's .venv/bin, so a service can only find the replayed image's scripts."""
    return os.pathsep.join(p for p in path.split(os.pathsep) if p and Path(p) != VENV_BIN)


@pytest.fixture(scope="session")
def replays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, Future[Replayed]]]:
    """{Dockerfile path: future of its replay}; all start at the first request, concurrently."""
    uv = find_uv()
    base = tmp_path_factory.mktemp("replays")
    env = uv_env()
    with ThreadPoolExecutor(max_workers=len(ALL_DOCKERFILES)) as pool:
        futures = {
            path: pool.submit(
                replay,
                Dockerfile(path),
                ROOT,
                base / path.relative_to(ROOT).parent.as_posix().replace("/", "-").replace(".", "root"),
                uv,
                env,
            )
            for path in ALL_DOCKERFILES
        }
        # Left for pytest's own clean-up of old temporary folders: the virtual environments are hard
        # links into uv's cache, so they take little room, and a failed run can be inspected.
        yield futures
