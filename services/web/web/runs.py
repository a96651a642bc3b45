"""Runs pages: experiments and their runs, the form that starts an experiment, details, comparison.

Chart data and progress are served by session-authenticated `.json` routes built on the API's
serializers; the pages never call `/api/` (which takes HTTP Basic only).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectChoice, SelectField, SelectMultipleField, widgets
from wtforms.validators import DataRequired, InputRequired, NumberRange, Optional, ValidationError

from shared import heartbeat, settings, workloads
from shared.bench import adapters, store, terms
from shared.bench import experiments as bench
from web import database, inputs, results, serializers

bp = Blueprint("runs", __name__, url_prefix="/runs")

RUN_COLUMNS = {*serializers.RUN_FIELDS, "run_id", "who", "family"}


class MultiCheckbox(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


def _choices(values: tuple[str, ...] | list[str]) -> list[SelectChoice]:
    return [SelectChoice(v, v) for v in values]


class ExperimentForm(FlaskForm):
    """The validated form; its values become a spec that the benchmark library validates again."""

    mode = SelectField("Mode", choices=_choices(["managed", "attached"]), default="managed")
    adapters = MultiCheckbox(
        "Adapters", choices=_choices(adapters.NAMES), default=["pgqueue"], validators=[DataRequired()]
    )
    job_count = IntegerField(
        "Jobs per run", default=1000, validators=[InputRequired(), NumberRange(1, terms.MAX_JOBS)]
    )
    scheduling_modes = MultiCheckbox(
        "Scheduling", choices=_choices(terms.SCHEDULING_MODES), default=["bulk"], validators=[DataRequired()]
    )
    workload = SelectField("Workload", default="noop")
    workload_ms = IntegerField(
        "Workload milliseconds (sleep, cpu, mixed)",
        default=10,
        validators=[Optional(), NumberRange(0, 60_000)],
    )
    scenario = SelectField("Scenario", choices=_choices(terms.SCENARIOS), default="drain")
    rate = IntegerField("Arrival rate, jobs/s (steady)", validators=[Optional(), NumberRange(1, 100_000)])
    bursts = IntegerField("Bursts (burst)", validators=[Optional(), NumberRange(1, 1000)])
    fault = SelectField("Fault (fault, managed only)", choices=_choices(terms.FAULTS), default="kill_worker")
    processes = IntegerField("Worker processes", default=1, validators=[InputRequired(), NumberRange(1, 64)])
    slots = IntegerField("Slots per process", default=4, validators=[InputRequired(), NumberRange(1, 256)])
    repetitions = IntegerField("Repetitions", default=5, validators=[InputRequired(), NumberRange(1, 50)])

    def validate_scenario(self, field) -> None:
        if field.data == "fault" and self.mode.data == "attached":
            raise ValidationError("faults are injected in managed mode only (attached workers are not ours)")

    def validate_slots(self, field) -> None:
        if (self.processes.data or 0) * (field.data or 0) > 256:
            raise ValidationError("processes × slots must be at most 256")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workload.choices = _choices([w for w in workloads.REGISTRY if w != "always_fail"])

    def option_fields(self) -> list[Any]:
        """The adapters' variant options (a matrix key each: brokers, configs, ...), in registry order."""
        return [self[key] for key in OPTION_FIELDS]


