"""What `docker build` would do with our Dockerfiles, without a Docker engine.

- `DockerIgnore`: `.dockerignore` with Docker's own rules (moby/patternmatcher): patterns are cleaned and
  anchored at the context root, `*` and `?` stop at `/`, `**` spans any number of folders, a pattern that
  matches a parent folder matches everything under it, `!` re-includes, and the last matching line wins.
- `Dockerfile`: a Dockerfile parsed by BuildKit's own parser (the `dockerfile` package), split into stages.
- `replay`: runs a Dockerfile's COPY instructions (from the filtered build context or from an earlier stage)
  and its `uv` RUN instructions, one folder per stage standing in for that stage's filesystem. Other RUN
  instructions (user creation, mkdir) need root and change nothing Python sees, so they are skipped; the
  final stage's folder, ENV, WORKDIR and CMD are what a container of the image would run.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile

# Characters that mean something in a regular expression but are literal in a Docker pattern.
_LITERAL = set(".+()|{}$^")


@dataclass(frozen=True)
class IgnorePattern:
    """One line of a .dockerignore: the cleaned pattern, whether it re-includes, and its regex."""

    text: str
    exclusion: bool
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regex of a Docker ignore pattern (the translation moby/patternmatcher makes)."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 1
                if i + 1 < n and pattern[i + 1] == "/":  # `**/` behaves as `**`
                    i += 1
                # `**` at the end accepts everything; elsewhere it spans zero or more whole folders.
                out.append(".*" if i + 1 >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch in _LITERAL:
            out.append("\\" + ch)
        else:
            out.append(ch)  # `[...]` character classes pass through, as in Go's filepath.Match
        i += 1
    out.append("$")
    return re.compile("".join(out))


class DockerIgnore:
    """The patterns of one .dockerignore, and Docker's decision for a path of the build context."""

    def __init__(self, lines: list[str]) -> None:
        self.patterns: list[IgnorePattern] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            if not line:
                continue
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/")
            self.patterns.append(IgnorePattern(line, exclusion, compile_pattern(line)))

    @classmethod
    def load(cls, path: Path) -> DockerIgnore:
        return cls(path.read_text().splitlines() if path.exists() else [])

    def excluded(self, path: str) -> bool:
        """True when Docker leaves `path` (relative to the context, `/`-separated) out of the context."""
        path = posixpath.normpath(path)
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            # An include cannot change an excluded path, nor an exception an included one.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                # A pattern that matches a parent folder matches everything under it.
                hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def skippable(self, folder: str) -> bool:
        """True when `folder` is excluded and no `!` pattern could re-include anything under it."""
        if not self.excluded(folder):
            return False
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            literal = re.split(r"[*?\\[]", pattern.text, maxsplit=1)[0]
            if not literal or literal.startswith(folder + "/") or (folder + "/").startswith(literal):
                return False
        return True


def context_files(root: Path, ignore: DockerIgnore) -> list[str]:
    """Every file of the build context at `root` that `.dockerignore` lets through, sorted."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        # Skip the folders Docker would skip: excluded, and out of reach of every `!` exception
        # (this keeps the walk out of .git, .venv and .data without changing the answer for any file).
        dirnames[:] = [d for d in dirnames if not ignore.skippable(f"{rel_dir}/{d}".lstrip("/"))]
        for name in filenames:
            rel = f"{rel_dir}/{name}".lstrip("/")
            if not ignore.excluded(rel):
                files.append(rel)
    return sorted(files)


@dataclass
class Instruction:
    """One instruction of a Dockerfile, as BuildKit parsed it."""

    cmd: str
    flags: dict[str, str]
    value: tuple[str, ...]
    json: bool
    line: int
    original: str


@dataclass
class Stage:
    """A FROM and what follows it."""

    index: int
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]


class Dockerfile:
    """A Dockerfile parsed with BuildKit's parser, with its global ARGs substituted into FROM lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commands = dockerfile.parse_file(str(path))
        self.args: dict[str, str] = {}
        self.stages: list[Stage] = []
        for c in self.commands:
            flags = {}
            for f in c.flags:
                key, _, val = f.lstrip("-").partition("=")
                flags[key] = val
            ins = Instruction(c.cmd.upper(), flags, tuple(c.value), c.json, c.start_line, c.original)
            if ins.cmd == "FROM":
                base = self.expand(ins.value[0])
                name = ins.value[2] if len(ins.value) == 3 and ins.value[1].upper() == "AS" else None
                self.stages.append(Stage(len(self.stages), base, name))
            elif not self.stages:
                if ins.cmd == "ARG":
                    key, _, val = ins.value[0].partition("=")
                    self.args[key] = val
            else:
                self.stages[-1].instructions.append(ins)

    def expand(self, text: str) -> str:
        """`${NAME}` and `$NAME` of the global ARGs replaced by their defaults."""
        return re.sub(
            r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m.group(1) or m.group(2), m.group(0)), text
        )

    def stage(self, ref: str) -> Stage | None:
        """The stage named (or numbered) `ref`, if there is one; None means an external image."""
        for s in self.stages:
            if s.name == ref or str(s.index) == ref:
                return s
        return None

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def env_pairs(ins: Instruction) -> dict[str, str]:
    """The variables an ENV instruction sets (BuildKit gives key, value, key, value...)."""
    values = list(ins.value)
    pairs = {}
    for key, val in zip(values[::2], values[1::2], strict=True):
        pairs[key] = shlex.split(val)[0] if val.startswith(('"', "'")) else val
    return pairs


