"""Celery tasks wrapping the shared workloads; every task runs through `shared.contract.execute`."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, Task

from shared import celery_app, completions, contract, workloads

_worker_id = ""


def set_worker_id(worker_id: str) -> None:
    """The id recorded with this process's events (the worker's heartbeat id)."""
    global _worker_id
    _worker_id = worker_id


def _meta(request: Any) -> dict[str, Any]:
    meta = getattr(request, celery_app.META_HEADER, None)
    if meta is None and isinstance(getattr(request, "headers", None), dict):
        meta = request.headers.get(celery_app.META_HEADER)
    return meta or {}


def register(app: Celery) -> None:
    """Register `bench.<workload>` for every shared workload on `app`, the user's own included
    (`BENCH_WORKLOADS`, docs/benchmark.md)."""
    workloads.load_user_modules()
    for name in workloads.REGISTRY:
        _register_one(app, name)


def _register_one(app: Celery, workload: str) -> None:
    @app.task(name=celery_app.task_name(workload), bind=True, max_retries=contract.RETRY_MAX_ATTEMPTS - 1)
    def run(self: Task, **params: Any) -> Any:
        attempt = self.request.retries + 1
        limit = self.request.timelimit[1] if self.request.timelimit and self.request.timelimit[1] else None
        ctx = contract.Ctx(
            adapter="celery",
            attempt=attempt,
            worker_id=_worker_id,
            deadline=time.time() + limit if limit else None,
            job_id=self.request.id,
        )
        try:
            result = contract.execute(workload, params, _meta(self.request), ctx)
        except workloads.UnknownTask:
            raise
        except Exception as exc:
            # The shared retry policy: exponential backoff with jitter, then give up.
            raise self.retry(exc=exc, countdown=contract.retry_delay(attempt)) from exc
        # The worker's own count, the end of a run for the harness with recording on or off
        # (Celery keeps none with its result backend off).
        completions.completed()
        return result

    return None