def _option_fields() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Each adapter option's matrix key -> (label, choices, default); options sharing a key share a field,
    labelled with every adapter that has it (the peers' `execution`)."""
    out: dict[str, tuple[str, tuple[str, ...], str]] = {}
    names: dict[str, list[str]] = {}
    for a in adapters.REGISTRY.values():
        for o in a.options:
            label, choices, default = out.get(o.matrix_key, (o.help, (), o.default))
            names.setdefault(o.matrix_key, []).append(a.name)
            out[o.matrix_key] = (label, tuple(dict.fromkeys((*choices, *o.choices))), default)
    return {k: (f"{', '.join(names[k])}: {label}", c, d) for k, (label, c, d) in out.items()}


OPTION_FIELDS = _option_fields()
for _key, (_label, _values, _default) in OPTION_FIELDS.items():
    setattr(ExperimentForm, _key, MultiCheckbox(_label, choices=_choices(_values), default=[_default]))


def form_to_spec(form: ExperimentForm) -> dict[str, Any]:
    """The experiment spec (the benchmark library's matrix form) a form submission describes."""
    params: dict[str, Any] = {}
    if form.workload.data in {"sleep", "cpu", "mixed"} and form.workload_ms.data is not None:
        params["ms"] = form.workload_ms.data
    spec: dict[str, Any] = {
        "adapters": list(form.adapters.data or []),
        **{key: list(form[key].data or []) or [default] for key, (_, _, default) in OPTION_FIELDS.items()},
        "jobs": form.job_count.data,
        "scheduling": list(form.scheduling_modes.data or []),
        "workload": form.workload.data,
        "params": params,
        "scenarios": [form.scenario.data],
        "processes": form.processes.data,
        "slots": form.slots.data,
        "repetitions": form.repetitions.data,
    }
    if form.scenario.data == "steady":
        # one job per arrival: the library refuses bulk scheduling for it
        spec["scheduling"] = ["one_by_one"]
        if form.rate.data is not None:
            spec["rate"] = form.rate.data
    if form.scenario.data == "burst" and form.bursts.data is not None:
        spec["bursts"] = form.bursts.data
    if form.scenario.data == "fault":
        spec["fault"] = form.fault.data
    return spec


def _spec_errors_to_form(form: ExperimentForm, errors: dict[str, str]) -> list[str]:
    """Attach the library's errors to the matching fields; return the ones that match none."""
    aliases = {
        "jobs": "job_count",
        "params": "workload_ms",
        "scheduling": "scheduling_modes",
        "scenarios": "scenario",
        **{f"options.{o.name}": o.matrix_key for a in adapters.REGISTRY.values() for o in a.options},
        "adapter": "adapters",
        "cases": "adapters",
    }
    leftover = []
    for key, message in errors.items():
        path = str(key).split("].", 1)[-1]
        name = aliases.get(path, path.split(".")[0].split("[")[0])
        field = form._fields.get(name)
        if field is not None:
            field.errors = [*list(field.errors), message]
        else:
            leftover.append(f"{key}: {message}")
    return leftover


@bp.get("/")
@inputs.page(query_model=inputs.Paging)
def index(query: inputs.Paging):
    after = query.after
    limit = query.limit or current_app.config["PAGE_SIZE"]
    with database.admin_conn() as conn:
        reap(conn)
        experiments = results.list_experiments(conn, after=after, limit=limit)
        recent = results.list_runs(conn, limit=20)
    next_after = experiments[-1]["id"] if len(experiments) >= limit else None
    return render_template("runs/index.html", experiments=experiments, recent=recent, next_after=next_after)


def launch(experiment_id: int) -> int:
    """Launch the experiment's executor, and wait for it in a thread of this process so that it is reaped
    when it ends (otherwise it stays a zombie child of this gunicorn worker until the next launch)."""
    pid = bench.launch_executor(experiment_id)
    threading.Thread(target=_wait_for, args=(pid,), name=f"executor-{pid}", daemon=True).start()
    return pid


def _wait_for(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # not our child (or already reaped): nothing to wait for
        pass


def reap(conn) -> None:
    """Mark experiments whose executor died as failed (the benchmark library decides)."""
    bench.reap_dead_executors(conn)


@bp.route("/new", methods=["GET", "POST"])
def new():
    form = ExperimentForm()
    general_errors: list[str] = []
    status = 200
    workers = live_workers()
    mode, mode_reason = default_mode(workers)
    if request.method == "GET":
        form.mode.data = mode
    if request.method == "POST":
        if not form.validate_on_submit() or not attached_workers_suffice(form, workers):
            status = 400
        else:
            try:
                spec = bench.validate_spec(form_to_spec(form))
            except bench.SpecError as exc:
                general_errors = _spec_errors_to_form(form, dict(getattr(exc, "errors", {}) or {}))
                if not getattr(exc, "errors", None):
                    general_errors.append(str(exc))
                status = 400
            else:
                try:
                    experiment_id = bench.start_experiment(spec, mode=form.mode.data)
                except bench.ExperimentBusy as exc:
                    general_errors.append(f"Another experiment is pending or running: {exc}")
                    status = 409
                except bench.SpecError as exc:  # checks that need the database (attached mode's workers)
                    general_errors = _spec_errors_to_form(form, dict(exc.errors))
                    status = 400
                else:
                    launch(experiment_id)
                    flash(f"Experiment {experiment_id} started.", "info")
                    return redirect(url_for("runs.experiment", experiment_id=experiment_id))
    return render_template(
        "runs/new.html",
        form=form,
        general_errors=general_errors,
        workers=workers,
        default_mode=mode,
        mode_reason=mode_reason,
    ), status


def default_mode(workers: list[dict[str, Any]]) -> tuple[str, str]:
    """The mode the form proposes, and why: attached wherever workers are deployed or already run
    (managed mode would start a second set of workers beside the web and leave those idle)."""
    app = settings.fly_app_name()
    if app:
        return "attached", (
            f"this web runs on Fly (app {app}), whose worker groups run on their own machines; managed mode "
            "would start its workers on this web machine instead (docs/deploy.md)"
        )
    if workers:
        hosts = sorted({w["host"] for w in workers})
        return "attached", (
            f"{len(workers)} worker heartbeat(s) are live on {', '.join(hosts)}: attached mode measures them"
        )
    return "managed", "no worker heartbeats: managed mode starts each run's workers on this machine"


def live_workers() -> list[dict[str, Any]]:
    """Workers whose heartbeat is recent and that have not stopped: what attached mode can use (the
    harness's own query, `workers_live` in shared/sql/heartbeat.sql, under the page's admin transaction)."""
    with database.admin_conn("queue") as conn:
        return heartbeat.rows(
            database.raw(conn), "workers_live", {"within": heartbeat.HEALTH_MAX_AGE, "limit": 50}
        )


def attached_workers_suffice(form: ExperimentForm, workers: list[dict[str, Any]]) -> bool:
    """In attached mode the form offers only what running workers can do: say what is missing."""
    if form.mode.data != "attached":
        return True
    try:
        spec = bench.validate_spec(form_to_spec(form))
    except bench.SpecError:
        return True  # the spec's own errors are reported by the caller
    missing = list(  # in the spec's order: the registry's
        dict.fromkeys(
            c.who for c in spec.cases if adapters.get(c.adapter).attached_queue(workers, c.options) is None
        )
    )
    if missing:
        form.adapters.errors = [
            *form.adapters.errors,
            f"attached mode: no worker is running for {', '.join(missing)} (make dev)",
        ]
    return not missing


@bp.get("/experiments/<id:experiment_id>")
@inputs.page()
def experiment(experiment_id: int):
    with database.admin_conn() as conn:
        reap(conn)
        exp = results.get_experiment(conn, experiment_id)
        if exp is None:
            abort(404, f"There is no experiment {experiment_id}.")
        runs = results.list_runs(conn, experiment_id=experiment_id, limit=10_000)
        files = report_files(conn, experiment_id)
    finished = exp["status"] in ("completed", "cancelled", "failed")
    verdicts = results.headline(experiment_id) if finished and runs else None
    return render_template(
        "runs/experiment.html",
        experiment=exp,
        cases=results.cases_of(runs),
        report_files=files,
        headline=verdicts,
    )


REPORT_FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def report_files(conn, experiment_id: int) -> list[dict[str, Any]]:
    """The report files kept in the database for an experiment (name, media type, size)."""
    rows = conn.exec_driver_sql(store.q("experiment_file_list"), {"id": experiment_id}).all()
    return [{"name": n, "media_type": t, "size": size} for n, t, size, _at in rows]


@bp.get("/experiments/<id:experiment_id>/report/<name>")
def report_file(experiment_id: int, name: str):
    """One file of an experiment's report, from the database (it outlives the machine that wrote it)."""
    if not REPORT_FILE_NAME.fullmatch(name):  # the report's own names; nothing else reaches SQL or a header
        abort(404, f"Experiment {experiment_id} has no report file {name[:100]!r}.")
    with database.admin_conn() as conn:
        row = conn.exec_driver_sql(
            store.q("experiment_file_get"), {"id": experiment_id, "name": name}
        ).first()
    if row is None:
        abort(404, f"Experiment {experiment_id} has no report file {name}.")
    media_type, content = row
    inline = media_type.startswith("image/")
    disposition = "inline" if inline else "attachment"
    return current_app.response_class(
        bytes(content),
        mimetype=media_type.split(";")[0],
        headers={"Content-Disposition": f'{disposition}; filename="e{experiment_id}-{name}"'},
    )


def progress_of(experiment_id: int) -> dict[str, Any]:
    """The experiment's status and progress (the library's view when it is there)."""
    with database.admin_conn() as conn:
        reap(conn)
        exp = results.get_experiment(conn, experiment_id)
        if exp is None:
            abort(404, f"There is no experiment {experiment_id}.")
        runs = results.list_runs(conn, experiment_id=experiment_id, limit=10_000)
    out: dict[str, Any] = {
        "experiment_id": experiment_id,
        "status": exp["status"],
        "error": exp["error"],
        "runs_total": len(runs),
        "runs_finished": sum(r["status"] in ("completed", "failed", "cancelled") for r in runs),
        "runs": [{"id": r["id"], "case_key": r["case_key"], "status": r["status"]} for r in runs],
    }
    out["detail"] = serializers.plain(bench.progress(experiment_id))
    return out


@bp.get("/experiments/<id:experiment_id>/progress.json")
@inputs.page()
def progress_json(experiment_id: int):
    return jsonify(progress_of(experiment_id))


@bp.get("/experiments/<id:experiment_id>/cases/<path:case_key>")
@inputs.page()
def case(experiment_id: int, case_key: str):
    if len(case_key) > 500 or inputs.CONTROL.search(case_key):
        abort(404, f"There is no case {inputs.shown(case_key)} in experiment {experiment_id}.")
    with database.admin_conn() as conn:
        exp = results.get_experiment(conn, experiment_id)
        runs = results.list_runs(conn, experiment_id=experiment_id, case_key=case_key, limit=10_000)
    if exp is None or not runs:
        abort(404, f"There is no case {case_key!r} in experiment {experiment_id}.")
    summary = results.case_summary(experiment_id, case_key)
    return render_template(
        "runs/case.html",
        experiment=exp,
        case_key=case_key,
        runs=sorted(runs, key=lambda r: r["repetition"]),
        summary=summary,
    )


@bp.get("/<id:run_id>")
@inputs.page()
def run(run_id: int):
    with database.admin_conn() as conn:
        r = results.get_run(conn, run_id)
    if r is None:
        abort(404, f"There is no run {run_id}.")
    # the run's own columns are shown above the figures; the table holds the measurements
    figures = {k: v for k, v in results.flat_figures(results.run_summary(r)).items() if k not in RUN_COLUMNS}
    return render_template("runs/run.html", run=r, figures=figures, named=results.named_figures(r))


@bp.get("/<id:run_id>/series.json")
@inputs.page()
def series_json(run_id: int):
    with database.admin_conn() as conn:
        r = results.get_run(conn, run_id)
    if r is None:
        abort(404, f"There is no run {run_id}.")
    series = results.run_series(run_id)
    return jsonify(run_id=run_id, series=series, charts=results.charts_from_series(series))


@bp.get("/compare")
@inputs.page(query_model=inputs.ComparePickQuery)
def compare(query: inputs.ComparePickQuery):
    ids = query.ids
    if not ids:
        with database.admin_conn() as conn:
            recent = results.list_runs(conn, limit=100)
        return render_template("runs/compare_pick.html", runs=recent)
    with database.admin_conn() as conn:
        runs = results.get_runs(conn, ids)
    missing = sorted(set(ids) - {r["id"] for r in runs})
    if missing:
        abort(404, f"There is no run {', '.join(map(str, missing))}.")
    data = results.compare(ids, runs)
    return render_template("runs/compare.html", data=data, runs=runs)


@bp.get("/compare/series.json")
@inputs.page(query_model=inputs.CompareQuery)
def compare_series_json(query: inputs.CompareQuery):
    ids = query.ids
    for run_id in ids:
        inputs.row_id(run_id, "run")
    per_run = [(run_id, results.charts_from_series(results.run_series(run_id))) for run_id in ids]
    return jsonify(
        runs=[{"run_id": run_id, "charts": charts} for run_id, charts in per_run],
        overlaid=results.overlay(per_run),
    )
