"""pgqueue pages: overview, jobs with filters and keyset pagination, job detail, actions, queues, workers, cron.

Everything goes through pgqueue's client (`shared.pgqueue`); the web knows no queue table. Filters are
GET parameters parsed by `web/inputs.py`; verbs are POSTs with a CSRF token; a bulk action applies to the
current filter and shows, before it runs, how many jobs it will change.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from shared import pgqueue
from shared.pgqueue.admin import ACTION_STATES, list_jobs_page, scan_floor
from web import cache, database, inputs, serializers, throughput

bp = Blueprint("pgqueue", __name__, url_prefix="/pgqueue")

STATES = inputs.JOB_STATES
ACTIONS = inputs.JOB_ACTIONS
ACTION_LABELS = {"retry": "Retry", "cancel": "Cancel", "discard": "Discard", "run_now": "Run now"}
COUNT_EXACT_UP_TO = 10_000
"""Counts are exact up to this many jobs; past it they are pgqueue's cached counts (an estimate with its
age) where the filter allows, else a lower bound (docs/web.md, "Counts")."""


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


def count_jobs(f: dict[str, Any], action: str | None = None) -> dict[str, Any]:
    """How many jobs filter `f` matches, or among them how many `action` would change.

    Counted exactly up to `COUNT_EXACT_UP_TO`. Past it, a filter on queue and state only is answered from
    pgqueue's cached counts (an estimate: `exact` false, its age in `basis`); a filter on task or search
    has no such figure, and the answer is the bound itself, said to be a lower bound.
    """
    states = ACTION_STATES[action] if action else None
    search = f.get("search")
    unindexed = f.get("task") is not None or (
        search is not None and not inputs.ASCII_DIGITS.fullmatch(str(search).strip())
    )
    with database.admin_conn("queue") as conn:
        # a filter on the task is checked job by job: counted within the listing's window of job ids
        floor = scan_floor(conn, SCAN_WINDOW) if unindexed else None
        n = pgqueue.count_matching(conn, **f, states=states, cap=COUNT_EXACT_UP_TO + 1, floor=floor)
    if floor is not None:
        shown = min(n, COUNT_EXACT_UP_TO)
        return {
            "count": shown,
            "exact": False,
            "basis": f"at least: {shown:,}{'+' if n > shown else ''} among the newest {SCAN_WINDOW:,} jobs "
            f"(ids from {floor:,}); a filter on the task is checked job by job, so older jobs were not counted",
        }
    if n <= COUNT_EXACT_UP_TO:
        return {"count": n, "exact": True, "basis": "counted now"}
    if f.get("task") is None and f.get("search") is None:
        info = snapshot()["info"]
        wanted = [s for s in (states or STATES) if f.get("state") in (None, s)]
        by_queue = snapshot()["counts"]
        estimate = sum(
            int(c.get(s, 0)) for q, c in by_queue.items() if f.get("queue") in (None, q) for s in wanted
        )
        age = info.get("age")
        if estimate > COUNT_EXACT_UP_TO:
            return {
                "count": estimate,
                "exact": False,
                "basis": f"estimate: pgqueue's cached counts, refreshed {age:.0f} s ago"
                if age is not None
                else "estimate: pgqueue's cached counts",
            }
    return {
        "count": COUNT_EXACT_UP_TO,
        "exact": False,
        "basis": f"at least: counting stopped at {COUNT_EXACT_UP_TO:,}",
    }


@bp.get("/")
@inputs.page()
def overview():
    return render_template("pgqueue/overview.html", data=overview_data(), states=STATES)


@bp.get("/overview.json")
@inputs.page()
def overview_json():
    return jsonify(overview_data())


SCAN_WINDOW = 100_000
"""A page filtered on queue, task or a task-name prefix reads at most this many job ids (27 ms at
1,000,000 jobs); the next page goes on below them (docs/web.md, "Listing")."""


def list_jobs(f: dict[str, Any], after: int | None, limit: int) -> dict[str, Any]:
    """A page of jobs: `items`, `next_after` and `scanned_from` (see `pgqueue.admin.list_jobs_page`)."""
    with database.admin_conn("queue") as conn:
        page = list_jobs_page(conn, after=after, limit=limit, scan=SCAN_WINDOW, **f)
    return {
        "items": [serializers.job(r) for r in page["rows"]],
        "next_after": page["next_after"],
        "scanned_from": page["scanned_from"],
    }


def _typed_filters() -> dict[str, str]:
    """The filter fields as typed, to show them again above the messages saying what is wrong."""
    return {k: request.args.get(k, "")[:200] for k in ("queue", "state", "task", "search")}


@bp.get("/jobs")
@inputs.declared(query_model=inputs.JobListQuery)
def jobs():
    """The listing. A filter that is not valid is a 400 that shows the form again with what is wrong,
    and the bulk buttons disabled (they would act on a filter that means nothing)."""
    try:
        q = inputs.query(inputs.JobListQuery)
    except inputs.BadInput as exc:
        return render_template(
            "pgqueue/jobs.html",
            jobs=[],
            filters=_typed_filters(),
            problems=[f"{k}: {v}" for k, v in exc.errors.items()] or [exc.message],
            valid=False,
            scanned_from=None,
            top=None,
            limit=current_app.config["PAGE_SIZE"],
            states=STATES,
            next_after=None,
            actions=ACTIONS,
            labels=ACTION_LABELS,
        ), 400
    f = q.as_filters()
    limit = q.limit or current_app.config["PAGE_SIZE"]
    problems = []
    page: dict[str, Any] = {"items": [], "next_after": None, "scanned_from": None}
    try:
        page = list_jobs(f, q.after, limit)
    except Exception as exc:
        if not database.is_timeout(exc):
            raise
        problems.append("The listing took longer than the statement timeout; narrow the filter.")
    return render_template(
        "pgqueue/jobs.html",
        jobs=page["items"],
        filters=f,
        problems=problems,
        valid=True,
        scanned_from=page["scanned_from"],
        top=q.after,
        limit=limit,
        states=STATES,
        next_after=page["next_after"],
        actions=ACTIONS,
        labels=ACTION_LABELS,
    )


@bp.get("/jobs/<id:job_id>")
@inputs.page()
def job(job_id: int):
    with database.admin_conn("queue") as conn:
        data = pgqueue.get_job(conn, job_id)
    if data is None:
        abort(404, f"There is no job {job_id}.")
    return render_template(
        "pgqueue/job.html", job=serializers.job(data), actions=ACTIONS, labels=ACTION_LABELS
    )


def apply_action(action: str, ids: list[int]) -> int:
    with database.admin_conn("queue") as conn:
        changed = getattr(pgqueue, action)(conn, ids)
    cache.clear()
    return int(changed)


def apply_bulk(action: str, f: dict[str, Any]) -> int:
    with database.admin_conn("queue", timeout_ms=60_000) as conn:
        changed = pgqueue.bulk_action(conn, action, **f)
    cache.clear()
    return int(changed)


def _back(target: str | None, default: str) -> str:
    # same-site paths only ("//host" and "/\\host" are other sites to a browser)
    target = target or ""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else default


@bp.post("/jobs/action")
@inputs.page(form_model=inputs.JobActionForm)
def jobs_action(form: inputs.JobActionForm):
    back = _back(form.back, url_for("pgqueue.jobs"))
    if not form.ids:
        flash("Select at least one job.", "error")
        return redirect(back)
    changed = apply_action(form.action, list(form.ids))
    flash(f"{ACTION_LABELS[form.action]}: {changed} of {len(form.ids)} job(s) changed.", "info")
    return redirect(back)


@bp.get("/jobs/bulk")
@inputs.page(query_model=inputs.BulkQuery)
def jobs_bulk_confirm(query: inputs.BulkQuery):
    """How many jobs the action will change (those of the filter in a state it applies to), then a POST."""
    f = query.as_filters()
    counted = count_jobs(f, query.action)
    return render_template(
        "pgqueue/bulk.html",
        action=query.action,
        label=ACTION_LABELS[query.action],
        filters=f,
        counted=counted,
        action_states=ACTION_STATES[query.action],
    )


@bp.post("/jobs/bulk")
@inputs.page(form_model=inputs.BulkQuery)
def jobs_bulk(form: inputs.BulkQuery):
    f = form.as_filters()
    changed = apply_bulk(form.action, f)
    flash(f"{ACTION_LABELS[form.action]}: {changed} job(s) changed.", "info")
    return redirect(url_for("pgqueue.jobs", **{k: v for k, v in f.items() if v}))


@bp.get("/queues")
@inputs.page()
def queues():
    data = overview_data()
    return render_template("pgqueue/queues.html", data=data, states=STATES)


def set_paused(name: str, paused: bool) -> None:
    if not pgqueue.QUEUE_NAME.fullmatch(name):
        abort(404, f"There is no queue {inputs.shown(name)}.")
    with database.admin_conn("queue") as conn:
        (pgqueue.pause_queue if paused else pgqueue.resume_queue)(conn, name)
    cache.clear()


@bp.post("/queues/pause")
@inputs.page(form_model=inputs.QueueNameForm)
def pause_named(form: inputs.QueueNameForm):
    """Pause a queue by name, before it has any job (the form under the queue list)."""
    set_paused(form.name, True)
    flash(f"Queue {form.name} paused: its jobs stay available until it is resumed.", "info")
    return redirect(_back(form.back, url_for("pgqueue.queues")))


@bp.post("/queues/<name>/pause")
@inputs.page(form_model=inputs.BackForm)
def pause(name: str, form: inputs.BackForm):
    set_paused(name, True)
    flash(f"Queue {name} paused: its jobs stay available until it is resumed.", "info")
    return redirect(_back(form.back, url_for("pgqueue.queues")))


@bp.post("/queues/<name>/resume")
@inputs.page(form_model=inputs.BackForm)
def resume(name: str, form: inputs.BackForm):
    set_paused(name, False)
    flash(f"Queue {name} resumed.", "info")
    return redirect(_back(form.back, url_for("pgqueue.queues")))


@bp.get("/workers")
@inputs.page()
def workers():
    with database.admin_conn("queue") as conn:
        rows = [serializers.plain(w) for w in pgqueue.workers(conn)]
    return render_template("pgqueue/workers.html", workers=rows)


@bp.get("/cron")
@inputs.page()
def cron():
    with database.admin_conn("queue") as conn:
        rows = [serializers.plain(c) for c in pgqueue.cron_entries(conn)]
    return render_template("pgqueue/cron.html", entries=rows)
