"""The OpenAPI 3.0 document of `/api/`, served at `/api/openapi.json`.

Every operation lists every status it can answer (400, 401, 404, 409, 422, 503 where they apply); the
schemathesis test holds the implementation to it.
"""

from __future__ import annotations

from typing import Any

ID = {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}
NULLABLE_STR = {"type": "string", "nullable": True}
NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
OBJECT = {"type": "object", "additionalProperties": True}
STATES = ["available", "scheduled", "running", "retryable", "completed", "discarded", "cancelled"]
ACTIONS = ["retry", "cancel", "discard", "run_now"]
TASK_STATUSES = ["PENDING", "STARTED", "RETRY", "FAILURE", "SUCCESS", "REVOKED"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    400: "Malformed request: a parameter or the body cannot be parsed",
    401: "HTTP Basic credentials missing or wrong",
    404: "No such object",
    409: "Conflict: another experiment is pending or running",
    422: "The body parses but its values are invalid",
    503: "The library behind this operation is not installed in this build",
}


def responses(ok: dict[str, Any], *codes: int, ok_code: int = 200) -> dict[str, Any]:
    out: dict[str, Any] = {str(ok_code): ok}
    for code in (400, 401, *codes):
        schema = ref("ValidationError") if code == 422 else ref("Error")
        out[str(code)] = _json(schema, ERRORS[code])
    return out


def q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def p(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


PAGE = [
    q(
        "after",
        {"type": "integer", "minimum": 1, "maximum": 2**62},
        "keyset cursor: next_after of the previous page",
    ),
    q("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
]
JOB_FILTERS = [
    q("queue", {"type": "string", "pattern": "^[a-z0-9_.-]{1,64}$"}),
    q("state", {"type": "string", "enum": STATES}),
    q("task", {"type": "string", "maxLength": 200}),
    q("search", {"type": "string", "maxLength": 200}, "a job id, or a task-name prefix"),
]


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_after"],
        "properties": {
            "items": {"type": "array", "items": item},
            "next_after": {"type": "integer", "nullable": True},
        },
    }


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "ValidationError": {
        "type": "object",
        "required": ["error", "errors"],
        "properties": {
            "error": {"type": "string"},
            "errors": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Experiment": {
        "type": "object",
        "required": ["id", "status", "mode", "spec", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "status": {"type": "string", "enum": ["pending", "running", "completed", "failed", "cancelled"]},
            "mode": {"type": "string", "enum": ["managed", "attached"]},
            "spec": OBJECT,
            "executor_pid": {"type": "integer", "nullable": True},
            "executor_host": NULLABLE_STR,
            "executor_machine_id": NULLABLE_STR,
            "heartbeat_at": NULLABLE_TIME,
            "error": NULLABLE_STR,
            "report_dir": NULLABLE_STR,
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": NULLABLE_TIME,
            "finished_at": NULLABLE_TIME,
            "run_count": {"type": "integer"},
            "runs": {"type": "array", "items": ref("Run")},
        },
    },
    "Run": {
        "type": "object",
        "required": ["id", "adapter", "job_count", "scheduling_mode", "status", "metrics"],
        "properties": {
            "id": {"type": "integer"},
            "experiment_id": {"type": "integer", "nullable": True},
            "case_key": {"type": "string"},
            "repetition": {"type": "integer"},
            "adapter": {"type": "string", "enum": ["celery", "pgqueue"]},
            "broker": NULLABLE_STR,
            "celery_config": NULLABLE_STR,
            "job_count": {"type": "integer"},
            "scheduling_mode": {"type": "string", "enum": ["one_by_one", "bulk"]},
            "workload": {"type": "string"},
            "workload_params": OBJECT,
            "scenario": {"type": "string"},
            "processes": {"type": "integer"},
            "slots": {"type": "integer"},
            "recording": {"type": "boolean"},
            "status": {"type": "string"},
            "error": NULLABLE_STR,
            "created_at": NULLABLE_TIME,
            "scheduling_started_at": NULLABLE_TIME,
            "scheduling_finished_at": NULLABLE_TIME,
            "first_job_started_at": NULLABLE_TIME,
            "last_job_finished_at": NULLABLE_TIME,
            "finished_at": NULLABLE_TIME,
            "metrics": OBJECT,
            "environment": OBJECT,
            "summary": OBJECT,
        },
    },
    "Chart": {
        "type": "object",
        "required": ["id", "title", "datasets"],
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "x_label": {"type": "string"},
            "y_label": {"type": "string"},
            "datasets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label", "data"],
                    "properties": {
                        "label": {"type": "string"},
                        "data": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["x", "y"],
                                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                            },
                        },
                    },
                },
            },
        },
    },
    "Series": {
        "type": "object",
        "required": ["run_id", "series", "charts"],
        "properties": {
            "run_id": {"type": "integer"},
            "series": {"type": "object", "nullable": True, "additionalProperties": True},
            "charts": {"type": "array", "items": ref("Chart")},
        },
    },
    "Progress": {
        "type": "object",
        "required": ["experiment_id", "status", "runs_total", "runs_finished"],
        "properties": {
            "experiment_id": {"type": "integer"},
            "status": {"type": "string"},
            "error": NULLABLE_STR,
            "runs_total": {"type": "integer"},
            "runs_finished": {"type": "integer"},
            "runs": {"type": "array", "items": OBJECT},
            "detail": OBJECT,
        },
    },
    "Comparison": {
        "type": "object",
        "required": ["run_ids", "runs", "rows"],
        "properties": {
            "run_ids": {"type": "array", "items": {"type": "integer"}},
            "runs": {"type": "array", "items": ref("Run")},
            "rows": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["figure", "values"],
                    "properties": {"figure": {"type": "string"}, "values": {"type": "array", "items": {}}},
                },
            },
            "report": OBJECT,
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "queue", "state"],
        "properties": {
            "id": {"type": "integer"},
            "queue": {"type": "string"},
            "state": {"type": "string", "enum": STATES},
        },
        "additionalProperties": True,
    },
    "PgqueueOverview": {
        "type": "object",
        "required": ["counts", "totals", "queues"],
        "properties": {
            "counts": {
                "type": "object",
                "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
            "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
            "counts_age_seconds": {"type": "number"},
            "queues": {"type": "array", "items": OBJECT},
            "throughput": {"nullable": True},
        },
    },
    "ActionResult": {
        "type": "object",
        "required": ["action", "changed"],
        "properties": {
            "action": {"type": "string", "enum": ACTIONS},
            "changed": {"type": "integer"},
            "filters": OBJECT,
        },
    },
    "Worker": {
        "type": "object",
        "required": ["id", "adapter"],
        "properties": {"id": {"type": "string"}, "adapter": {"type": "string"}},
        "additionalProperties": True,
    },
    "CeleryTask": {
        "type": "object",
        "required": ["id", "task_id", "status"],
        "properties": {
            "id": {"type": "integer"},
            "task_id": NULLABLE_STR,
            "status": NULLABLE_STR,
            "name": NULLABLE_STR,
            "date_done": NULLABLE_TIME,
            "worker": NULLABLE_STR,
            "retries": {"type": "integer", "nullable": True},
            "queue": NULLABLE_STR,
            "traceback": NULLABLE_STR,
        },
    },
    "CeleryOverview": {
        "type": "object",
        "required": ["depths", "inspect", "heartbeats", "sql_broker_limits"],
        "properties": {
            "depths": {"type": "array", "items": OBJECT},
            "inspect": {"type": "array", "items": OBJECT},
            "heartbeats": {"type": "array", "items": OBJECT},
            "sql_broker_limits": {"type": "string"},
            "generated_at": {"type": "string"},
        },
    },
    "ExperimentSpec": {
        "type": "object",
        "description": "An experiment spec as the benchmark library validates it, plus `mode`.",
        "properties": {"mode": {"type": "string", "enum": ["managed", "attached"]}},
        "additionalProperties": True,
    },
}


