"""Operating the queue: actions on jobs, pause and resume, counts, the listing, workers and cron entries.

Every function takes the caller's SQLAlchemy or psycopg `Connection` and works in its transaction.
Actions apply to a list of ids, or (`bulk_action`) to everything the listing filters match; they
return how many jobs changed. Counts come from a cached aggregate (docs/pgqueue.md), never from a
count over the table per call.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from shared.pgqueue import queries
from shared.pgqueue.jobs import STATES, InvalidJob, _atomic, check_queue, check_state, raw_connection

ACTIONS = ("retry", "cancel", "discard", "run_now")
ACTION_STATES = {
    "retry": ("retryable", "completed", "discarded", "cancelled"),
    "run_now": ("scheduled", "retryable"),
    "cancel": ("available", "scheduled", "running", "retryable"),
    "discard": ("available", "scheduled", "running", "retryable"),
}
"""The states each action changes (the `action_*` queries' own state conditions, for counting ahead)."""
MAX_JOB_ID = 2**63 - 1
DEFAULT_COUNTS_MAX_AGE = 30.0
LIST_LIMIT_MAX = 1000
RETRY_RACES = 3
"""How often a retry is run again after a concurrent enqueue took one of its unique keys."""


def _json(value: Any) -> Any:
    # A SQLAlchemy-managed psycopg connection may hand jsonb back as text.
    return json.loads(value) if isinstance(value, str | bytes) else value


def _filters(
    queue: str | None = None,
    state: str | None = None,
    task: str | None = None,
    search: str | None = None,
) -> dict[str, Any]:
    """The listing filters as query parameters; `search` is a job id (digits) or a task-name prefix."""
    search_id = search_prefix = None
    if search is not None and str(search).strip():
        s = str(search).strip()
        # ASCII digits only: str.isdigit() accepts '²', which int() refuses.
        if s.isascii() and s.isdigit():
            search_id = int(s)
            if search_id > MAX_JOB_ID:
                raise InvalidJob(f"search names job id {s[:40]}, and job ids are at most {MAX_JOB_ID}")
        else:
            # LIKE prefix: escape the wildcards the user typed
            search_prefix = s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return {
        "queue": check_queue(queue) if queue else None,
        "state": check_state(state) if state else None,
        "task": task or None,
        "search_id": search_id,
        "search_prefix": search_prefix,
    }


def _ids(job_ids: Iterable[int] | int) -> list[int]:
    if isinstance(job_ids, int):
        return [job_ids]
    ids = [int(i) for i in job_ids]
    return ids


def _action(conn: Any, action: str, ids: list[int] | None, filters: dict[str, Any]) -> int:
    if action not in ACTIONS:
        raise InvalidJob(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    raw = raw_connection(conn)
    query, params = queries.get(f"action_{action}"), {"ids": ids, **filters}
    if action != "retry":
        with raw.cursor(row_factory=tuple_row) as cur:
            cur.execute(query, params, prepare=False)
            row = cur.fetchone()
        return int(row[0]) if row else 0
    # A job enqueued meanwhile with the key of a job being retried fails the statement at commit of
    # the enqueue; run again (in a savepoint, so the caller's transaction stays usable), the retry sees
    # that job and leaves the key's old job alone.
    for race in range(RETRY_RACES):
        try:
            with _atomic(raw), raw.cursor(row_factory=tuple_row) as cur:
                cur.execute(query, params, prepare=False)
                row = cur.fetchone()
            return int(row[0]) if row else 0
        except psycopg.errors.UniqueViolation:
            if race == RETRY_RACES - 1:
                raise
    raise AssertionError("unreachable")


def retry(conn: Any, job_ids: Iterable[int] | int) -> int:
    """Run finished or retryable jobs again now (an exhausted job gets one more attempt)."""
    return _action(conn, "retry", _ids(job_ids), _filters())


def cancel(conn: Any, job_ids: Iterable[int] | int) -> int:
    """Cancel jobs that have not finished (a running attempt's completion is then ignored)."""
    return _action(conn, "cancel", _ids(job_ids), _filters())


def discard(conn: Any, job_ids: Iterable[int] | int) -> int:
    """Discard jobs that have not finished, recording that an operator did it."""
    return _action(conn, "discard", _ids(job_ids), _filters())


def run_now(conn: Any, job_ids: Iterable[int] | int) -> int:
    """Make scheduled or retryable jobs available at once."""
    return _action(conn, "run_now", _ids(job_ids), _filters())


def bulk_action(
    conn: Any,
    action: str,
    *,
    queue: str | None = None,
    state: str | None = None,
    task: str | None = None,
    search: str | None = None,
) -> int:
    """Apply `action` (retry, cancel, discard, run_now) to every job the listing filters match."""
    return _action(conn, action, None, _filters(queue, state, task, search))


def count_matching(
    conn: Any,
    *,
    queue: str | None = None,
    state: str | None = None,
    task: str | None = None,
    search: str | None = None,
    states: Iterable[str] | None = None,
    cap: int | None = None,
    floor: int | None = None,
) -> int:
    """How many jobs the listing filters match, among `states` when given (`ACTION_STATES[action]`: the
    jobs a bulk action would change), counting no further than `cap` when given, and for a filter on the
    task or a task-name prefix only among the job ids from `floor` up when given (see `list_jobs_page`)."""
    params = {
        **_filters(queue, state, task, search),
        "states": [check_state(s) for s in states] if states is not None else None,
        "cap": int(cap) if cap is not None else None,
        "floor": int(floor) if floor is not None else None,
    }
    # One branch per unfinished state uses their indexes; a task filter reads the table either way.
    query = "count_matching_scan" if params["task"] or params["search_prefix"] else "count_matching"
    raw = raw_connection(conn)
    with raw.cursor(row_factory=tuple_row) as cur:
        cur.execute(queries.get(query), params, prepare=False)
        row = cur.fetchone()
    return int(row[0]) if row else 0


def queue_busy(conn: Any, queue: str) -> bool:
    """Whether `queue` holds a job not yet finished (available, running, scheduled or retryable).

    Cheap enough to poll while a queue drains, unlike a count.
    """
    raw = raw_connection(conn)
    with raw.cursor(row_factory=tuple_row) as cur:
        cur.execute(queries.get("queue_busy"), {"queue": check_queue(queue)})
        row = cur.fetchone()
    return bool(row and row[0])


def delete_finished(conn: Any, queue: str) -> int:
    """Delete every finished job of `queue` now, ignoring retention; return how many.

    For a caller that owns the queue, such as the benchmark between two runs; the cleaner does the same
    for every queue once a job's retention has passed.
    """
    raw = raw_connection(conn)
    with raw.cursor() as cur:
        cur.execute(queries.get("delete_finished"), {"queue": check_queue(queue)})
        return cur.rowcount


def finished_span(conn: Any, queue: str) -> tuple[float, float, int] | None:
    """The first claim and the last completion (seconds since the epoch, database clock) of the completed
    jobs of `queue`, and how many there are; None when none completed. The span of a drain that kept no
    job records, for a caller that owns the queue (the benchmark deletes the finished jobs between runs)."""
    raw = raw_connection(conn)
    with raw.cursor(row_factory=tuple_row) as cur:
        cur.execute(queries.get("finished_span"), {"queue": check_queue(queue)})
        row = cur.fetchone()
    if not row or row[0] is None or row[1] is None:
        return None
    return float(row[0]), float(row[1]), int(row[2])


def pause_queue(conn: Any, name: str) -> None:
    """Pause queue `name`: workers claim nothing from it until it is resumed (running jobs finish; jobs a
    worker claimed and has not started go back to `available`, told by NOTIFY `!recheck`)."""
    raw = raw_connection(conn)
    raw.cursor().execute(queries.get("pause_queue"), {"name": check_queue(name)})


def resume_queue(conn: Any, name: str) -> None:
    """Resume queue `name` and wake its workers."""
    raw = raw_connection(conn)
    raw.cursor().execute(queries.get("resume_queue"), {"name": check_queue(name)})


def _empty_counts() -> dict[str, int]:
    return dict.fromkeys(STATES, 0)


def refresh_counts(conn: Any) -> dict[str, Any]:
    """Recompute the cached counts now (one GROUP BY over the table); the leader calls this periodically."""
    raw = raw_connection(conn)
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("refresh_counts"))
        row = cur.fetchone()
    assert row is not None
    return {
        "counts": _json(row["counts"]),
        "refreshed_at": row["refreshed_at"],
        "duration_ms": row["duration_ms"],
    }


def counts_info(conn: Any, max_age: float | None = DEFAULT_COUNTS_MAX_AGE) -> dict[str, Any]:
    """The cached counts with their `refreshed_at`, `age` (s) and `duration_ms` of the last refresh.

    When the cache is missing or older than `max_age` seconds (no leader is running), one caller
    refreshes it (an advisory lock keeps concurrent callers from all doing so) and the others get the
    stale figures. `max_age=None` never refreshes.
    """
    raw = raw_connection(conn)
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("read_counts"))
        row = cur.fetchone()
        stale = row is None or (max_age is not None and float(row["age"]) > max_age)
        if stale and max_age is not None:
            cur.execute(queries.get("try_counts_lock"))
            locked = cur.fetchone()
            if locked and next(iter(locked.values())):
                fresh = refresh_counts(raw)
                return {**fresh, "age": 0.0}
        if row is None:
            return {"counts": {}, "refreshed_at": None, "age": None, "duration_ms": None}
        return {
            "counts": _json(row["counts"]),
            "refreshed_at": row["refreshed_at"],
            "age": float(row["age"]),
            "duration_ms": row["duration_ms"],
        }


