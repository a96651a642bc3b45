"""The JSON API under `/api/`: the same data as the pages, authenticated by HTTP Basic only.

The session cookie is never consulted here, so a browser's ambient credentials cannot authorise an API
call, and CSRF tokens do not apply (the blueprint is exempt). Errors are JSON: `{"error": ...}`, plus
`errors` (field -> message) when a body fails validation.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from shared import pgqueue
from shared.bench import experiments as bench
from web import auth, celery_info, database, openapi, params, pgqueue_views, results, serializers

bp = Blueprint("api", __name__, url_prefix="/api")

MAX_ID = 2**63 - 1


@bp.before_request
def basic_only():
    if not auth.basic_auth_ok():
        resp = jsonify(error="HTTP Basic authentication required (ADMIN_USER / ADMIN_PASSWORD)")
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = 'Basic realm="bench", charset="UTF-8"'
        return resp
    return None


def _id(value: int, what: str) -> int:
    if not 0 < value <= MAX_ID:
        abort(404, f"There is no {what} {value}.")
    return value


def _body() -> dict[str, Any]:
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        abort(400, "The body must be a JSON object.")
    return data


def unprocessable(message: str, errors: dict[str, str] | None = None):
    resp = jsonify(error=message, errors=errors or {})
    resp.status_code = 422
    return resp


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(openapi.document())


# Experiments and runs


@bp.get("/experiments")
def experiments():
    limit = params.limit_arg()
    with database.admin_conn() as conn:
        items = results.list_experiments(conn, after=params.int_arg("after"), limit=limit)
    return jsonify(serializers.page(items, limit))


@bp.post("/experiments")
def start_experiment():
    body = _body()
    mode = body.pop("mode", "managed")
    if mode not in ("managed", "attached"):
        return unprocessable("Invalid experiment spec.", {"mode": "must be managed or attached"})
    try:
        spec = bench.validate_spec(body)
    except bench.SpecError as exc:
        return unprocessable(
            "Invalid experiment spec.", {str(k): str(v) for k, v in (exc.errors or {}).items()}
        )
    try:
        experiment_id = bench.start_experiment(spec, mode=mode)
    except bench.ExperimentBusy as exc:
        abort(409, f"Another experiment is pending or running: {exc}")
    except bench.SpecError as exc:
        return unprocessable("Invalid experiment spec.", {str(k): str(v) for k, v in exc.errors.items()})
    pid = bench.launch_executor(experiment_id)
    with database.admin_conn() as conn:
        exp = results.get_experiment(conn, experiment_id)
    out = exp or {"id": experiment_id}
    out["executor_pid"] = out.get("executor_pid") or pid
    return jsonify(out), 201


@bp.get("/experiments/<int:experiment_id>")
def experiment(experiment_id: int):
    _id(experiment_id, "experiment")
    with database.admin_conn() as conn:
        exp = results.get_experiment(conn, experiment_id)
        if exp is None:
            abort(404, f"There is no experiment {experiment_id}.")
        exp["runs"] = results.list_runs(conn, experiment_id=experiment_id, limit=10_000)
    return jsonify(exp)


@bp.get("/experiments/<int:experiment_id>/progress")
def progress(experiment_id: int):
    from web import runs

    _id(experiment_id, "experiment")
    return jsonify(runs.progress_of(experiment_id))


@bp.get("/runs")
def runs_list():
    limit = params.limit_arg()
    with database.admin_conn() as conn:
        items = results.list_runs(
            conn, experiment_id=params.int_arg("experiment_id"), after=params.int_arg("after"), limit=limit
        )
    return jsonify(serializers.page(items, limit))


def _run(run_id: int) -> dict[str, Any]:
    _id(run_id, "run")
    with database.admin_conn() as conn:
        r = results.get_run(conn, run_id)
    if r is None:
        abort(404, f"There is no run {run_id}.")
    return r


@bp.get("/runs/<int:run_id>")
def run(run_id: int):
    r = _run(run_id)
    r["summary"] = results.run_summary(r)
    return jsonify(r)


@bp.get("/runs/<int:run_id>/series")
def run_series(run_id: int):
    _run(run_id)
    series = results.run_series(run_id)
    return jsonify(run_id=run_id, series=series, charts=results.charts_from_series(series))


@bp.get("/compare")
def compare():
    ids = params.ids_arg()
    if not 2 <= len(ids) <= 20:
        abort(400, "ids must name between 2 and 20 runs, e.g. ids=1,2.")
    with database.admin_conn() as conn:
        runs = results.get_runs(conn, ids)
    missing = sorted(set(ids) - {r["id"] for r in runs})
    if missing:
        abort(404, f"There is no run {', '.join(map(str, missing))}.")
    return jsonify(results.compare(ids, runs))


# pgqueue


def _strict_filters() -> dict[str, Any]:
    f, problems = pgqueue_views.job_filters()
    if problems:
        abort(400, " ".join(problems))
    return f


@bp.get("/pgqueue/overview")
def pgqueue_overview():
    return jsonify(pgqueue_views.overview_data())


@bp.get("/pgqueue/jobs")
def pgqueue_jobs():
    f = _strict_filters()
    limit = params.limit_arg()
    items = pgqueue_views.list_jobs(f, [], params.int_arg("after"), limit)
    return jsonify(serializers.page(items, limit))


@bp.get("/pgqueue/jobs/count")
def pgqueue_jobs_count():
    f = _strict_filters()
    with database.admin_conn("queue") as conn:
        n = pgqueue.count_matching(conn, **f)
    return jsonify(count=int(n), filters=f)


@bp.get("/pgqueue/jobs/<int:job_id>")
def pgqueue_job(job_id: int):
    _id(job_id, "job")
    with database.admin_conn("queue") as conn:
        data = pgqueue.get_job(conn, job_id)
    if data is None:
        abort(404, f"There is no job {job_id}.")
    return jsonify(serializers.job(data))


@bp.post("/pgqueue/jobs/actions")
def pgqueue_actions():
    body = _body()
    action = body.get("action")
    ids = body.get("ids")
    errors = {}
    if action not in pgqueue_views.ACTIONS:
        errors["action"] = f"must be one of {', '.join(pgqueue_views.ACTIONS)}"
    if (
        not isinstance(ids, list)
        or not ids
        or len(ids) > 10_000
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i <= MAX_ID for i in ids)
    ):
        errors["ids"] = "must be a non-empty list of at most 10000 positive integer job ids"
    if errors:
        return unprocessable("Invalid action.", errors)
    changed = pgqueue_views.apply_action(action, ids)
    return jsonify(action=action, changed=changed)


@bp.post("/pgqueue/jobs/bulk")
def pgqueue_bulk():
    body = _body()
    action = body.get("action")
    errors = {}
    if action not in pgqueue_views.ACTIONS:
        errors["action"] = f"must be one of {', '.join(pgqueue_views.ACTIONS)}"
    f: dict[str, Any] = {}
    for key in ("queue", "state", "task", "search"):
        value = body.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > 200):
            errors[key] = "must be a string of at most 200 characters"
        f[key] = value or None
    if isinstance(f["state"], str) and f["state"] not in pgqueue_views.STATES:
        errors["state"] = f"must be one of {', '.join(pgqueue_views.STATES)}"
    if isinstance(f["queue"], str) and not params.NAME_RE.match(f["queue"]):
        errors["queue"] = "must match ^[a-z0-9_.-]{1,64}$"
    if errors:
        return unprocessable("Invalid bulk action.", errors)
    from web import cache

    with database.admin_conn("queue", timeout_ms=60_000) as conn:
        changed = pgqueue.bulk_action(conn, action, **f)
    cache.clear()
    return jsonify(action=action, changed=int(changed), filters=f)


def _queue_names() -> set[str]:
    with database.admin_conn("queue") as conn:
        return {q["name"] for q in pgqueue.queues(conn)}


def _pause(name: str, paused: bool):
    if not params.NAME_RE.match(name) or name not in _queue_names():
        abort(404, f"There is no queue {name!r}.")
    pgqueue_views.set_paused(name, paused)
    return jsonify(queue=name, paused=paused)


@bp.post("/pgqueue/queues/<name>/pause")
def pgqueue_pause(name: str):
    return _pause(name, True)


@bp.post("/pgqueue/queues/<name>/resume")
def pgqueue_resume(name: str):
    return _pause(name, False)


@bp.get("/pgqueue/workers")
def pgqueue_workers():
    with database.admin_conn("queue") as conn:
        return jsonify(items=[serializers.plain(w) for w in pgqueue.workers(conn)])


@bp.get("/pgqueue/cron")
def pgqueue_cron():
    with database.admin_conn("queue") as conn:
        return jsonify(items=[serializers.plain(c) for c in pgqueue.cron_entries(conn)])


# Celery


@bp.get("/celery/overview")
def celery_overview():
    return jsonify(celery_info.overview())


@bp.get("/celery/tasks")
def celery_tasks():
    status = params.str_arg("status", max_len=50)
    if status is not None and status not in celery_info.TASK_STATUSES:
        abort(400, f"status must be one of {', '.join(celery_info.TASK_STATUSES)}")
    limit = params.limit_arg()
    items = celery_info.list_tasks(
        status=status,
        name=params.str_arg("name", max_len=155),
        search=params.str_arg("search", max_len=155),
        after=params.int_arg("after"),
        limit=limit,
    )
    return jsonify(serializers.page(items, limit))
