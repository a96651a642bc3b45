"""Celery pages: queue depth per broker, workers (inspect and heartbeats), tasks from the result table."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from web import celery_info, params

bp = Blueprint("celery", __name__, url_prefix="/celery")


@bp.get("/")
def index():
    return render_template("celery/index.html", data=celery_info.overview())


@bp.get("/overview.json")
def overview_json():
    return jsonify(celery_info.overview())


@bp.get("/tasks")
def tasks():
    problems = []
    status = params.str_arg("status", max_len=50)
    if status is not None and status not in celery_info.TASK_STATUSES:
        problems.append(
            f"{status!r} is not a Celery task status; use one of {', '.join(celery_info.TASK_STATUSES)}."
        )
    name = params.str_arg("name", max_len=155)
    search = params.str_arg("search", max_len=155)
    after = params.int_arg("after")
    limit = params.limit_arg()
    items = (
        []
        if problems
        else celery_info.list_tasks(status=status, name=name, search=search, after=after, limit=limit)
    )
    next_after = items[-1]["id"] if len(items) >= limit else None
    return render_template(
        "celery/tasks.html",
        tasks=items,
        problems=problems,
        filters={"status": status, "name": name, "search": search},
        statuses=celery_info.TASK_STATUSES,
        next_after=next_after,
    )
