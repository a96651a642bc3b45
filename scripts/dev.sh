#!/usr/bin/env bash
# make dev / dev-web / dev-celery / dev-pgqueue / dev-stop.
# Everything started here runs in its own process group whose leader's PID is kept in .data/dev-*.pid;
# dev-stop signals those groups (TERM, then KILL after a deadline), never processes by name.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
data="$root/.data"
mkdir -p "$data"

procfile_cmd() { awk -F': ' -v n="$1" '$1 == n { sub(/^[^:]*: /, ""); print }' "$root/Procfile.dev"; }

run_group() { # name, command...: run in a new session, record the PID, wait for it
  local name=$1; shift
  setsid "$@" &
  local pid=$!
  echo "$pid" > "$data/dev-$name.pid"
  trap 'kill -TERM -- -'"$pid"' 2>/dev/null || true' INT TERM
  wait "$pid" || true
  rm -f "$data/dev-$name.pid"
}

case "${1:-}" in
  start)
    if command -v overmind >/dev/null 2>&1; then
      echo "starting with overmind (make dev-stop stops it)"
      overmind start -f "$root/Procfile.dev" -D -s "$data/overmind.sock"
      echo overmind > "$data/dev-overmind.flag"
    else
      echo "starting with honcho (Ctrl-C or make dev-stop stops it)"
      run_group honcho honcho start -f "$root/Procfile.dev" -d "$root"
    fi
    ;;
  one)
    cmd=$(procfile_cmd "$2")
    [ -n "$cmd" ] || { echo "no process '$2' in Procfile.dev" >&2; exit 2; }
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
      if kill -0 -- "-$pid" 2>/dev/null; then kill -TERM -- "-$pid" 2>/dev/null || true; pids+=("$pid"); fi
    done
    deadline=$((SECONDS + 30))
    for pid in "${pids[@]}"; do
      while kill -0 -- "-$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -f "$data"/dev-*.pid
    echo "stopped ${#pids[@]} process group(s)"
    ;;
  *) echo "usage: dev.sh start|one NAME|stop" >&2; exit 2 ;;
esac
