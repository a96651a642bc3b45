"""Flask-Admin views for the small tables: experiments, runs, worker heartbeats, pgqueue's queues and cron.

Flask-Admin's list views count their rows per request, which is right for these small tables and wrong for
the job tables: the jobs and Celery tasks are the project's own views (keyset pagination, cached counts).
Every view requires the same login session as the rest of the pages.

Flask-Admin 2.2's SQLAlchemy views import Flask-SQLAlchemy's types unconditionally, so Flask-SQLAlchemy is
a dependency; the views still use a plain `scoped_session` bound per declarative base, so the queue tables
follow `QUEUE_DATABASE_URL` when it names another database.
"""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any

import sqlalchemy as sa
from flask import Flask, redirect, request, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.menu import MenuLink
from flask_admin.theme import Bootstrap4Theme
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session, sessionmaker

from shared import models
from web import auth, inputs


class PgqueueTables(DeclarativeBase):
    """Read-only mappings of pgqueue's two small tables, for Flask-Admin's list views only.

    pgqueue's client has no ORM models (it speaks SQL); these name just the columns the views show.
    Pausing and resuming go through the client on the pgqueue pages, never through these mappings.
    """

    metadata = sa.MetaData(schema="queue")


class PgqueueQueue(PgqueueTables):
    __tablename__ = "pgqueue_queues"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    paused: Mapped[bool]
    paused_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class PgqueueCron(PgqueueTables):
    __tablename__ = "pgqueue_cron"

    name: Mapped[str] = mapped_column(sa.Text, primary_key=True)
    schedule: Mapped[str] = mapped_column(sa.Text)
    task: Mapped[str] = mapped_column(sa.Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    queue: Mapped[str] = mapped_column(sa.Text)
    priority: Mapped[int] = mapped_column(sa.SmallInteger)
    max_attempts: Mapped[int | None] = mapped_column(sa.SmallInteger)
    enabled: Mapped[bool]
    last_tick: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    last_job_id: Mapped[int | None] = mapped_column(sa.BigInteger)


class LoginRequired:
    def is_accessible(self) -> bool:
        return auth.logged_in()

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


class Home(LoginRequired, AdminIndexView):
    @expose("/")
    def index(self):
        return redirect(url_for("experiments.index_view"))


class ReadOnly(LoginRequired, ModelView):
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    page_size = 50
    column_display_pk = True

    def _handle_view(self, name, **kwargs):
        """Before every view: no control character in any query value, by the rules of every other page
        (`web/inputs.py`): PostgreSQL refuses NUL in text, and a newline in `url` reached a redirect."""
        errors = {
            key: "must not contain control characters"
            for key, value in request.args.items(multi=True)
            if inputs.CONTROL.search(value) or inputs.CONTROL.search(key)
        }
        if errors:
            summary = "; ".join(f"{k} {v}" for k, v in errors.items())
            raise inputs.BadInput(f"Invalid input to {request.path}: {summary}.", errors)
        return super()._handle_view(name, **kwargs)

    def _get_list_extra_args(self):
        """Flask-Admin's list arguments, checked first: a page number in ASCII digits whose offset fits a
        bigint (Flask-Admin takes `-1`, and any size, as is)."""
        errors = {}
        raw = request.args.get("page")
        last = inputs.MAX_BIGINT // self.page_size
        if raw is not None and (not inputs.ASCII_DIGITS.fullmatch(raw) or int(raw) > last):
            errors["page"] = f"must be a page number from 0 to {last}, got {inputs.shown(raw)}"
        if errors:
            summary = "; ".join(f"{k} {v}" for k, v in errors.items())
            raise inputs.BadInput(f"Invalid input to {request.path}: {summary}.", errors)
        return super()._get_list_extra_args()

    def get_one(self, id):  # noqa: A002 - Flask-Admin's name
        """The details view's row, or None (Flask-Admin then says it does not exist) for an id that cannot
        name one: control characters, too long, or for an integer key not ASCII digits within bigint."""
        if not isinstance(id, str) or len(id) > 200 or inputs.CONTROL.search(id):
            return None
        (pk,) = sa.inspect(self.model).primary_key
        if isinstance(pk.type, sa.Integer) and not (
            inputs.ASCII_DIGITS.fullmatch(id) and int(id) <= inputs.MAX_BIGINT
        ):
            return None
        return super().get_one(id)


class ExperimentView(ReadOnly):
    column_list = ("id", "status", "mode", "created_at", "started_at", "finished_at", "executor_pid", "error")
    column_default_sort = ("id", True)
    column_filters = ("status", "mode")
    column_formatters = {
        "id": lambda v, c, m, n: _link("runs.experiment", m.id, experiment_id=m.id),
    }


class RunView(ReadOnly):
    column_list = (
        "id",
        "experiment_id",
        "case_key",
        "repetition",
        "adapter",
        "broker",
        "celery_config",
        "job_count",
        "scheduling_mode",
        "workload",
        "scenario",
        "status",
        "finished_at",
    )
    column_default_sort = ("id", True)
    column_filters = ("adapter", "broker", "status", "scheduling_mode", "workload", "experiment_id")
    column_formatters = {"id": lambda v, c, m, n: _link("runs.run", m.id, run_id=m.id)}


class WorkerView(ReadOnly):
    column_list = (
        "id",
        "adapter",
        "host",
        "pid",
        "queues",
        "processes",
        "slots",
        "heartbeat_at",
        "stopped_at",
    )
    column_default_sort = ("heartbeat_at", True)
    column_filters = ("adapter", "host")


class QueueView(ReadOnly):
    column_list = ("name", "paused", "paused_at", "created_at", "updated_at")
    column_default_sort = "name"
    column_formatters = {"name": lambda v, c, m, n: _link("pgqueue.jobs", m.name, queue=m.name)}


class CronView(ReadOnly):
    column_list = ("name", "schedule", "task", "queue", "priority", "enabled", "last_tick", "last_job_id")
    column_default_sort = "name"


def _link(endpoint: str, text, **values):
    from markupsafe import Markup, escape

    return Markup('<a href="{}">{}</a>').format(url_for(endpoint, **values), escape(text))


def init_app(app: Flask) -> None:
    engines = app.extensions["bench_engines"]
    session = scoped_session(
        sessionmaker(
            binds={
                models.Base: engines["app"],
                models.QueueBase: engines["queue"],
                PgqueueTables: engines["queue"],
            }
        )
    )
    app.teardown_appcontext(lambda exc: session.remove())
    admin = Admin(
        app,
        name="bench admin",
        url="/admin",
        index_view=Home(url="/admin"),
        theme=Bootstrap4Theme(),
    )
    with warnings.catch_warnings():
        # Flask-Admin 2 prefers a Flask-SQLAlchemy object; a scoped session with per-base binds is what
        # lets the queue tables live on QUEUE_DATABASE_URL. It still works until Flask-Admin 3.
        warnings.simplefilter("ignore", DeprecationWarning)
        admin.add_view(ExperimentView(models.Experiment, session, name="Experiments", endpoint="experiments"))
        admin.add_view(RunView(models.BenchmarkRun, session, name="Runs", endpoint="benchmark_runs"))
        admin.add_view(WorkerView(models.Worker, session, name="Workers", endpoint="workers"))
        admin.add_view(QueueView(PgqueueQueue, session, name="pgqueue queues", endpoint="pgqueue_queues"))
        admin.add_view(CronView(PgqueueCron, session, name="pgqueue cron", endpoint="pgqueue_cron"))
    app.extensions["bench_admin"] = admin
    app.extensions["bench_admin_session"] = session
    admin.add_link(MenuLink(name="← Pages", url="/runs/"))