def counts(conn: Any, max_age: float | None = DEFAULT_COUNTS_MAX_AGE) -> dict[str, dict[str, int]]:
    """Job counts `{queue: {state: n}}` (every state present) from the cached aggregate.

    Cheap on a table of millions of rows: it reads one row that the leader refreshes every few
    seconds (see `counts_info` for the age and the refresh rule).
    """
    info = counts_info(conn, max_age)
    out: dict[str, dict[str, int]] = {}
    for queue, states in (info["counts"] or {}).items():
        c = _empty_counts()
        c.update({k: int(v) for k, v in states.items()})
        out[queue] = c
    return out


def queues(conn: Any, max_age: float | None = DEFAULT_COUNTS_MAX_AGE) -> list[dict[str, Any]]:
    """Every known queue (with jobs, or paused/resumed once): name, paused, paused_at and counts."""
    by_state = counts(conn, max_age)
    raw = raw_connection(conn)
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("list_queues"))
        rows = {r["name"]: r for r in cur.fetchall()}
    names = sorted(set(by_state) | set(rows))
    return [
        {
            "name": n,
            "paused": bool(rows[n]["paused"]) if n in rows else False,
            "paused_at": rows[n]["paused_at"] if n in rows else None,
            "counts": by_state.get(n, _empty_counts()),
        }
        for n in names
    ]


