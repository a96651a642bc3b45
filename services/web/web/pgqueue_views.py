"""pgqueue pages: overview, jobs with filters and keyset pagination, job detail, actions, queues, workers, cron.

Everything goes through pgqueue's client (`shared.pgqueue`); the web knows no queue table. Filters are
GET parameters; verbs are POSTs with a CSRF token; a bulk action applies to the current filter and shows
its row count before it runs.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from shared import pgqueue
from web import cache, database, params, serializers, throughput

bp = Blueprint("pgqueue", __name__, url_prefix="/pgqueue")

STATES = ("available", "scheduled", "running", "retryable", "completed", "discarded", "cancelled")
ACTIONS = ("retry", "cancel", "discard", "run_now")
ACTION_LABELS = {"retry": "Retry", "cancel": "Cancel", "discard": "Discard", "run_now": "Run now"}


def job_filters() -> tuple[dict[str, Any], list[str]]:
    """The listing filters from the query string, and messages for values that cannot match anything.

    A value that is not a state or not a queue name is reported and matches no job; it is never an
    error page and never reaches SQL other than as a bound parameter.
    """
    problems: list[str] = []
    f: dict[str, Any] = {
        "queue": params.str_arg("queue", max_len=200),
        "state": params.str_arg("state", max_len=200),
        "task": params.str_arg("task", max_len=200),
        "search": params.str_arg("search", max_len=200),
    }
    if f["state"] is not None and f["state"] not in STATES:
        problems.append(f"{f['state']!r} is not a job state; use one of {', '.join(STATES)}.")
    if f["queue"] is not None and not params.NAME_RE.match(f["queue"]):
        problems.append(f"{f['queue']!r} is not a queue name (lower-case letters, digits, _ . -).")
    return f, problems


def snapshot() -> dict[str, Any]:
    """pgqueue's cached counts and its queues, kept a couple of seconds more by this process."""

    def compute() -> dict[str, Any]:
        with database.admin_conn("queue") as conn:
            info = pgqueue.counts_info(conn)
            queues = pgqueue.queues(conn, max_age=None)
        by_queue = {q: {s: int(n) for s, n in states.items()} for q, states in (info["counts"] or {}).items()}
        throughput.observe(info.get("refreshed_at"), by_queue)
        return {"info": info, "counts": by_queue, "queues": queues}

    value, _ = cache.cached("pgqueue.snapshot", current_app.config["COUNT_CACHE_SECONDS"], compute)
    return value


def overview_data() -> dict[str, Any]:
    """Counts by queue and state, queues, and throughput (shared by the page and its JSON)."""
    snap = snapshot()
    by_queue = snap["counts"]
    totals = {s: sum(int(q.get(s, 0)) for q in by_queue.values()) for s in STATES}
    info = snap["info"]
    return {
        "counts": by_queue,
        "totals": totals,
        "counts_age_seconds": round(float(info["age"]), 3) if info.get("age") is not None else None,
        "counts_refreshed_at": serializers.plain(info.get("refreshed_at")),
        "queues": [serializers.plain(q) for q in snap["queues"]],
        "throughput": throughput.rates(),
    }


@bp.get("/")
def overview():
    return render_template("pgqueue/overview.html", data=overview_data(), states=STATES)


@bp.get("/overview.json")
def overview_json():
    return jsonify(overview_data())


def list_jobs(f: dict[str, Any], problems: list[str], after: int | None, limit: int) -> list[dict[str, Any]]:
    if problems:
        return []
    with database.admin_conn("queue") as conn:
        rows = pgqueue.list_jobs(conn, after=after, limit=limit, **f)
    return [serializers.job(r) for r in rows]


@bp.get("/jobs")
def jobs():
    f, problems = job_filters()
    after = params.int_arg("after")
    limit = params.limit_arg()
    try:
        items = list_jobs(f, problems, after, limit)
    except Exception as exc:
        if not database.is_timeout(exc):
            raise
        problems.append("The listing took longer than the statement timeout; narrow the filter.")
        items = []
    next_after = items[-1]["id"] if len(items) >= limit else None
    return render_template(
        "pgqueue/jobs.html",
        jobs=items,
        filters=f,
        problems=problems,
        states=STATES,
        next_after=next_after,
        actions=ACTIONS,
        labels=ACTION_LABELS,
    )


