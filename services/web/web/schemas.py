"""The API's answers as pydantic models, for its OpenAPI document (`web/openapi.py`).

The serializers (`web/serializers.py`) build these shapes as plain dicts; the schemathesis test holds every
answer to the models below. What `POST /api/experiments` takes is the benchmark library's own spec schema
(`shared.bench.spec.request_schema`), plus `mode` (`web/openapi.py`).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared import models
from shared.bench import adapters
from web import inputs

Obj = dict[str, Any]


class Error(BaseModel):
    """Every error of the API: a sentence, and for bad input one message per parameter or field."""

    error: str
    errors: dict[str, str] | None = Field(None, description="parameter or field -> what is wrong with it")


class Experiment(BaseModel):
    id: int
    status: Literal[models.EXPERIMENT_STATUSES]  # type: ignore[valid-type]
    mode: Literal["managed", "attached"]
    spec: Obj
    executor_pid: int | None = None
    executor_host: str | None = None
    executor_machine_id: str | None = None
    heartbeat_at: dt.datetime | None = None
    error: str | None = None
    report_dir: str | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    run_count: int | None = None
    runs: list[Run] | None = None


class Run(BaseModel):
    id: int
    experiment_id: int | None = None
    case_key: str | None = None
    repetition: int | None = None
    adapter: str = Field(description="an adapter of the registry: " + ", ".join(adapters.NAMES))
    broker: str | None = None
    celery_config: str | None = None
    job_count: int
    scheduling_mode: Literal[models.SCHEDULING_MODES]  # type: ignore[valid-type]
    workload: str | None = None
    workload_params: Obj | None = None
    scenario: str | None = None
    processes: int | None = None
    slots: int | None = None
    recording: bool | None = None
    status: str
    error: str | None = None
    created_at: dt.datetime | None = None
    scheduling_started_at: dt.datetime | None = None
    scheduling_finished_at: dt.datetime | None = None
    first_job_started_at: dt.datetime | None = None
    last_job_finished_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    metrics: Obj
    environment: Obj | None = None
    summary: Obj | None = None


class Point(BaseModel):
    x: float
    y: float


class Dataset(BaseModel):
    label: str
    data: list[Point]


class Chart(BaseModel):
    id: str
    title: str
    x_label: str | None = None
    y_label: str | None = None
    datasets: list[Dataset]


class Series(BaseModel):
    run_id: int
    series: Obj | None
    charts: list[Chart]


class Progress(BaseModel):
    experiment_id: int
    status: str
    error: str | None = None
    runs_total: int
    runs_finished: int
    runs: list[Obj] | None = None
    detail: Obj | None = None


class ComparisonRow(BaseModel):
    figure: str = Field(description="the figure's name in summary.md")
    unit: str = Field(description="its unit; empty for a count")
    values: list[float | None] = Field(description="one per run, in the order asked")


class Comparison(BaseModel):
    run_ids: list[int]
    runs: list[Run]
    rows: list[ComparisonRow]
    report: Obj | None = None


class Job(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    queue: str
    state: Literal[inputs.JOB_STATES]  # type: ignore[valid-type]


class JobPage(BaseModel):
    items: list[Job]
    next_after: int | None = Field(description="the `after` of the next page; null on the last one")
    scanned_from: int | None = Field(
        description="the lowest job id this page looked at when its scan was bounded, else null"
    )


class Throughput(BaseModel):
    window_seconds: float
    per_queue: dict[str, dict[str, float]]
    completed_per_second: float


class PgqueueOverview(BaseModel):
    counts: dict[str, dict[str, int]]
    totals: dict[str, int]
    counts_age_seconds: float | None = None
    counts_refreshed_at: str | None = None
    queues: list[Obj]
    throughput: Throughput | None = None


class JobCount(BaseModel):
    count: int
    exact: bool = Field(description="false when the count is an estimate (see `basis`)")
    basis: str = Field(description="how the count was obtained, and as of when")
    filters: Obj


class ActionResult(BaseModel):
    action: Literal[inputs.JOB_ACTIONS]  # type: ignore[valid-type]
    changed: int
    filters: Obj | None = None


class QueueState(BaseModel):
    queue: str
    paused: bool


class Items(BaseModel):
    items: list[Obj]


class CeleryTask(BaseModel):
    id: int
    task_id: str | None
    status: str | None
    name: str | None = None
    date_done: dt.datetime | None = None
    worker: str | None = None
    retries: int | None = None
    queue: str | None = None
    traceback: str | None = None


class Inspected(BaseModel):
    age_seconds: float | None = Field(
        description="age of the background refresher's last answer; null before its first"
    )
    brokers: list[Obj] = Field(description="per broker: this project's workers that answered, and `others`")


class CeleryOverview(BaseModel):
    depths: list[Obj]
    inspect: Inspected
    heartbeats: list[Obj]
    sql_broker_limits: str
    generated_at: str | None = None


@functools.cache
def page_of(item: type[BaseModel]) -> type[BaseModel]:
    """A keyset page of `item`: the items and the cursor of the next page (null on the last one)."""
    from pydantic import create_model

    return create_model(
        f"{item.__name__}Page",
        items=(list[item], ...),  # type: ignore[valid-type]
        next_after=(int | None, ...),
    )


Experiment.model_rebuild()