def list_jobs(
    conn: Any,
    *,
    queue: str | None = None,
    state: str | None = None,
    task: str | None = None,
    search: str | None = None,
    after: int | None = None,
    limit: int = 50,
    floor: int | None = None,
) -> list[dict[str, Any]]:
    """Jobs newest first, filtered; `after` is the last id of the previous page (keyset pagination),
    and `floor`, when given, the lowest id to look at (see `list_jobs_page`)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidJob(f"limit must be an integer from 1 to {LIST_LIMIT_MAX}, got {limit!r}")
    params = {
        **_filters(queue, state, task, search),
        "after": int(after) if after is not None else None,
        "floor": int(floor) if floor is not None else None,
        "limit": limit,
    }
    raw = raw_connection(conn)
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("list_jobs"), params, prepare=False)
        rows = cur.fetchall()
    for r in rows:
        r["params"] = _json(r["params"])
        r["meta"] = _json(r["meta"])
    return rows


def scan_floor(conn: Any, scan: int, after: int | None = None) -> int | None:
    """The lowest job id of a window of `scan` ids below `after` (below the newest job without it), or
    None when the window reaches the oldest job (nothing would be left out)."""
    raw = raw_connection(conn)
    with raw.cursor(row_factory=tuple_row) as cur:
        cur.execute(queries.get("job_id_bounds"))
        lowest, highest = cur.fetchone() or (None, None)
    if highest is None:
        return None
    top = min(int(after), highest + 1) if after is not None else highest + 1
    floor = top - int(scan)
    return None if lowest is not None and floor <= lowest else floor


def list_jobs_page(
    conn: Any,
    *,
    queue: str | None = None,
    state: str | None = None,
    task: str | None = None,
    search: str | None = None,
    after: int | None = None,
    limit: int = 50,
    scan: int = 100_000,
) -> dict[str, Any]:
    """One page of the listing that reads at most `scan` job ids when no index serves the filter.

    A filter on the queue, the task or a task-name prefix is checked row by row; when few jobs match, a
    page would read the whole table (90 ms at 1,000,000 jobs for a task name that matches nothing). Such a
    page looks at the `scan` ids below `after` only. Returns `rows`, `next_after` (the cursor of the next
    page: the last row's id, or the bottom of the window when it ran out first; None at the end) and
    `scanned_from` (the lowest id the page looked at when the window bounded it, else None).
    """
    filters = _filters(queue, state, task, search)
    bounded = scan and (filters["queue"] or filters["task"] or filters["search_prefix"])
    floor = scan_floor(conn, scan, after) if bounded else None
    rows = list_jobs(
        conn, queue=queue, state=state, task=task, search=search, after=after, limit=limit, floor=floor
    )
    if len(rows) >= limit:
        next_after = rows[-1]["id"]
    elif floor is not None:
        next_after = floor
    else:
        next_after = None
    return {"rows": rows, "next_after": next_after, "scanned_from": floor}


def get_job(conn: Any, job_id: int) -> dict[str, Any] | None:
    """One job with its arguments, meta, attempts and every recorded error (with tracebacks), or None."""
    raw = raw_connection(conn)
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("get_job"), {"id": int(job_id)})
        row = cur.fetchone()
    if row is None:
        return None
    for key in ("params", "meta", "errors"):
        row[key] = _json(row[key])
    return row


def workers(conn: Any, alive_within: float = 30.0) -> list[dict[str, Any]]:
    """pgqueue's worker heartbeats (supervisors and their processes), newest first, with `alive` and `running`."""
    raw = raw_connection(conn)
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("list_workers"), {"alive_within": float(alive_within)})
        rows = cur.fetchall()
    for r in rows:
        r["info"] = _json(r["info"])
    return rows


def cron_entries(conn: Any) -> list[dict[str, Any]]:
    """The cron entries with their last tick and the next one, and `error`: why an entry does not fire.

    `error` and `failed_at` are the leader's, when it set the entry aside; an entry whose schedule the
    leader has not met yet gets its schedule's problem as `error` here. Never raises for a bad row.
    """
    from shared.pgqueue import cron

    raw = raw_connection(conn)
    with raw.cursor(row_factory=dict_row) as cur:
        cur.execute(queries.get("list_cron"))
        rows = cur.fetchall()
    now = dt.datetime.now(dt.UTC)
    for r in rows:
        r["params"] = _json(r["params"])
        r["next_tick"] = None
        try:
            sched = cron.Schedule.parse(r["schedule"])
            sched.check_fires(now)
            if r["failed_at"] is None:
                r["next_tick"] = sched.next_after(r["last_tick"])
        except Exception as exc:  # noqa: BLE001 - a bad row is shown with its error, never raised
            r["error"] = r["error"] or str(exc) or type(exc).__name__
    return rows
