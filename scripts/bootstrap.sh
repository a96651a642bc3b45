#!/usr/bin/env bash
# make bootstrap: install the tools this platform allows, then say plainly what could not be installed.
#   everywhere:            uv (project-local under .tools/ when not on PATH), honcho (a dev dependency, in .venv)
#   macOS, with Homebrew:  overmind, flyctl, tmux
#   Debian, Ubuntu (apt):  tmux (overmind and flyctl have no apt package: make dev uses honcho instead,
#                          and flyctl installs from fly.io's instructions)
# Exit status: 1 when uv or the Python dependencies could not be installed (nothing works without them),
# 0 otherwise, even when an optional tool is missing (it is listed).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
missing=()
essential_missing=0
have() { command -v "$1" >/dev/null 2>&1; }
say() { echo "bootstrap: $*"; }

# uv: from PATH, else a project-local copy (never into the system Python: PEP 668).
if ! have uv && [ ! -x "$root/.tools/bin/uv" ]; then
  say "installing uv into $root/.tools (python3 -m venv, then pip)"
  if ! python3 -m venv "$root/.tools"; then
    missing+=("uv (python3 -m venv failed; on Debian/Ubuntu install python3-venv, or install uv from astral.sh)")
    essential_missing=1
  elif ! "$root/.tools/bin/pip" install --quiet uv; then
    missing+=("uv (pip install uv failed; install uv from astral.sh)")
    essential_missing=1
  fi
fi
uv_bin=$(command -v uv || echo "$root/.tools/bin/uv")
if [ -x "$uv_bin" ]; then
  # The Python dependencies, honcho among them (a dev dependency).
  if ! (cd "$root" && UV_PROJECT_ENVIRONMENT="$root/.venv" "$uv_bin" sync --frozen --quiet); then
    missing+=("python dependencies (uv sync --frozen failed; see its message above)")
    essential_missing=1
  fi
fi
[ -x "$root/.venv/bin/honcho" ] || missing+=("honcho (it comes with the Python dependencies)")

# Run apt-get as root, or through sudo; the package lists may be empty on a fresh machine.
apt_install() {
  local run=()
  if [ "$(id -u)" != 0 ]; then
    if have sudo; then run=(sudo); else return 2; fi
  fi
  DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq "$@" \
    || { "${run[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq "$@"; }
}

case "$(uname -s)" in
  Darwin)
    if have brew; then
      for pkg in overmind flyctl tmux; do
        if have "$pkg"; then continue; fi
        say "brew install $pkg"
        brew install "$pkg" || missing+=("$pkg (brew install $pkg failed)")
      done
    else
      for pkg in overmind flyctl tmux; do
        have "$pkg" || missing+=("$pkg (Homebrew is not installed: https://brew.sh, then make bootstrap again)")
      done
    fi
    ;;
  Linux)
    if ! have tmux; then
      if have apt-get; then
        say "apt-get install tmux"
        apt_install tmux
        case $? in
          0) ;;
          2) missing+=("tmux (apt-get needs root, and sudo is not installed)") ;;
          *) missing+=("tmux (apt-get install tmux failed)") ;;
        esac
      else
        missing+=("tmux (no apt-get here: install it with this system's package manager)")
      fi
    fi
    have overmind || missing+=("overmind (no package for this platform; make dev uses honcho instead)")
    have flyctl || have fly || missing+=("flyctl (needed only by make deploy: https://fly.io/docs/flyctl/install/)")
    ;;
  *)
    for pkg in overmind flyctl tmux; do
      have "$pkg" || missing+=("$pkg (unknown platform $(uname -s): install it by hand)")
    done
    ;;
esac

if [ ${#missing[@]} -eq 0 ]; then
  say "everything is installed"
else
  say "installed what it could; NOT installed:"
  for m in "${missing[@]}"; do echo "  - $m"; done
fi
exit "$essential_missing"
