"""App tables (schema `public`, the app lineage) and the worker heartbeat table (schema `queue`).

An *experiment* owns *runs*; a run (`BenchmarkRun`, as in the Rails original) is one repetition of one
case. `JobEvent` rows are the job contract's start and finish records (docs/architecture.md, "The job contract"), loaded from
the workers' spools. `Worker` rows are the heartbeats of every worker of both queues.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.bench.terms import SCHEDULING_MODES

EXPERIMENT_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
RUN_STATUSES = ("pending", "scheduling", "running", "completed", "failed", "cancelled")
EVENT_KINDS = ("start", "finish", "fail")

naming = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of the app lineage (schema `public`)."""

    metadata = sa.MetaData(naming_convention=naming)
    type_annotation_map = {dict[str, Any]: JSONB, dt.datetime: sa.DateTime(timezone=True)}


class QueueBase(DeclarativeBase):
    """Declarative base of tables in schema `queue` that the foundation owns (the queue lineage)."""

    metadata = sa.MetaData(naming_convention=naming, schema="queue")
    type_annotation_map = {dict[str, Any]: JSONB, dt.datetime: sa.DateTime(timezone=True)}


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Experiment(Base):
    """One `make bench` or one form submission: a spec of cases, run as interleaved repetitions."""

    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    status: Mapped[str] = mapped_column(sa.Text, server_default="pending")
    mode: Mapped[str] = mapped_column(sa.Text, server_default="managed")
    spec: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    executor_pid: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    report_dir: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=sa.func.now())
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    # The executor's liveness (migration a0005): where it runs, when it last beat, whether it was asked to
    # stop. The reaper and cancel go by these, not by a PID, which means nothing on another machine.
    executor_host: Mapped[str | None] = mapped_column(sa.Text)
    executor_machine_id: Mapped[str | None] = mapped_column(sa.Text)
    heartbeat_at: Mapped[dt.datetime | None]
    cancel_requested_at: Mapped[dt.datetime | None]

    __table_args__ = (
        sa.CheckConstraint(_in("status", EXPERIMENT_STATUSES), name="status"),
        sa.CheckConstraint("mode IN ('managed', 'attached')", name="mode"),
        # At most one experiment goes at a time: the database enforces it.
        sa.Index(
            "ix_experiments_one_active",
            sa.literal_column("(true)"),
            unique=True,
            postgresql_where=sa.text("status IN ('pending', 'running')"),
        ),
    )


class ExperimentFile(Base):
    """One file of an experiment's report (results.json, results.csv, summary.md, the plots), kept in the
    database so that it outlives the machine that wrote it; the web serves it."""

    __tablename__ = "experiment_files"

    experiment_id: Mapped[int] = mapped_column(
        sa.BigInteger, sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    media_type: Mapped[str] = mapped_column(sa.Text)
    content: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=sa.func.now())


class BenchmarkRun(Base):
    """One execution of one case: one repetition, with its lifecycle timestamps and figures."""

    __tablename__ = "benchmark_runs"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    experiment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    case_key: Mapped[str] = mapped_column(sa.Text, server_default="")
    repetition: Mapped[int] = mapped_column(server_default="1")
    adapter: Mapped[str] = mapped_column(sa.Text)
    broker: Mapped[str | None] = mapped_column(sa.Text)
    celery_config: Mapped[str | None] = mapped_column(sa.Text)
    job_count: Mapped[int]
    scheduling_mode: Mapped[str] = mapped_column(sa.Text)
    workload: Mapped[str] = mapped_column(sa.Text, server_default="noop")
    workload_params: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    scenario: Mapped[str] = mapped_column(sa.Text, server_default="drain")
    processes: Mapped[int] = mapped_column(server_default="1")
    slots: Mapped[int] = mapped_column(server_default="1")
    recording: Mapped[bool] = mapped_column(server_default=sa.true())
    status: Mapped[str] = mapped_column(sa.Text, server_default="pending")
    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=sa.func.now())
    scheduling_started_at: Mapped[dt.datetime | None]
    scheduling_finished_at: Mapped[dt.datetime | None]
    first_job_started_at: Mapped[dt.datetime | None]
    last_job_finished_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    environment: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))

    __table_args__ = (
        sa.CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        sa.CheckConstraint(_in("scheduling_mode", SCHEDULING_MODES), name="scheduling_mode"),
        sa.CheckConstraint("job_count > 0", name="job_count_positive"),
        sa.CheckConstraint("processes > 0 AND slots > 0", name="slots_positive"),
    )


