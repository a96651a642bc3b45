#!/usr/bin/env bash
# make dev / dev-web / dev-celery / dev-pgqueue / dev-stop.
# Everything started here runs in a session of its own whose leader's PID is kept in $data/dev-*.pid;
# dev-stop signals those process groups (TERM, then KILL after a deadline), never processes by name.
# The new session comes from Python's os.setsid(), not setsid(1), which macOS lacks.
# A start that fails makes this script (and so make) exit non-zero; a stop asked for by dev-stop or
# Ctrl-C does not.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# The settings' data folder (shared/shared/settings.py: BENCH_DATA_DIR, else .data/ of the checkout).
data=${BENCH_DATA_DIR:-$root/.data}
py="$root/.venv/bin/python"
mkdir -p "$data"

[ -x "$py" ] || { echo "dev.sh: $py is missing; run make setup" >&2; exit 1; }

procfile_cmd() { awk -F': ' -v n="$1" '$1 == n { sub(/^[^:]*: /, ""); print }' "$root/Procfile.dev"; }

# Exec "$@" as the leader of a new session (so of a new process group, whose id is its PID).
new_session() {
  exec "$py" -c '
import os, sys
os.setsid()
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except OSError as exc:
    print(f"dev.sh: cannot run {sys.argv[1]}: {exc.strerror}", file=sys.stderr)
    sys.exit(127)
' "$@"
}

run_group() { # name, command...: run it in a new session, record its PID, wait for it, pass its failure on
  local name=$1; shift
  local pidfile="$data/dev-$name.pid" pid status=0 asked=0
  new_session "$@" &
  pid=$!
  echo "$pid" > "$pidfile"
  trap 'asked=1; kill -TERM -- -'"$pid"' 2>/dev/null || true' INT TERM
  # A trapped signal ends `wait` early; wait again until the leader itself has exited.
  while :; do
    if wait "$pid"; then status=0; else status=$?; fi
    kill -0 "$pid" 2>/dev/null || break
  done
  trap - INT TERM
  # dev-stop removes the PID file before it signals: its stop is not a failure.
  if [ ! -f "$pidfile" ] || [ "$asked" = 1 ]; then
    rm -f "$pidfile"
    return 0
  fi
  rm -f "$pidfile"
  if [ "$status" -ne 0 ]; then
    echo "dev.sh: $name exited with status $status" >&2
    return "$status"
  fi
}

# make dev's database, when DATABASE_URL is unset: the settings' own choice (shared/shared/settings.py:
# the embedded cluster of make db-up, else LOCAL_PG_ADDR), and when they find none, make db-up's cluster.
ensure_database() {
  [ -z "${DATABASE_URL:-}" ] || return 0
  if "$py" -c 'import os; from shared import settings; settings.discover_database_url(os.environ)' 2>/dev/null; then
    return 0
  fi
  echo "no PostgreSQL found: starting the embedded one (make db-up)"
  "$py" -m shared.embedded up
}

case "${1:-}" in
  database)
    ensure_database
    ;;
  start)
    if command -v overmind >/dev/null 2>&1; then
      echo "starting with overmind (make dev-stop stops it)"
      overmind start -f "$root/Procfile.dev" -D -s "$data/overmind.sock"
      echo overmind > "$data/dev-overmind.flag"
    else
      command -v honcho >/dev/null 2>&1 || { echo "dev.sh: honcho is not installed; run make setup" >&2; exit 1; }
      echo "starting with honcho (Ctrl-C or make dev-stop stops it)"
      run_group honcho honcho start -f "$root/Procfile.dev" -d "$root"
    fi
    ;;
  one)
    cmd=$(procfile_cmd "${2:-}")
    [ -n "$cmd" ] || { echo "dev.sh: no process '${2:-}' in Procfile.dev" >&2; exit 2; }
    run_group "$2" bash -c "exec $cmd"
    ;;
  stop)
    if [ -f "$data/dev-overmind.flag" ] && command -v overmind >/dev/null 2>&1; then
      overmind quit -s "$data/overmind.sock" || true
      rm -f "$data/dev-overmind.flag"
    fi
    shopt -s nullglob
    pids=()
    for f in "$data"/dev-*.pid; do
      pid=$(cat "$f")
      rm -f "$f"
      if kill -0 -- "-$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || true; pids+=("$pid"); fi
    done
    deadline=$((SECONDS + 30))
    for pid in ${pids[@]+"${pids[@]}"}; do  # (bash 3.2, macOS: an empty array is unbound under set -u)
      while kill -0 -- "-$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    done
    echo "stopped ${#pids[@]} process group(s)"
    ;;
  *) echo "usage: dev.sh database|start|one NAME|stop" >&2; exit 2 ;;
esac