@bp.get("/jobs/<int:job_id>")
def job(job_id: int):
    with database.admin_conn("queue") as conn:
        data = pgqueue.get_job(conn, job_id)
    if data is None:
        abort(404, f"There is no job {job_id}.")
    return render_template(
        "pgqueue/job.html", job=serializers.job(data), actions=ACTIONS, labels=ACTION_LABELS
    )


def apply_action(action: str, ids: list[int]) -> int:
    if action not in ACTIONS:
        abort(400, f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    with database.admin_conn("queue") as conn:
        changed = getattr(pgqueue, action)(conn, ids)
    cache.clear()
    return int(changed)


def _back(default: str) -> str:
    target = request.form.get("back", "")
    # same-site paths only ("//host" and "/\\host" are other sites to a browser)
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else default


@bp.post("/jobs/action")
def jobs_action():
    action = request.form.get("action", "")
    raw_ids = request.form.getlist("ids")
    ids = []
    for raw in raw_ids:
        if not raw.isdigit():
            abort(400, f"Job ids are integers, got {raw[:40]!r}.")
        ids.append(int(raw))
    if not ids:
        flash("Select at least one job.", "error")
        return redirect(_back(url_for("pgqueue.jobs")))
    changed = apply_action(action, ids)
    flash(f"{ACTION_LABELS.get(action, action)}: {changed} of {len(ids)} job(s) changed.", "info")
    return redirect(_back(url_for("pgqueue.jobs")))


@bp.route("/jobs/bulk", methods=["GET", "POST"])
def jobs_bulk():
    """GET shows how many jobs the current filter matches; POST (with CSRF) applies the action."""
    source = request.args if request.method == "GET" else request.form
    action = source.get("action", "")
    if action not in ACTIONS:
        abort(400, f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    f = {k: (source.get(k) or "").strip()[:200] or None for k in ("queue", "state", "task", "search")}
    if f["state"] is not None and f["state"] not in STATES:
        abort(400, f"{f['state']!r} is not a job state.")
    if f["queue"] is not None and not params.NAME_RE.match(f["queue"]):
        abort(400, f"{f['queue']!r} is not a queue name.")
    if request.method == "GET":
        with database.admin_conn("queue") as conn:
            n = pgqueue.count_matching(conn, **f)
        return render_template(
            "pgqueue/bulk.html", action=action, label=ACTION_LABELS[action], filters=f, count=n
        )
    with database.admin_conn("queue", timeout_ms=60_000) as conn:
        changed = pgqueue.bulk_action(conn, action, **f)
    cache.clear()
    flash(f"{ACTION_LABELS[action]}: {changed} job(s) changed.", "info")
    return redirect(url_for("pgqueue.jobs", **{k: v for k, v in f.items() if v}))


@bp.get("/queues")
def queues():
    data = overview_data()
    return render_template("pgqueue/queues.html", data=data, states=STATES)


def set_paused(name: str, paused: bool) -> None:
    if not params.NAME_RE.match(name):
        abort(404, f"There is no queue {name!r}.")
    with database.admin_conn("queue") as conn:
        (pgqueue.pause_queue if paused else pgqueue.resume_queue)(conn, name)
    cache.clear()


@bp.post("/queues/pause")
def pause_named():
    """Pause a queue by name, before it has any job (the form under the queue list)."""
    name = (request.form.get("name") or "").strip()
    if not params.NAME_RE.match(name):
        flash(f"{name[:80]!r} is not a queue name (1 to 64 of a-z, 0-9, _ . -).", "error")
        return redirect(url_for("pgqueue.queues"))
    return pause(name)


@bp.post("/queues/<name>/pause")
def pause(name: str):
    set_paused(name, True)
    flash(f"Queue {name} paused: its jobs stay available until it is resumed.", "info")
    return redirect(_back(url_for("pgqueue.queues")))


@bp.post("/queues/<name>/resume")
def resume(name: str):
    set_paused(name, False)
    flash(f"Queue {name} resumed.", "info")
    return redirect(_back(url_for("pgqueue.queues")))


@bp.get("/workers")
def workers():
    with database.admin_conn("queue") as conn:
        rows = [serializers.plain(w) for w in pgqueue.workers(conn)]
    return render_template("pgqueue/workers.html", workers=rows)


@bp.get("/cron")
def cron():
    with database.admin_conn("queue") as conn:
        rows = [serializers.plain(c) for c in pgqueue.cron_entries(conn)]
    return render_template("pgqueue/cron.html", entries=rows)