class JobEvent(Base):
    """One start, finish or failure of one job attempt, as a worker's spool recorded it.

    `ts_us` is the acting process's wall clock (`time.time()`) in integer microseconds since the epoch
    (migration a0003), never the database's `now()`; a start also carries the sender's `enqueued_us`
    and `scheduled_us` from the job's meta.
    The audit key is `(run_id, seq)`. An append-only log, read by run (migration a0002): no primary
    key (a surrogate key cost every record a sequence value and an index entry) and a BRIN index on
    `run_id` (runs are loaded in time order). The ORM, which needs an identity, maps the columns that
    tell two records apart in practice.
    """

    __tablename__ = "job_events"

    run_id: Mapped[int] = mapped_column(sa.BigInteger)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    kind: Mapped[str] = mapped_column(sa.Text)
    adapter: Mapped[str] = mapped_column(sa.Text)
    attempt: Mapped[int] = mapped_column(sa.Integer)
    worker_id: Mapped[str] = mapped_column(sa.Text)
    ts_us: Mapped[int] = mapped_column(sa.BigInteger)
    enqueued_us: Mapped[int | None] = mapped_column(sa.BigInteger)
    scheduled_us: Mapped[int | None] = mapped_column(sa.BigInteger)
    error: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        sa.CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
        sa.Index("ix_job_events_run", "run_id", postgresql_using="brin"),
    )
    __mapper_args__ = {"primary_key": [run_id, seq, kind, attempt, worker_id, ts_us]}


class SpoolProgress(Base):
    """How far each spool file has been loaded, committed with the rows it loaded (exactly once)."""

    __tablename__ = "spool_progress"

    path: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    worker_id: Mapped[str] = mapped_column(sa.Text)
    loaded_bytes: Mapped[int] = mapped_column(sa.BigInteger, server_default="0")
    loaded_at: Mapped[dt.datetime] = mapped_column(server_default=sa.func.now())


class Worker(QueueBase):
    """The heartbeat of one worker process (or supervisor) of either queue, on any broker."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    adapter: Mapped[str] = mapped_column(sa.Text)
    host: Mapped[str] = mapped_column(sa.Text)
    pid: Mapped[int]
    queues: Mapped[list[str]] = mapped_column(ARRAY(sa.Text), server_default="{}")
    processes: Mapped[int] = mapped_column(server_default="1")
    slots: Mapped[int] = mapped_column(server_default="1")
    info: Mapped[dict[str, Any]] = mapped_column(server_default=sa.text("'{}'::jsonb"))
    started_at: Mapped[dt.datetime] = mapped_column(server_default=sa.func.now())
    heartbeat_at: Mapped[dt.datetime] = mapped_column(server_default=sa.func.now())
    spool_loaded_at: Mapped[dt.datetime | None]
    stopped_at: Mapped[dt.datetime | None]

    __table_args__ = (sa.Index("ix_workers_heartbeat_at", "heartbeat_at"),)


class WorkloadWrite(Base):
    """The rows the `db_write` workload inserts through the app's own connection."""

    __tablename__ = "workload_writes"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    worker_id: Mapped[str] = mapped_column(sa.Text)
    attempt: Mapped[int]
    payload: Mapped[str] = mapped_column(sa.Text)
    written_at: Mapped[dt.datetime] = mapped_column(server_default=sa.func.now())
