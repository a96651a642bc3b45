"""The JSON API under `/api/`: the same data as the pages, authenticated by HTTP Basic only.

The session cookie is never consulted here, so a browser's ambient credentials cannot authorise an API
call, and CSRF tokens do not apply (the blueprint is exempt). Every view is an `@operation` (web/openapi.py):
its inputs are parsed by the models of `web/inputs.py` before it runs, and its OpenAPI document is generated
from the same models. Errors are JSON: `{"error": ...}`, plus `errors` (parameter or field -> message) for
bad input.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request

from shared import pgqueue
from shared.bench import experiments as bench
from shared.bench import spec
from web import auth, celery_info, database, inputs, pgqueue_views, results, schemas, serializers
from web.openapi import operation

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.before_request
def basic_only():
    if not auth.basic_auth_ok():
        resp = jsonify(error="HTTP Basic authentication required (ADMIN_USER / ADMIN_PASSWORD)")
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = 'Basic realm="bench", charset="UTF-8"'
        return resp
    return None


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
    from web import openapi

    doc = current_app.extensions.get("bench_openapi")
    if doc is None:
        doc = current_app.extensions["bench_openapi"] = openapi.document(current_app)
    return jsonify(doc)


# Experiments and runs


@bp.get("/experiments")
@operation(
    "listExperiments", "Experiments, newest first", schemas.page_of(schemas.Experiment), query=inputs.Paging
)
def experiments(query: inputs.Paging):
    limit = query.limit or current_app.config["PAGE_SIZE"]
    with database.admin_conn() as conn:
        items = results.list_experiments(conn, after=query.after, limit=limit)
    return jsonify(serializers.page(items, limit))


MODES = ("managed", "attached")
TINY_EXPERIMENT = {"adapters": ["pgqueue"], "jobs": 5, "processes": 1, "slots": 1, "repetitions": 1}
"""The example body of `startExperiment`: one run of five jobs on one pgqueue slot (a few seconds)."""


def experiment_body_schema() -> dict[str, Any]:
    """What `POST /api/experiments` takes: the benchmark library's spec (its cases, or a matrix), each
    form with `mode` beside it; the view takes `mode` off and validates the rest with `validate_spec`."""
    schema = spec.request_schema()
    for name in ("Spec", "Matrix"):
        props = schema["$defs"][name].setdefault("properties", {})
        props["mode"] = {
            "enum": list(MODES),
            "default": "managed",
            "description": "managed: the executor starts the workers; attached: it uses running ones",
        }
    return schema


@bp.post("/experiments")
@operation(
    "startExperiment",
    "Start an experiment (its executor runs detached)",
    schemas.Experiment,
    status=201,
    errors=(409, 422),
    body_schema=experiment_body_schema,
    example=TINY_EXPERIMENT,
)
def start_experiment():
    body = _body()
    mode = body.pop("mode", "managed")
    if mode not in MODES:
        return unprocessable("Invalid experiment spec.", {"mode": "must be managed or attached"})
    try:
        validated = bench.validate_spec(body)
    except bench.SpecError as exc:
        return unprocessable(
            "Invalid experiment spec.", {str(k): str(v) for k, v in (exc.errors or {}).items()}
        )
    try:
        experiment_id = bench.start_experiment(validated, mode=mode)
    except bench.ExperimentBusy as exc:
        abort(409, f"Another experiment is pending or running: {exc}")
    except bench.SpecError as exc:
        return unprocessable("Invalid experiment spec.", {str(k): str(v) for k, v in exc.errors.items()})
    from web import runs

    pid = runs.launch(experiment_id)
    with database.admin_conn() as conn:
        exp = results.get_experiment(conn, experiment_id)
    out = exp or {"id": experiment_id}
    out["executor_pid"] = out.get("executor_pid") or pid
    return jsonify(out), 201


@bp.get("/experiments/<id:experiment_id>")
@operation("getExperiment", "One experiment with its runs", schemas.Experiment)
def experiment(experiment_id: int):
    with database.admin_conn() as conn:
        exp = results.get_experiment(conn, experiment_id)
        if exp is None:
            abort(404, f"There is no experiment {experiment_id}.")
        exp["runs"] = results.list_runs(conn, experiment_id=experiment_id, limit=10_000)
    return jsonify(exp)


@bp.get("/experiments/<id:experiment_id>/progress")
@operation("getProgress", "Status and progress of an experiment", schemas.Progress)
def progress(experiment_id: int):
    from web import runs

    return jsonify(runs.progress_of(experiment_id))


@bp.get("/runs")
@operation("listRuns", "Runs, newest first", schemas.page_of(schemas.Run), query=inputs.RunsQuery)
def runs_list(query: inputs.RunsQuery):
    limit = query.limit or current_app.config["PAGE_SIZE"]
    with database.admin_conn() as conn:
        items = results.list_runs(conn, experiment_id=query.experiment_id, after=query.after, limit=limit)
    return jsonify(serializers.page(items, limit))


def _run(run_id: int) -> dict[str, Any]:
    with database.admin_conn() as conn:
        r = results.get_run(conn, run_id)
    if r is None:
        abort(404, f"There is no run {run_id}.")
    return r


@bp.get("/runs/<id:run_id>")
@operation("getRun", "One run with every figure", schemas.Run)
def run(run_id: int):
    r = _run(run_id)
    r["summary"] = results.run_summary(r)
    return jsonify(r)


@bp.get("/runs/<id:run_id>/series")
@operation("getRunSeries", "The run's series and the charts the pages draw from them", schemas.Series)
def run_series(run_id: int):
    _run(run_id)
    series = results.run_series(run_id)
    return jsonify(run_id=run_id, series=series, charts=results.charts_from_series(series))


@bp.get("/compare")
@operation(
    "compareRuns",
    "Side-by-side figures of 2 to 20 runs",
    schemas.Comparison,
    query=inputs.CompareQuery,
    errors=(404,),
)
def compare(query: inputs.CompareQuery):
    with database.admin_conn() as conn:
        runs = results.get_runs(conn, query.ids)
    missing = sorted(set(query.ids) - {r["id"] for r in runs})
    if missing:
        abort(404, f"There is no run {', '.join(map(str, missing))}.")
    return jsonify(results.compare(query.ids, runs))


# pgqueue


@bp.get("/pgqueue/overview")
@operation(
    "pgqueueOverview",
    "Counts by queue and state (cached a few seconds), queues, throughput",
    schemas.PgqueueOverview,
)
def pgqueue_overview():
    return jsonify(pgqueue_views.overview_data())


@bp.get("/pgqueue/jobs")
@operation(
    "listJobs",
    "Jobs by the listing query's filters, keyset-paginated; a page filtered on queue, task or a task-name "
    "prefix reads at most 100,000 job ids (`scanned_from`), and `next_after` goes on below them",
    schemas.JobPage,
    query=inputs.JobListQuery,
)
def pgqueue_jobs(query: inputs.JobListQuery):
    limit = query.limit or current_app.config["PAGE_SIZE"]
    return jsonify(pgqueue_views.list_jobs(query.as_filters(), query.after, limit))


@bp.get("/pgqueue/jobs/count")
@operation(
    "countJobs",
    "How many jobs the filter matches: exact up to a bound, an estimate past it (`exact`, `basis`)",
    schemas.JobCount,
    query=inputs.JobFilters,
)
def pgqueue_jobs_count(query: inputs.JobFilters):
    f = query.as_filters()
    return jsonify(**pgqueue_views.count_jobs(f), filters=f)


@bp.get("/pgqueue/jobs/<id:job_id>")
@operation("getJob", "One job: arguments, attempts, errors", schemas.Job)
def pgqueue_job(job_id: int):
    with database.admin_conn("queue") as conn:
        data = pgqueue.get_job(conn, job_id)
    if data is None:
        abort(404, f"There is no job {job_id}.")
    return jsonify(serializers.job(data))


@bp.post("/pgqueue/jobs/actions")
@operation(
    "jobActions",
    "Retry, cancel, discard or run now the given jobs",
    schemas.ActionResult,
    body=inputs.JobActionsBody,
)
def pgqueue_actions(body: inputs.JobActionsBody):
    changed = pgqueue_views.apply_action(body.action, list(body.ids))
    return jsonify(action=body.action, changed=changed)


@bp.post("/pgqueue/jobs/bulk")
@operation(
    "bulkAction",
    "Apply an action to every job the filter matches",
    schemas.ActionResult,
    body=inputs.BulkBody,
)
def pgqueue_bulk(body: inputs.BulkBody):
    f = body.as_filters()
    changed = pgqueue_views.apply_bulk(body.action, f)
    return jsonify(action=body.action, changed=changed, filters=f)


def _pause(name: str, paused: bool):
    with database.admin_conn("queue") as conn:
        known = {q["name"] for q in pgqueue.queues(conn)}
    if not pgqueue.QUEUE_NAME.fullmatch(name) or name not in known:
        abort(404, f"There is no queue {inputs.shown(name)}.")
    pgqueue_views.set_paused(name, paused)
    return jsonify(queue=name, paused=paused)


@bp.post("/pgqueue/queues/<name>/pause")
@operation(
    "pauseQueue",
    "Pause a queue: its jobs stay available, no worker claims them",
    schemas.QueueState,
    path={"name": inputs.QueueName},
)
def pgqueue_pause(name: str):
    return _pause(name, True)


@bp.post("/pgqueue/queues/<name>/resume")
@operation("resumeQueue", "Resume a paused queue", schemas.QueueState, path={"name": inputs.QueueName})
def pgqueue_resume(name: str):
    return _pause(name, False)


@bp.get("/pgqueue/workers")
@operation("pgqueueWorkers", "pgqueue workers and their heartbeats", schemas.Items)
def pgqueue_workers():
    with database.admin_conn("queue") as conn:
        return jsonify(items=[serializers.plain(w) for w in pgqueue.workers(conn)])


@bp.get("/pgqueue/cron")
@operation("pgqueueCron", "Cron entries", schemas.Items)
def pgqueue_cron():
    with database.admin_conn("queue") as conn:
        return jsonify(items=[serializers.plain(c) for c in pgqueue.cron_entries(conn)])


# Celery


@bp.get("/celery/overview")
@operation(
    "celeryOverview",
    "Queue depth per broker, workers from inspect and from heartbeats, and the SQL broker's limits",
    schemas.CeleryOverview,
)
def celery_overview():
    return jsonify(celery_info.overview())


@bp.get("/celery/tasks")
@operation(
    "celeryTasks",
    "Tasks from the result table (when a run turned the result backend on), keyset-paginated",
    schemas.page_of(schemas.CeleryTask),
    query=inputs.CeleryTasksQuery,
)
def celery_tasks(query: inputs.CeleryTasksQuery):
    limit = query.limit or current_app.config["PAGE_SIZE"]
    items = celery_info.list_tasks(
        status=query.status, name=query.name, search=query.search, after=query.after, limit=limit
    )
    return jsonify(serializers.page(items, limit))
