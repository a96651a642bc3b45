"""The API's operations and their OpenAPI 3.1 document, generated from the models they parse with.

Each view of `/api/` is declared with `@operation(...)`: its id, its answer's model, its query and body
models (`web/inputs.py`) and the statuses it can answer beyond those every operation can. The decorator
parses the inputs before the view runs (a bad one is a 400 with the JSON error shape) and records the
declaration; `document(app)` walks the app's URL map and builds the document with apispec, every schema
taken from the pydantic models (`web/schemas.py` for answers). What every operation can answer:

- 400: a parameter it does not take, or one given twice, or a bad value (every operation refuses unknown
  parameters, so every one can answer 400);
- 401: no or wrong HTTP Basic credentials;
- 414: a request line longer than gunicorn's limit (4094 bytes), answered by gunicorn itself as a short
  HTML page before the app sees the request (docs/web.md, "OpenAPI").

404 is added for operations with a path parameter (and where a view says so), 409 and 422 where a view
says so. Nothing else is listed, because nothing else is answered (a 5xx is a bug).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from flask import Flask
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from web import inputs, schemas

REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Bad input: an unknown or repeated parameter, or a value the parameter does not take "
    "(`errors` names each one)",
    401: "HTTP Basic credentials missing or wrong",
    404: "No such object (also an id that cannot name one)",
    409: "Conflict: another experiment is pending or running",
    422: "The body parses but its values are invalid (`errors` names each field)",
}
TOO_LONG = (
    "Request line longer than 4094 bytes: answered by gunicorn itself, as an HTML page, before the app "
    "sees the request"
)
PATH_ARG = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


@dataclass(frozen=True)
class Operation:
    """What `document()` needs of one view."""

    op_id: str
    summary: str
    ok: type[BaseModel]
    status: int = 200
    query: type[inputs.Input] | None = None
    body: type[inputs.Input] | None = None
    path: dict[str, Any] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    body_schema: Callable[[], dict[str, Any]] | None = None
    example: dict[str, Any] | None = None


def operation(
    op_id: str,
    summary: str,
    ok: type[BaseModel],
    *,
    status: int = 200,
    query: type[inputs.Input] | None = None,
    body: type[inputs.Input] | None = None,
    path: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (),
    body_schema: Callable[[], dict[str, Any]] | None = None,
    example: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an API view: its inputs are parsed before it runs and passed as `query=` and `body=`.

    Every operation refuses query parameters it does not declare (none, without `query`). Path ids (an
    `<id:...>` argument ending in `_id`) past bigint are a 404 before the view runs. `body_schema`
    documents a body the view validates itself (a JSON schema with its own `$defs`), in place of `body`;
    `example` is a body the document shows (and schemathesis's examples phase sends).
    """
    op = Operation(
        op_id, summary, ok, status, query, body, dict(path or {}), tuple(errors), body_schema, example
    )

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def view(**kwargs: Any) -> Any:
            inputs.path_ids(kwargs)
            parsed = inputs.query(op.query or inputs.NoParams, blank_is_absent=False)
            if op.query is not None:
                kwargs["query"] = parsed
            if op.body is not None:
                kwargs["body"] = inputs.body(op.body)
            return fn(**kwargs)

        view.openapi_operation = op  # type: ignore[attr-defined]
        return view

    return wrap


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema without pydantic's `null` branch: an absent parameter is the null."""
    out = {k: v for k, v in schema.items() if k not in ("default", "title")}
    branches = out.pop("anyOf", None)
    if branches:
        rest = [b for b in branches if b.get("type") != "null"]
        if len(rest) == 1:
            out = {**rest[0], **out}
        else:
            out["anyOf"] = rest
    return out


def _query_parameters(model: type[inputs.Input]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        param_schema = _without_null(prop)
        description = param_schema.pop("description", "")
        out.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": param_schema,
                **({"description": description} if description else {}),
            }
        )
    return out


def _path_parameters(rule: str, op: Operation) -> tuple[str, list[dict[str, Any]]]:
    params = []
    for converter, name in PATH_ARG.findall(rule):
        if name in op.path:
            schema = TypeAdapter(op.path[name]).json_schema(ref_template=REF)
        elif converter == "id":
            schema = {"type": "integer", "minimum": 1, "maximum": inputs.MAX_BIGINT}
        else:
            schema = {"type": "string"}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    return PATH_ARG.sub(lambda m: "{" + m.group(2) + "}", rule), params


def operations(app: Flask) -> list[tuple[str, str, Operation]]:
    """(rule, method, operation) of every declared view, in the URL map's order."""
    out = []
    for rule in app.url_map.iter_rules():
        op = getattr(app.view_functions.get(rule.endpoint), "openapi_operation", None)
        if op is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.rule, method.lower(), op))
    return out


def _own_schema(spec: APISpec, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema made elsewhere (its `$defs` referenced as components): its definitions become
    components, and the schema itself is returned."""
    schema = dict(make())
    for name, definition in sorted(schema.pop("$defs", {}).items()):
        if name not in spec.components.schemas:
            spec.components.schema(name, component=definition)
    return schema


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every `@operation` view of `app`."""
    ops = operations(app)
    models: list[type[BaseModel]] = [schemas.Error]
    for _, _, op in ops:
        models += [m for m in (op.ok, op.body) if m is not None]
    unique = list(dict.fromkeys(models))
    refs, defs = models_json_schema([(m, "validation") for m in unique], ref_template=REF)
    spec = APISpec(
        title="celery-pgqueue-benchmark admin API",
        version="1",
        openapi_version="3.1.0",
        info={
            "description": (
                "The admin pages' data as JSON. HTTP Basic only (ADMIN_USER / ADMIN_PASSWORD); the "
                "session cookie of the pages is not accepted here. Every operation refuses a query "
                "parameter it does not list, a parameter given twice, and an empty value (`queue=`): "
                "all are 400, with the JSON error shape."
            )
        },
        servers=[{"url": "/"}],
        security=[{"basic": []}],
    )
    spec.components.security_scheme("basic", {"type": "http", "scheme": "basic"})
    for name, schema in sorted(defs.get("$defs", {}).items()):
        spec.components.schema(name, component=schema)

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    by_path: dict[str, dict[str, Any]] = {}
    for rule, method, op in ops:
        path, path_params = _path_parameters(rule, op)
        responses: dict[str, Any] = {str(op.status): _json(ref(op.ok), "OK")}
        codes = {400, 401, *op.errors}
        if path_params:
            codes.add(404)
        for code in sorted(codes):
            responses[str(code)] = _json(ref(schemas.Error), ERRORS[code])
        responses["414"] = {"description": TOO_LONG, "content": {"text/html": {"schema": {"type": "string"}}}}
        spec_op: dict[str, Any] = {
            "operationId": op.op_id,
            "summary": op.summary,
            "parameters": [*path_params, *(_query_parameters(op.query) if op.query else [])],
            "responses": responses,
        }
        body = (
            ref(op.body)
            if op.body is not None
            else _own_schema(spec, op.body_schema)
            if op.body_schema
            else None
        )
        if body is not None:
            content: dict[str, Any] = {"schema": body}
            if op.example is not None:
                content["example"] = op.example
            spec_op["requestBody"] = {"required": True, "content": {"application/json": content}}
        by_path.setdefault(path, {})[method] = spec_op
    for path, operations_ in by_path.items():
        spec.path(path=path, operations=operations_)
    return spec.to_dict()
