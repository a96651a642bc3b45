"""Celery pages: queue depth per broker, workers (inspect and heartbeats), tasks from the result table."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template, request

from web import celery_info, inputs

bp = Blueprint("celery", __name__, url_prefix="/celery")


@bp.get("/")
@inputs.page()
def index():
    return render_template("celery/index.html", data=celery_info.overview())


@bp.get("/overview.json")
@inputs.page()
def overview_json():
    return jsonify(celery_info.overview())


@bp.get("/tasks")
@inputs.declared(query_model=inputs.CeleryTasksQuery)
def tasks():
    """The result table. Filters that are not valid are a 400 that shows the form again with what is wrong."""
    try:
        q = inputs.query(inputs.CeleryTasksQuery)
    except inputs.BadInput as exc:
        typed = {k: request.args.get(k, "")[:155] for k in ("status", "name", "search")}
        return render_template(
            "celery/tasks.html",
            tasks=[],
            problems=[f"{k}: {v}" for k, v in exc.errors.items()] or [exc.message],
            filters=typed,
            statuses=inputs.TASK_STATUSES,
            next_after=None,
        ), 400
    limit = q.limit or current_app.config["PAGE_SIZE"]
    items = celery_info.list_tasks(status=q.status, name=q.name, search=q.search, after=q.after, limit=limit)
    next_after = items[-1]["id"] if len(items) >= limit else None
    return render_template(
        "celery/tasks.html",
        tasks=items,
        problems=[],
        filters={"status": q.status, "name": q.name, "search": q.search},
        statuses=inputs.TASK_STATUSES,
        next_after=next_after,
    )
