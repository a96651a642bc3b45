"""Every input of the web service parsed at the edge: query strings, form fields, JSON bodies, path ids.

One set of pydantic models describes what each route takes; the pages, the `.json` routes and the API
parse with them, and the OpenAPI document is generated from them (`web/openapi.py`). The rules, the same
everywhere (docs/web.md, "Input"):

- Text refuses control characters (NUL first: PostgreSQL cannot store it in `text`) and is bounded.
- Integers are written in ASCII digits only (`int()` accepts '٣' and '1_000'; `str.isdigit()` accepts '²',
  which `int()` refuses) and bounded to the column they are compared with (bigint, or int4 for Celery's
  result table), so no value reaches SQL that PostgreSQL would refuse.
- Unknown parameters are refused, and so is a parameter given twice that takes one value.
- Empty values: the API refuses them (`queue=` is not a queue name); pages take a blank field as "no
  filter", since an HTML form sends every field it has.
- An id in a path (or in `ids=` of a comparison) that cannot name a row is a 404, like one that names no
  row; any other bad value is a 400 that says which parameter, what it must be, and what it got.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

from flask import abort, request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError
from werkzeug.routing import BaseConverter

from shared import pgqueue

MAX_BIGINT = 2**63 - 1
MAX_INT4 = 2**31 - 1
SHOWN = 40
"""At most this many characters of a bad value are quoted back."""

ASCII_DIGITS = re.compile(r"[0-9]+")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"
QUEUE_PATTERN = pgqueue.QUEUE_NAME.pattern

JOB_STATES = pgqueue.STATES
JOB_ACTIONS = pgqueue.ACTIONS
TASK_STATUSES = ("PENDING", "STARTED", "RETRY", "FAILURE", "SUCCESS", "REVOKED")
"""Celery's task states as its result table stores them."""


def shown(value: Any) -> str:
    """A bad value quoted back safely: escaped control characters, at most `SHOWN` characters."""
    text = value if isinstance(value, str) else str(value)
    cut = text[:SHOWN]
    return ascii(cut) if cut == text else ascii(cut) + "…"


class BadInput(Exception):
    """Input that the route's model refuses: answered with 400 and one message per field."""

    def __init__(self, message: str, errors: dict[str, str]) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors

    def __str__(self) -> str:
        return self.message


# Field types


def _no_control(value: str) -> str:
    m = CONTROL.search(value)
    if m:
        raise PydanticCustomError(
            "control_character",
            "must not contain control characters; found U+{code} at position {pos}",
            {"code": f"{ord(m.group()):04X}", "pos": m.start()},
        )
    return value


def _text(max_length: int) -> Any:
    return Field(min_length=1, max_length=max_length, json_schema_extra={"pattern": NO_CONTROL_PATTERN})


# Text of 1 to N characters without control characters, one alias per bound the routes use.
Text155 = Annotated[str, _text(155), AfterValidator(_no_control)]
"""Celery's task names and ids (its columns are varchar(155))."""
Text200 = Annotated[str, _text(200), AfterValidator(_no_control)]
Text2000 = Annotated[str, _text(2000), AfterValidator(_no_control)]


def _ascii_int(value: Any) -> Any:
    if isinstance(value, str):
        if not ASCII_DIGITS.fullmatch(value):
            raise PydanticCustomError(
                "ascii_integer",
                "must be a whole number written in the digits 0-9, got {got}",
                {"got": shown(value)},
            )
        return int(value)
    return value


# Integers from a query string or a form: ASCII digits, bounded to the column they are compared with.
BigId = Annotated[int, Field(ge=1, le=MAX_BIGINT), BeforeValidator(_ascii_int)]
Int4Id = Annotated[int, Field(ge=1, le=MAX_INT4), BeforeValidator(_ascii_int)]
PageSize = Annotated[int, Field(ge=1, le=500), BeforeValidator(_ascii_int)]


BodyId = Annotated[int, Strict(), Field(ge=1, le=MAX_BIGINT)]
"""A row id in a JSON body: a JSON integer (not a string, float or boolean) within bigint."""


def _queue_name(value: str) -> str:
    if not pgqueue.QUEUE_NAME.fullmatch(value):
        raise PydanticCustomError(
            "queue_name",
            "is not a queue name (1 to 64 of a-z, 0-9, '_', '.', '-'), got {got}",
            {"got": shown(value)},
        )
    return value


QueueName = Annotated[str, Field(pattern=QUEUE_PATTERN), AfterValidator(_queue_name)]
JobState = Literal[JOB_STATES]  # type: ignore[valid-type]
JobAction = Literal[JOB_ACTIONS]  # type: ignore[valid-type]
TaskStatus = Literal[TASK_STATUSES]  # type: ignore[valid-type]


def _search(value: str) -> str:
    if ASCII_DIGITS.fullmatch(value) and int(value) > MAX_BIGINT:
        raise PydanticCustomError(
            "job_id_range", "names a job id, and job ids are at most {high}", {"high": MAX_BIGINT}
        )
    return value


