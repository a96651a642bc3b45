"""schemathesis against `/api/openapi.json`: no 5xx, every response as the document says.

One test per operation (each on a fresh database), the start-experiment operation excluded: it launches an
executor, and its own tests cover it. Examples are bounded so the whole file takes seconds. (schemathesis's
pytest integration, `from_fixture`, does not run under pytest 9, so the strategy is driven by Hypothesis here.)
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck

from web import openapi

from .conftest import BASIC


@pytest.fixture
def app(module_app):
    """Operations may change rows (pause, actions) but no test reads another's: one database for the module."""
    return module_app


EXCLUDED = {"startExperiment"}
OPERATIONS = sorted(
    op["operationId"]
    for ops in openapi.document()["paths"].values()
    for op in ops.values()
    if op["operationId"] not in EXCLUDED
)


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_api_operation_matches_its_openapi_document(app, operation_id):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, headers=BASIC)
    (operation,) = [
        r.ok() for r in schema.get_all_operations() if schema.get_operation_id(r.ok()) == operation_id
    ]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=8,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        case.call_and_validate(headers=BASIC)

    check()


def test_the_document_lists_every_route_of_the_api_blueprint(app, client):
    doc = client.get("/api/openapi.json", headers=BASIC).get_json()
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule == "/api/openapi.json":
            continue
        path = rule.rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    for ops in doc["paths"].values():
        for op in ops.values():
            assert {"400", "401"} <= set(op["responses"]), op["operationId"]
