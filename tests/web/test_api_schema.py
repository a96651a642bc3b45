"""schemathesis against `/api/openapi.json`, served by the real gunicorn: 0 failures over every operation.

The CLI (`schemathesis run`) drives its examples, coverage and fuzzing phases with every check, the
negative ones included (unknown parameters, empty values, nulls, values outside the schema must be
refused), over HTTP to `bench-web`, so gunicorn's own answers (its 414 for a long request line) are held
to the document too. The start-experiment operation is left out: it launches an executor, and
test_api_experiments covers it.
"""

from __future__ import annotations

import subprocess

import pytest

from ..conftest import OUTPUT
from ..support import VENV_BIN
from .conftest import BASIC, PASSWORD, served

EXCLUDED = ("startExperiment",)


def declared_operations() -> dict[str, object]:
    """operationId -> view, from the API module's declarations (no app needed)."""
    from web import api

    return {
        fn.openapi_operation.op_id: fn
        for fn in vars(api).values()
        if callable(fn) and hasattr(fn, "openapi_operation")
    }


@pytest.mark.slow
def test_schemathesis_finds_no_failure_in_any_api_operation(pg_server, template_db):
    report = OUTPUT / "schemathesis"
    report.mkdir(parents=True, exist_ok=True)
    with served(pg_server, template_db, "schemathesis") as (url, _):
        proc = subprocess.run(
            [
                str(VENV_BIN / "schemathesis"),
                "run",
                f"{url}/api/openapi.json",
                "--auth",
                f"admin:{PASSWORD}",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "30",
                "--seed",
                "18",
                "--workers",
                "2",
                "--request-timeout",
                "20",
                *[arg for op in EXCLUDED for arg in ("--exclude-operation-id", op)],
                "--report",
                "junit",
                "--report-dir",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=540,
            stdin=subprocess.DEVNULL,
        )
    out = proc.stdout + proc.stderr
    (report / "output.txt").write_text(out)
    assert proc.returncode == 0, out[-20000:]
    tested = len(declared_operations()) - len(EXCLUDED)
    assert f"{tested} selected" in out or f"{tested} total" in out, out[-3000:]


def test_the_document_lists_every_route_of_the_api_blueprint(app, client):
    doc = client.get("/api/openapi.json", headers=BASIC).get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule == "/api/openapi.json":
            continue
        path = rule.rule.replace("<id:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    for ops in doc["paths"].values():
        for op in ops.values():
            assert {"400", "401", "414"} <= set(op["responses"]), op["operationId"]
            assert not {code for code in op["responses"] if code.startswith("5")}, op["operationId"]
            assert ("404" in op["responses"]) == any(p["in"] == "path" for p in op["parameters"]) or op[
                "operationId"
            ] == "compareRuns", op["operationId"]


def test_every_schema_of_the_document_comes_from_a_model(client):
    """Query parameters and bodies are the models' JSON schemas: a bound in a model is in the document."""
    from web import inputs

    doc = client.get("/api/openapi.json", headers=BASIC).get_json()
    jobs = {p["name"]: p["schema"] for p in doc["paths"]["/api/pgqueue/jobs"]["get"]["parameters"]}
    assert jobs["after"]["maximum"] == inputs.MAX_BIGINT
    assert jobs["queue"]["pattern"] == inputs.QUEUE_PATTERN
    assert jobs["task"]["maxLength"] == 200 and jobs["task"]["pattern"] == inputs.NO_CONTROL_PATTERN
    tasks = {p["name"]: p["schema"] for p in doc["paths"]["/api/celery/tasks"]["get"]["parameters"]}
    assert tasks["after"]["maximum"] == inputs.MAX_INT4
    body = doc["paths"]["/api/pgqueue/jobs/bulk"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/BulkBody"}
    assert doc["components"]["schemas"]["BulkBody"]["additionalProperties"] is False