JobSearch = Annotated[
    str,
    _text(200),
    AfterValidator(_no_control),
    AfterValidator(_search),
    Field(description="a job id (ASCII digits), or else a task-name prefix"),
]


def _id_list(value: Any) -> Any:
    """`ids=1,2` and `ids=1&ids=2` alike: a list of ints (unbounded: an id past bigint names no row)."""
    parts = value if isinstance(value, list) else [value]
    out: list[int] = []
    for raw in parts:
        if not isinstance(raw, str):
            return value  # a list of ints already (tests, callers)
        for part in raw.split(","):
            if not ASCII_DIGITS.fullmatch(part):
                raise PydanticCustomError(
                    "run_ids",
                    "must be run ids in the digits 0-9, separated by commas, got {got}",
                    {"got": shown(part)},
                )
            out.append(int(part))
    return out


RunIds = Annotated[
    list[int],
    BeforeValidator(_id_list),
    Field(min_length=2, max_length=20),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{1,20}(,[0-9]{1,20}){1,19}$",
            "description": "2 to 20 run ids, comma-separated",
        }
    ),
]


# Models


class Input(BaseModel):
    """A route's inputs: unknown names are refused, values are never coerced across types."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    IGNORED: ClassVar[frozenset[str]] = frozenset()
    """Names a route receives but does not read (a form's CSRF token, checked by Flask-WTF)."""


class NoParams(Input):
    """A route that takes no parameter: any one given is refused (it would be silently ignored)."""


class Paging(Input):
    after: BigId | None = Field(None, description="keyset cursor: next_after of the previous page")
    limit: PageSize | None = Field(None, description="page size (default 50)")


class JobFilters(Input):
    """The listing filters of pgqueue's jobs (pages, bulk actions, counts, API)."""

    queue: QueueName | None = None
    state: JobState | None = None
    task: Text200 | None = Field(None, description="exact task name")
    search: JobSearch | None = None

    def as_filters(self) -> dict[str, Any]:
        return {"queue": self.queue, "state": self.state, "task": self.task, "search": self.search}


class JobListQuery(JobFilters, Paging):
    pass


class BulkQuery(JobFilters):
    """The bulk confirmation (GET) and the bulk form (POST): an action and the filter it applies to."""

    action: JobAction
    IGNORED: ClassVar[frozenset[str]] = frozenset({"csrf_token"})


class JobActionForm(Input):
    """The selected jobs' form on the jobs and job pages."""

    action: JobAction
    ids: list[BigId] = Field(default_factory=list, max_length=10_000)
    back: Text2000 | None = None
    IGNORED: ClassVar[frozenset[str]] = frozenset({"csrf_token"})


class QueueNameForm(Input):
    name: QueueName
    back: Text2000 | None = None
    IGNORED: ClassVar[frozenset[str]] = frozenset({"csrf_token"})


class BackForm(Input):
    """A POST whose only field is where to go afterwards (pause and resume buttons)."""

    back: Text2000 | None = None
    IGNORED: ClassVar[frozenset[str]] = frozenset({"csrf_token"})


class RunsQuery(Paging):
    experiment_id: BigId | None = None


class CompareQuery(Input):
    ids: RunIds


class ComparePickQuery(Input):
    """`/runs/compare`: no ids shows the picker; otherwise the comparison's rules apply."""

    ids: RunIds | None = None


class CeleryTasksQuery(Input):
    status: TaskStatus | None = None
    name: Text155 | None = Field(None, description="task-name prefix")
    search: Text155 | None = Field(None, description="a task id")
    # Celery's result table keys its rows with an int4.
    after: Int4Id | None = Field(None, description="keyset cursor: next_after of the previous page")
    limit: PageSize | None = Field(None, description="page size (default 50)")


class JobActionsBody(Input):
    action: JobAction
    ids: list[BodyId] = Field(min_length=1, max_length=10_000)


class BulkBody(Input):
    action: JobAction
    queue: QueueName | None = None
    state: JobState | None = None
    task: Text200 | None = None
    search: JobSearch | None = None

    def as_filters(self) -> dict[str, Any]:
        return {"queue": self.queue, "state": self.state, "task": self.task, "search": self.search}


# Parsing

M = TypeVar("M", bound=Input)


def _is_list(model: type[Input], name: str) -> bool:
    """Whether the field takes a list (through `X | None` and `Annotated[...]` alike)."""

    def takes_list(t: Any) -> bool:
        if t is list or get_origin(t) is list:
            return True
        if get_origin(t) is Annotated:
            return takes_list(get_args(t)[0])
        return any(takes_list(a) for a in get_args(t)) if get_origin(t) is not None else False

    return takes_list(model.model_fields[name].annotation)


def _describe(model: type[Input], err: Mapping[str, Any], where: str) -> tuple[str, str]:
    loc = err.get("loc") or ()
    name = str(loc[0]) if loc else "body"
    kind = err.get("type")
    got = err.get("input")
    if kind == "extra_forbidden":
        takes = [n for n in model.model_fields]
        what = f"takes {', '.join(takes)}" if takes else "takes no parameter"
        return name, f"is not a parameter of {where}, which {what}"
    if kind == "missing":
        return name, "is required"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return name, f"must be one of {expected.replace(' or ', ', ')}, got {shown(got)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return name, f"must be a whole number (a JSON integer), got {shown(got)}"
    if kind in ("less_than_equal", "greater_than_equal"):
        field = model.model_fields.get(name)
        bounds = _bounds(field)
        if bounds:
            return name, f"must be from {bounds[0]} to {bounds[1]}, got {shown(got)}"
    message = str(err.get("msg", "is invalid"))
    if kind in ("string_too_long", "string_too_short", "too_long", "too_short", "string_type", "list_type"):
        message = message[0].lower() + message[1:]
    sub = ".".join(str(p) for p in loc[1:])
    return name, (f"item {sub}: {message}" if sub else message)


def _bounds(field: Any) -> tuple[int, int] | None:
    low = high = None
    for meta in getattr(field, "metadata", ()) or ():
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    for arg in get_args(getattr(field, "annotation", None)):
        for meta in getattr(arg, "__metadata__", ()):
            low = getattr(meta, "ge", low)
            high = getattr(meta, "le", high)
    return (low, high) if low is not None and high is not None else None


def validate(model: type[M], data: Mapping[str, Any], where: str) -> M:
    """`data` as `model`, or `BadInput` with one message per field."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors(include_url=False):
            name, message = _describe(model, err, where)
            errors.setdefault(name, message)
        summary = "; ".join(f"{k} {v}" for k, v in errors.items())
        raise BadInput(f"Invalid input to {where}: {summary}.", errors) from None


def from_multidict(model: type[M], source: Any, where: str, *, blank_is_absent: bool) -> M:
    """Query string or form fields as `model`: one value per name unless the field is a list."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in source:
        if name in model.IGNORED:
            continue
        values = source.getlist(name)
        if blank_is_absent:
            values = [v for v in values if v != ""]
            if not values:
                continue
        if name in model.model_fields and _is_list(model, name):
            data[name] = values
        elif len(values) > 1:
            errors[name] = f"is given {len(values)} times; give it once"
        else:
            data[name] = values[0]
    if errors:
        summary = "; ".join(f"{k} {v}" for k, v in errors.items())
        raise BadInput(f"Invalid input to {where}: {summary}.", errors)
    return validate(model, data, where)


def query(model: type[M], *, blank_is_absent: bool = True) -> M:
    """The request's query string as `model` (pages: a blank field is no filter)."""
    return from_multidict(model, request.args, request.path, blank_is_absent=blank_is_absent)


def form(model: type[M]) -> M:
    """The request's form fields as `model` (a blank field is an absent one, as on pages)."""
    return from_multidict(model, request.form, request.path, blank_is_absent=True)


def body(model: type[M]) -> M:
    """The request's JSON body as `model`; a body that is not a JSON object is a 400 too."""
    data = request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise BadInput("The body must be a JSON object.", {})
    return validate(model, data, request.path)


def row_id(value: int, what: str) -> int:
    """A path id that can name a row; past bigint it names none, which is a 404 like any missing row."""
    if not 0 < value <= MAX_BIGINT:
        abort(404, f"There is no {what} {value}.")
    return value


def path_ids(kwargs: Mapping[str, Any]) -> None:
    """404 for every `<id:..._id>` path argument that cannot name a row (`run_id` -> "There is no run")."""
    for name, value in kwargs.items():
        if name.endswith("_id") and isinstance(value, int):
            row_id(value, name[: -len("_id")].replace("_", " "))


class IdConverter(BaseConverter):
    """`<id:name>`: a row id in ASCII digits (werkzeug's `int` takes any Unicode decimal digit).

    Up to 25 digits reach the view, which answers 404 for an id past bigint (`row_id`); a longer run of
    digits matches no route, also a 404.
    """

    regex = r"[0-9]{1,25}"
    part_isolating = True

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


def page(
    query_model: type[Input] | None = None, form_model: type[Input] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a page's inputs: parsed before the view runs, passed as `query=` and `form=` (on POST).

    A page that declares no query model refuses every query parameter. Path ids (`<id:...>` arguments
    ending in `_id`) past bigint are a 404 before the view runs.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def view(**kwargs: Any) -> Any:
            path_ids(kwargs)
            parsed = query(query_model or NoParams)
            if query_model is not None:
                kwargs["query"] = parsed
            if form_model is not None and request.method == "POST":
                kwargs["form"] = form(form_model)
            return fn(**kwargs)

        view.input_models = (query_model or NoParams, form_model)  # type: ignore[attr-defined]
        return view

    return wrap


def declared(
    query_model: type[Input] | None = None, form_model: type[Input] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Record the inputs of a view that parses them itself (to show its form again beside the errors),
    as `page` records them: what the hostile-input test walks."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.input_models = (query_model or NoParams, form_model)  # type: ignore[attr-defined]
        return fn

    return wrap