def _get(summary: str, schema: dict[str, Any], parameters: list | None = None, *codes: int, op: str) -> dict:
    return {
        "get": {
            "operationId": op,
            "summary": summary,
            "parameters": parameters or [],
            "responses": responses(_json(schema, "OK"), *codes),
        }
    }


def _post(
    summary: str, schema: dict[str, Any], body: dict[str, Any], *codes: int, op: str, ok_code: int = 200
) -> dict:
    return {
        "operationId": op,
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": responses(_json(schema, "OK"), *codes, ok_code=ok_code),
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI document (built per call: it is small)."""
    exp_id = p("experiment_id", ID)
    run_id = p("run_id", ID)
    job_id = p("job_id", ID)
    queue_name = p("name", {"type": "string", "pattern": "^[a-z0-9_.-]{1,64}$"})
    filters_body = {
        "type": "object",
        "required": ["action"],
        "properties": {
            "action": {"type": "string", "enum": ACTIONS},
            **{k: {"type": "string", "nullable": True, "maxLength": 200} for k in ("task", "search")},
            "queue": {"type": "string", "nullable": True, "pattern": "^[a-z0-9_.-]{1,64}$"},
            "state": {"type": "string", "nullable": True, "enum": STATES},
        },
    }
    paths: dict[str, Any] = {
        "/api/experiments": {
            **_get("Experiments, newest first", page_of(ref("Experiment")), PAGE, op="listExperiments"),
            "post": _post(
                "Start an experiment (its executor runs detached)",
                ref("Experiment"),
                ref("ExperimentSpec"),
                409,
                422,
                503,
                op="startExperiment",
                ok_code=201,
            ),
        },
        "/api/experiments/{experiment_id}": _get(
            "One experiment with its runs", ref("Experiment"), [exp_id], 404, op="getExperiment"
        ),
        "/api/experiments/{experiment_id}/progress": _get(
            "Status and progress of an experiment", ref("Progress"), [exp_id], 404, op="getProgress"
        ),
        "/api/runs": _get(
            "Runs, newest first",
            page_of(ref("Run")),
            [q("experiment_id", {"type": "integer", "minimum": 1, "maximum": 2**62}), *PAGE],
            op="listRuns",
        ),
        "/api/runs/{run_id}": _get("One run with every figure", ref("Run"), [run_id], 404, op="getRun"),
        "/api/runs/{run_id}/series": _get(
            "The run's series and the charts the pages draw from them",
            ref("Series"),
            [run_id],
            404,
            op="getRunSeries",
        ),
        "/api/compare": _get(
            "Side-by-side figures of 2 to 20 runs",
            ref("Comparison"),
            [
                {
                    "name": "ids",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,17}(,[1-9][0-9]{0,17}){1,19}$"},
                    "description": "comma-separated run ids",
                }
            ],
            404,
            op="compareRuns",
        ),
        "/api/pgqueue/overview": _get(
            "Counts by queue and state (cached a few seconds), queues, throughput",
            ref("PgqueueOverview"),
            [],
            503,
            op="pgqueueOverview",
        ),
        "/api/pgqueue/jobs": _get(
            "Jobs by the listing query's filters, keyset-paginated",
            page_of(ref("Job")),
            [*JOB_FILTERS, *PAGE],
            503,
            op="listJobs",
        ),
        "/api/pgqueue/jobs/count": {
            "get": {
                "operationId": "countJobs",
                "summary": "How many jobs the filter matches (what a bulk action would touch)",
                "parameters": JOB_FILTERS,
                "responses": responses(
                    _json(
                        {
                            "type": "object",
                            "required": ["count"],
                            "properties": {"count": {"type": "integer"}, "filters": OBJECT},
                        },
                        "OK",
                    ),
                    503,
                ),
            }
        },
        "/api/pgqueue/jobs/{job_id}": _get(
            "One job: arguments, attempts, errors", ref("Job"), [job_id], 404, 503, op="getJob"
        ),
        "/api/pgqueue/jobs/actions": {
            "post": _post(
                "Retry, cancel, discard or run now the given jobs",
                ref("ActionResult"),
                {
                    "type": "object",
                    "required": ["action", "ids"],
                    "properties": {
                        "action": {"type": "string", "enum": ACTIONS},
                        "ids": {"type": "array", "minItems": 1, "maxItems": 10000, "items": ID},
                    },
                },
                422,
                503,
                op="jobActions",
            )
        },
        "/api/pgqueue/jobs/bulk": {
            "post": _post(
                "Apply an action to every job the filter matches",
                ref("ActionResult"),
                filters_body,
                422,
                503,
                op="bulkAction",
            )
        },
        "/api/pgqueue/queues/{name}/pause": {
            "post": {
                "operationId": "pauseQueue",
                "summary": "Pause a queue: its jobs stay available, no worker claims them",
                "parameters": [queue_name],
                "responses": responses(_json(OBJECT, "OK"), 404, 503),
            }
        },
        "/api/pgqueue/queues/{name}/resume": {
            "post": {
                "operationId": "resumeQueue",
                "summary": "Resume a paused queue",
                "parameters": [queue_name],
                "responses": responses(_json(OBJECT, "OK"), 404, 503),
            }
        },
        "/api/pgqueue/workers": _get(
            "pgqueue workers and their heartbeats",
            {
                "type": "object",
                "required": ["items"],
                "properties": {"items": {"type": "array", "items": OBJECT}},
            },
            [],
            503,
            op="pgqueueWorkers",
        ),
        "/api/pgqueue/cron": _get(
            "Cron entries",
            {
                "type": "object",
                "required": ["items"],
                "properties": {"items": {"type": "array", "items": OBJECT}},
            },
            [],
            503,
            op="pgqueueCron",
        ),
        "/api/celery/overview": _get(
            "Queue depth per broker, workers from inspect and from heartbeats, and the SQL broker's limits",
            ref("CeleryOverview"),
            [],
            op="celeryOverview",
        ),
        "/api/celery/tasks": _get(
            "Tasks from the result table (when a run turned the result backend on), keyset-paginated",
            page_of(ref("CeleryTask")),
            [
                q("status", {"type": "string", "enum": TASK_STATUSES}),
                q("name", {"type": "string", "maxLength": 155}, "task-name prefix"),
                q("search", {"type": "string", "maxLength": 155}, "a task id"),
                *PAGE,
            ],
            op="celeryTasks",
        ),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "celery-pgqueue-benchmark admin API",
            "version": "1",
            "description": "The admin pages' data as JSON. HTTP Basic only (ADMIN_USER / ADMIN_PASSWORD); "
            "the session cookie of the pages is not accepted here.",
        },
        "servers": [{"url": "/"}],
        "security": [{"basic": []}],
        "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}, "schemas": SCHEMAS},
        "paths": paths,
    }
