"""schemathesis against `/api/openapi.json`, served by the real gunicorn: 0 failures over every operation.

The CLI (`schemathesis run`) drives its examples, coverage and fuzzing phases with every check, the
negative ones included (unknown parameters, empty values, nulls, values outside the schema must be
refused), over HTTP to `bench-web`, so gunicorn's own answers (its 414 for a long request line) are held
to the document too. Starting an experiment runs its examples phase only: the document's example, a
tiny experiment, which the test then follows to its end. Fuzzing it would start whatever valid spec the
generator drew (two million jobs are valid); its bad bodies are walked by test_hostile_input and
test_api_experiments.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared import pgqueue, settings

from ..conftest import OUTPUT
from ..support import VENV_BIN, wait_until
from .conftest import BASIC, PASSWORD, served

START = "startExperiment"


def declared_operations() -> dict[str, object]:
    """operationId -> view, from the API module's declarations (no app needed)."""
    from web import api

    return {
        fn.openapi_operation.op_id: fn
        for fn in vars(api).values()
        if inspect.isfunction(fn) and hasattr(fn, "openapi_operation")
    }


def schemathesis(url: str, report: Path, *args: str, parameters: dict[str, object] | None = None) -> str:
    """`schemathesis run` on the served document with every check; its output (asserted 0 failures).
    `parameters` fixes some parameters to values naming rows that exist (else every path id is a 404)."""
    report.mkdir(parents=True, exist_ok=True)
    config = report / "schemathesis.toml"
    lines = [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in (parameters or {}).items()]
    config.write_text("\n".join(["[parameters]", *lines]) + "\n" if lines else "")
    proc = subprocess.run(
        [
            str(VENV_BIN / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{url}/api/openapi.json",
            "--auth",
            f"admin:{PASSWORD}",
            "--checks",
            "all",
            "--seed",
            "18",
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--report",
            "junit",
            "--report-dir",
            str(report),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=540,
        stdin=subprocess.DEVNULL,
        cwd=report,
    )
    out = proc.stdout + proc.stderr
    (report / "output.txt").write_text(out)
    assert proc.returncode == 0, out[-20000:]
    return out


def _get(url: str) -> dict:
    req = urllib.request.Request(url, headers=BASIC)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@pytest.mark.slow
def test_schemathesis_finds_no_failure_in_any_api_operation(pg_server, template_db):
    operations = len(declared_operations())
    with served(pg_server, template_db, "schemathesis") as (url, database_url):
        # First the example of startExperiment: a tiny experiment, followed to its end.
        out = schemathesis(
            url, OUTPUT / "schemathesis" / "start", "--phases", "examples", "--include-operation-id", START
        )
        assert f"Selected: 1/{operations}" in out, out[-3000:]
        (experiment,) = _get(f"{url}/api/experiments")["items"]  # the example started exactly one
        progress_url = f"{url}/api/experiments/{experiment['id']}/progress"
        wait_until(
            lambda: _get(progress_url)["status"] in ("completed", "failed", "cancelled"),
            180,
            message="the example experiment to end",
        )
        progress = _get(progress_url)
        assert progress["status"] == "completed", progress
        assert progress["runs_finished"] == progress["runs_total"] == 1
        run_id = progress["runs"][0]["id"]

        # Then every other operation, its path ids naming rows that exist: that experiment, its run, a job.
        engine = sa.create_engine(settings.sqlalchemy_url(database_url))
        with engine.begin() as conn:
            job_id = pgqueue.enqueue(conn, "noop", {}, queue="schemathesis")
            pgqueue.resume_queue(conn, "schemathesis")  # the queue's row: a queue the API knows
        engine.dispose()
        out = schemathesis(
            url,
            OUTPUT / "schemathesis" / "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "30",
            # One worker: CPython 3.11.7 can fail "AST constructor recursion depth mismatch" when two threads
            # compile at once (fixed in 3.11.8), and schemathesis' workers are threads.
            "--workers",
            "1",
            "--exclude-operation-id",
            START,
            parameters={
                "path.experiment_id": experiment["id"],
                "path.run_id": run_id,
                "path.job_id": job_id,
                "path.name": "schemathesis",
                "query.ids": f"{run_id},{run_id}",
            },
        )
        assert f"Selected: {operations - 1}/{operations}" in out, out[-3000:]
        assert "Missing test data" not in out, out[-3000:]


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


def test_the_experiment_body_is_the_benchmark_librarys_spec_schema(client):
    from shared.bench import spec

    doc = client.get("/api/openapi.json", headers=BASIC).get_json()
    start = doc["paths"]["/api/experiments"]["post"]
    library = spec.request_schema()
    assert start["requestBody"]["content"]["application/json"]["schema"] == {
        k: v for k, v in library.items() if k != "$defs"
    }
    components = doc["components"]["schemas"]
    for name, definition in library["$defs"].items():
        mine = dict(components[name])
        if name in ("Spec", "Matrix"):  # the one addition: `mode`, which the API takes beside the spec
            props = dict(mine["properties"])
            assert props.pop("mode")["enum"] == ["managed", "attached"]
            mine["properties"] = props
        assert mine == definition, name
    assert set(start["responses"]) == {"201", "400", "401", "409", "414", "422"}
