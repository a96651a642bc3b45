#!/usr/bin/env bash
# make bootstrap: install what this platform allows; say plainly what could not be installed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
missing=()
have() { command -v "$1" >/dev/null 2>&1; }

# uv (project-local when not on PATH) and honcho (a dev dependency, in .venv) everywhere.
if ! have uv && [ ! -x "$root/.tools/bin/uv" ]; then
  python3 -m venv "$root/.tools" && "$root/.tools/bin/pip" install --quiet uv || missing+=("uv")
fi
uv_bin=$(command -v uv || echo "$root/.tools/bin/uv")
(cd "$root" && UV_PROJECT_ENVIRONMENT="$root/.venv" "$uv_bin" sync --frozen --quiet) || missing+=("python dependencies (uv sync)")
[ -x "$root/.venv/bin/honcho" ] || missing+=("honcho")

case "$(uname -s)" in
  Darwin)
    if have brew; then
      for pkg in overmind flyctl tmux; do
        have "$pkg" || brew install "$pkg" || missing+=("$pkg")
      done
    else
      missing+=("overmind, flyctl, tmux (Homebrew is not installed)")
    fi
    ;;
  Linux)
    if have apt-get; then
      if ! have tmux; then
        if [ "$(id -u)" = 0 ]; then apt-get install -y -qq tmux || missing+=("tmux")
        elif have sudo; then sudo apt-get install -y -qq tmux || missing+=("tmux")
        else missing+=("tmux (needs root for apt-get)"); fi
      fi
    else
      have tmux || missing+=("tmux (no apt-get here)")
    fi
    have overmind || missing+=("overmind (no package on this platform; make dev uses honcho instead)")
    have flyctl || missing+=("flyctl (install it from fly.io's instructions to use make deploy)")
    ;;
  *) missing+=("overmind, flyctl, tmux (unknown platform $(uname -s))") ;;
esac

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: everything is installed"
else
  echo "bootstrap: installed what it could; not installed:"
  for m in "${missing[@]}"; do echo "  - $m"; done
fi
