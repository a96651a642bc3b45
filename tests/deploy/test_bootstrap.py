"""`make bootstrap` (scripts/bootstrap.sh) per platform, with stand-ins for uname, brew, apt-get and uv.

The stand-ins record their calls; PATH holds nothing else but `dirname`, so no real tool of this machine
(tmux, overmind) is seen and nothing is installed for real.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ..support import ROOT

SCRIPT = ROOT / "scripts" / "bootstrap.sh"


def stub(bindir: Path, name: str, body: str = "exit 0") -> None:
    path = bindir / name
    path.write_text(f'#!{shutil.which("bash")}\necho "{name} $*" >> "$CALLS"\n{body}\n')
    path.chmod(0o755)


def bootstrap(
    tmp_path: Path, system: str, *tools: str, uid: int = 0, uv: str = "exit 0"
) -> tuple[subprocess.CompletedProcess, list[str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "dirname").symlink_to(shutil.which("dirname"))
    calls = tmp_path / "calls"
    calls.touch()
    stub(bindir, "uname", f"echo {system}")
    stub(bindir, "id", f"echo {uid}")
    stub(bindir, "uv", uv)  # `uv sync` without touching the checkout's .venv
    for tool in tools:
        stub(bindir, tool)
    proc = subprocess.run(
        [shutil.which("bash"), str(SCRIPT)],
        env={"PATH": str(bindir), "CALLS": str(calls), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    made = [line for line in calls.read_text().splitlines() if not line.startswith(("uname", "id"))]
    return proc, made


@pytest.fixture(autouse=True)
def needs_honcho():
    if not (ROOT / ".venv" / "bin" / "honcho").exists():
        pytest.skip("run `make setup` first: bootstrap checks for the honcho of .venv")


def test_macos_installs_overmind_flyctl_and_tmux_with_homebrew(tmp_path):
    proc, calls = bootstrap(tmp_path, "Darwin", "brew")
    assert proc.returncode == 0, proc.stderr
    assert [c for c in calls if c.startswith("brew")] == [
        "brew install overmind",
        "brew install flyctl",
        "brew install tmux",
    ]
    assert "uv sync --frozen --quiet" in calls
    assert "everything is installed" in proc.stdout


def test_macos_without_homebrew_says_what_is_missing(tmp_path):
    proc, _ = bootstrap(tmp_path, "Darwin")
    assert proc.returncode == 0
    for tool in ("overmind", "flyctl", "tmux"):
        assert f"  - {tool} (Homebrew is not installed" in proc.stdout


def test_debian_installs_tmux_with_apt_and_names_the_rest(tmp_path):
    proc, calls = bootstrap(tmp_path, "Linux", "apt-get")
    assert proc.returncode == 0, proc.stderr
    assert "apt-get install -y -qq tmux" in calls
    assert "NOT installed" in proc.stdout
    assert "  - overmind (" in proc.stdout and "  - flyctl (" in proc.stdout
    assert "  - tmux" not in proc.stdout


def test_debian_as_a_user_without_sudo_says_tmux_needs_root(tmp_path):
    proc, calls = bootstrap(tmp_path, "Linux", "apt-get", uid=1000)
    assert not [c for c in calls if c.startswith("apt-get")]
    assert "  - tmux (apt-get needs root, and sudo is not installed)" in proc.stdout


def test_linux_without_apt_says_tmux_is_not_installed(tmp_path):
    proc, _ = bootstrap(tmp_path, "Linux")
    assert "  - tmux (no apt-get here" in proc.stdout


def test_a_failing_uv_sync_fails_bootstrap(tmp_path):
    proc, _ = bootstrap(tmp_path, "Linux", "tmux", uv="exit 1")
    assert proc.returncode == 1
    assert "  - python dependencies (uv sync --frozen failed" in proc.stdout
