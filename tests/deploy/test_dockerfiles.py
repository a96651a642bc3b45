"""Every Dockerfile, read by BuildKit's parser and checked against the house rules (no Docker engine here).

Rules (issue 7, docs/deploy.md): built from the repository root; multi-stage; dependencies installed by
`uv sync --frozen` before any source is copied; a non-root user; PYTHONUNBUFFERED=1; SIGTERM as STOPSIGNAL
(every service's graceful shutdown); CMD is the service's console script; every COPY source exists in the
build context and `.dockerignore` lets it through.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from ..support import ROOT
from .dockerctx import Dockerfile, DockerIgnore, Instruction, copy_parts, env_pairs
from .project import ALL_DOCKERFILES, ROOT_DOCKERFILE, SERVICES, dockerfile_id

UV_IMAGE = re.compile(r"^ghcr\.io/astral-sh/uv:(\d+\.\d+\.\d+)$")
# Files a service needs at run time or to build; every one under a copied folder must reach the image.
NEEDED_SUFFIXES = {".py", ".toml", ".ini", ".mako", ".sql", ".html", ".css", ".js", ".json", ".lock"}

dockerfiles = pytest.mark.parametrize("path", ALL_DOCKERFILES, ids=dockerfile_id)


def uv_syncs(df: Dockerfile) -> list[tuple[int, list[str]]]:
    """(instruction position in its stage, argv) of every `uv sync` of the build stage."""
    found = []
    for stage in df.stages:
        for pos, ins in enumerate(stage.instructions):
            if ins.cmd == "RUN" and " ".join(ins.value).startswith("uv sync"):
                found.append((pos, shlex.split(" ".join(ins.value))))
    return found


def uv_syncs_in(stage) -> list[Instruction]:
    return [i for i in stage.of("RUN") if " ".join(i.value).startswith("uv sync")]


def context_copies(df: Dockerfile) -> list[tuple[Instruction, str]]:
    """Every (COPY, source) that reads the build context (no --from)."""
    return [
        (ins, src)
        for stage in df.stages
        for ins in stage.of("COPY")
        if "from" not in ins.flags
        for src in copy_parts(ins)[0]
    ]


def is_dependency_file(src: str) -> bool:
    return Path(src).name in {"pyproject.toml", "uv.lock"}


def expected_package(path: Path) -> str | None:
    """The `--package` a Dockerfile's syncs must name; None for the root image, which holds them all."""
    for service in SERVICES:
        if service.dockerfile == path:
            return service.package
    assert path == ROOT_DOCKERFILE
    return None


@dockerfiles
def test_parses_and_is_multi_stage(path):
    df = Dockerfile(path)
    assert len(df.stages) >= 2, "multi-stage: a builder and a runtime stage"
    builders = [s for s in df.stages if uv_syncs_in(s)]
    assert builders and df.final not in builders, "the runtime stage installs nothing itself"
    # The runtime starts from the same clean Python image as the builder, not from the builder.
    assert df.stage(df.final.base) is None and df.final.base == builders[0].base
    assert re.match(r"^python:\d+\.\d+(\.\d+)?-slim", df.final.base), df.final.base


def test_every_image_pins_the_same_uv_from_its_official_image():
    versions = set()
    for path in ALL_DOCKERFILES:
        df = Dockerfile(path)
        sources = [ins.flags["from"] for s in df.stages for ins in s.of("COPY") if "from" in ins.flags]
        pinned = [m.group(1) for m in map(UV_IMAGE.match, sources) if m]
        assert len(pinned) == 1, f"{dockerfile_id(path)}: COPY --from=ghcr.io/astral-sh/uv:<x.y.z> once"
        versions.update(pinned)
    assert len(versions) == 1, versions


