"""What tests/deploy/ share: the services, their Dockerfiles, fly.toml and Procfile.dev."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..support import ROOT
from .dockerctx import Dockerfile


@dataclass(frozen=True)
class Service:
    """One deployable service: its Procfile.dev / fly.toml name, its package and where it lives."""

    process: str  # the name in Procfile.dev and in fly.toml's [processes]
    package: str  # the workspace member's project name (uv sync --package)
    folder: str  # under services/

    @property
    def dockerfile(self) -> Path:
        return ROOT / "services" / self.folder / "Dockerfile"

    @property
    def pyproject(self) -> dict:
        return tomllib.loads((ROOT / "services" / self.folder / "pyproject.toml").read_text())

    @property
    def script(self) -> str:
        """The service's start script: the one console script its pyproject.toml declares besides its
        health check."""
        scripts = [n for n in self.pyproject["project"]["scripts"] if not n.endswith("-health")]
        assert len(scripts) == 1, f"{self.folder} declares {len(scripts)} start scripts; expected one"
        return scripts[0]

    @property
    def health_script(self) -> str | None:
        """A worker's health check (`bench-<adapter>-health`), which also runs the worker with `--serve`."""
        scripts = [n for n in self.pyproject["project"]["scripts"] if n.endswith("-health")]
        assert len(scripts) <= 1, f"{self.folder} declares {len(scripts)} health scripts"
        return scripts[0] if scripts else None


SERVICES = [
    Service("web", "web", "web"),
    Service("celery", "celery-worker", "celery_worker"),
    Service("pgqueue", "pgqueue-worker", "pgqueue_worker"),
]
ROOT_DOCKERFILE = ROOT / "Dockerfile"
ALL_DOCKERFILES = [ROOT_DOCKERFILE, *(s.dockerfile for s in SERVICES)]


def dockerfile_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def load_dockerfile(path: Path) -> Dockerfile:
    return Dockerfile(path)


def fly() -> dict:
    return tomllib.loads((ROOT / "fly.toml").read_text())


def procfile() -> dict[str, str]:
    """Procfile.dev as {process: command}."""
    entries = {}
    for line in (ROOT / "Procfile.dev").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if m:
            entries[m.group(1)] = m.group(2).strip()
    return entries