def copy_parts(ins: Instruction) -> tuple[list[str], str]:
    """The sources and the destination of a COPY."""
    *sources, dest = ins.value
    return list(sources), dest


@dataclass
class Replayed:
    """The final stage of a replayed Dockerfile: its filesystem folder, environment, workdir and command."""

    root: Path
    workdir: str
    env: dict[str, str]
    cmd: list[str]
    user: str | None
    log: list[str]

    def path(self, container_path: str) -> Path:
        """The host path of an absolute path inside the container."""
        return self.root / container_path.lstrip("/")

    def host_env(self, base: dict[str, str]) -> dict[str, str]:
        """`base` plus the image's ENV, container paths mapped onto the stage folder."""
        env = dict(base)
        for key, val in self.env.items():
            if key == "PATH":
                image_dirs = [p for p in val.split(":") if p.startswith("/app")]
                env["PATH"] = os.pathsep.join(
                    [str(self.path(p)) for p in image_dirs] + [base.get("PATH", "")]
                )
            elif val.startswith("/"):
                env[key] = str(self.path(val))
            else:
                env[key] = val
        return env


# Image settings that change how fast files land, never which: bytecode compilation (it only saves start-up
# time) and the link mode (an image copies out of its cache mount; a replay hard-links from uv's cache).
REPLAY_OVERRIDES = {"UV_COMPILE_BYTECODE", "UV_LINK_MODE"}


class ReplayError(AssertionError):
    pass


def _link_or_copy(src: str, dest: str) -> None:
    # Stages share files by hard link where they can: a COPY between stages is then nearly free.
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _copy_into(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True, copy_function=_link_or_copy)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest, follow_symlinks=False)


def replay(df: Dockerfile, context: Path, workspace: Path, uv: str, base_env: dict[str, str]) -> Replayed:
    """Replay `df` against the build context at `context`; every stage gets a folder under `workspace`.

    Build-context COPYs see only what `.dockerignore` lets through, as a staged copy of the context;
    `uv` RUNs run with the stage's ENV but for `REPLAY_OVERRIDES`, in its WORKDIR. Raises `ReplayError` with uv's output when an install step fails.
    """
    ignore = DockerIgnore.load(context / ".dockerignore")
    staged = workspace / "context"
    for rel in context_files(context, ignore):
        _copy_into(context / rel, staged / rel)
    roots: dict[int, Path] = {}
    log: list[str] = []
    result: Replayed | None = None
    for stage in df.stages:
        root = workspace / f"stage{stage.index}"
        parent = df.stage(stage.base)
        if parent is not None:
            shutil.copytree(roots[parent.index], root, symlinks=True)
        else:
            root.mkdir(parents=True)
        roots[stage.index] = root
        workdir = "/"
        env: dict[str, str] = {}
        cmd: list[str] = []
        user: str | None = None
        for ins in stage.instructions:
            if ins.cmd == "WORKDIR":
                workdir = posixpath.join(workdir, ins.value[0])
                (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            elif ins.cmd == "ENV":
                env.update(env_pairs(ins))
            elif ins.cmd == "USER":
                user = ins.value[0]
            elif ins.cmd == "CMD":
                cmd = list(ins.value)
            elif ins.cmd == "COPY":
                sources, dest = copy_parts(ins)
                dest_abs = posixpath.join(workdir, dest)
                origin = ins.flags.get("from")
                if origin is not None and df.stage(origin) is None:
                    log.append(f"skip line {ins.line}: COPY from the image {origin}")
                    continue
                src_root = roots[df.stage(origin).index] if origin is not None else staged
                for src in sources:
                    src_path = src_root / src.lstrip("/")
                    if not src_path.exists():
                        raise ReplayError(
                            f"{df.path}:{ins.line}: COPY source {src} is not in {origin or 'the build context'}"
                        )
                    target = root / dest_abs.lstrip("/")
                    if src_path.is_file() and dest.endswith("/"):
                        target = target / src_path.name
                    _copy_into(src_path, target)
            elif ins.cmd == "RUN":
                command = " ".join(ins.value)
                if not command.startswith("uv "):
                    log.append(f"skip line {ins.line}: RUN {command.split()[0]} ...")
                    continue
                run_env = dict(base_env)
                for key, val in env.items():
                    if key.startswith("UV_") and key not in REPLAY_OVERRIDES:
                        run_env[key] = str(root / val.lstrip("/")) if val.startswith("/") else val
                argv = [uv, *shlex.split(command)[1:]]
                proc = subprocess.run(
                    argv,
                    cwd=root / workdir.lstrip("/"),
                    env=run_env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    stdin=subprocess.DEVNULL,
                )
                log.append(f"line {ins.line}: {command} -> {proc.returncode}")
                if proc.returncode != 0:
                    raise ReplayError(
                        f"{df.path}:{ins.line}: `{command}` failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
                    )
        result = Replayed(root=root, workdir=workdir, env=env, cmd=cmd, user=user, log=log)
    assert result is not None, f"{df.path} has no FROM"
    return result