@dockerfiles
def test_dependencies_are_installed_frozen_before_the_source_is_copied(path):
    df = Dockerfile(path)
    [builder] = [s for s in df.stages if uv_syncs_in(s)]
    syncs = uv_syncs(df)
    assert len(syncs) == 2, "one sync of the dependencies, one of the workspace packages"
    (deps_at, deps), (all_at, full) = syncs
    for argv in (deps, full):
        assert "--frozen" in argv and "--no-dev" in argv, argv
        package = expected_package(path)
        if package:
            assert argv[argv.index("--package") + 1] == package, argv
        else:
            assert "--package" not in argv, "the Fly image installs every member"
    assert "--no-install-workspace" in deps
    assert "--no-editable" in full, "the runtime stage copies the virtual environment alone"
    copies = [(pos, ins) for pos, ins in enumerate(builder.instructions) if ins.cmd == "COPY"]
    before = [ins for pos, ins in copies if pos < deps_at and "from" not in ins.flags]
    after = [ins for pos, ins in copies if deps_at < pos < all_at]
    assert before and all(is_dependency_file(src) for ins in before for src in copy_parts(ins)[0]), [
        i.original for i in before
    ]
    # uv reads the workspace from every member's pyproject.toml, so all of them come first.
    copied_first = {src for ins in before for src in copy_parts(ins)[0]}
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    members = ["pyproject.toml", "uv.lock", *(f"{m}/pyproject.toml" for m in workspace)]
    assert copied_first == set(members)
    assert after and not any(is_dependency_file(src) for ins in after for src in copy_parts(ins)[0])


@dockerfiles
def test_runtime_runs_unbuffered_as_a_non_root_user_and_stops_on_sigterm(path):
    df = Dockerfile(path)
    final = df.final
    env = {}
    for ins in final.of("ENV"):
        env.update(env_pairs(ins))
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env["PATH"].startswith("/app/.venv/bin:"), "the console scripts are on PATH"
    users = final.of("USER")
    assert users, "a USER instruction"
    user = users[-1].value[0].split(":")[0]
    assert user not in {"root", "0"}
    last_user_at = final.instructions.index(users[-1])
    assert not [i for i in final.instructions[last_user_at:] if i.cmd == "RUN"], (
        "nothing runs as root after USER"
    )
    assert [i.value for i in final.of("STOPSIGNAL")] == [("SIGTERM",)]
    assert not final.of("ENTRYPOINT"), "CMD alone, so fly.toml's process commands replace it whole"
    [cmd] = final.of("CMD")
    assert cmd.json, "CMD in exec form: the service is PID 1 and receives the stop signal itself"
    assert final.of("WORKDIR")[-1].value == ("/app",)
    # The migrations travel with every image (release_command, `python -m shared.migrate`).
    assert any(copy_parts(i)[0] == ["db/"] for i in final.of("COPY"))


@dockerfiles
def test_every_copy_source_exists_and_is_not_ignored(path):
    df = Dockerfile(path)
    ignore = DockerIgnore.load(ROOT / ".dockerignore")
    copies = context_copies(df)
    assert copies
    for ins, src in copies:
        assert not any(ch in src for ch in "*?["), f"line {ins.line}: a wildcard COPY flattens folders"
        rel = src.rstrip("/")
        host = ROOT / rel
        assert host.exists(), f"{dockerfile_id(path)}:{ins.line}: COPY source {src} does not exist"
        assert not ignore.excluded(rel), f"{dockerfile_id(path)}:{ins.line}: .dockerignore excludes {src}"
        if host.is_dir():
            needed = [
                p.relative_to(ROOT).as_posix()
                for p in host.rglob("*")
                if p.is_file() and p.suffix in NEEDED_SUFFIXES and "__pycache__" not in p.parts
            ]
            assert needed, f"{src} holds nothing to copy"
            left_out = [f for f in needed if ignore.excluded(f)]
            assert not left_out, f".dockerignore leaves out of {src}: {left_out}"


def test_dockerignore_keeps_local_state_out_of_the_context():
    ignore = DockerIgnore.load(ROOT / ".dockerignore")
    for path in [
        ".git/config",
        ".venv/bin/python",
        ".data/embedded-pg/PG_VERSION",
        ".tools/bin/uv",
        "test-output/x/web.log",
        "tests/conftest.py",
        "shared/shared/__pycache__/db.cpython-311.pyc",
        "services/web/.venv/bin/python",
        "services/web/Dockerfile",
    ]:
        assert ignore.excluded(path), path
    for path in ["pyproject.toml", "uv.lock", "shared/shared/db.py", "db/alembic.ini"]:
        assert not ignore.excluded(path), path
