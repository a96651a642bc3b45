"""The job contract every queue runs jobs through (docs/architecture.md, "The job contract").

Both workers run every job through `execute(task, params, meta, ctx)`. `meta` is what the harness
attached at enqueue and travels unchanged (`Meta`); `ctx` is what the worker knows (`Ctx`). When `meta`
carries a `run_id`, the start and the finish (or failure) are appended to this process's spool with the
acting process's wall clock.
"""

from __future__ import annotations

import random
import time
from typing import Any

from shared import spool, workloads
from shared.job import Ctx, JobTimeout, Meta

__all__ = ["Ctx", "JobTimeout", "Meta", "describe", "error_text", "execute", "retry_delay"]

RETRY_BASE_SECONDS = 1.0
"""The retry policy both queues apply to `fail_then_succeed`: exponential backoff from this base."""
RETRY_MAX_ATTEMPTS = 5


def execute(task: str, params: dict[str, Any] | None, meta: Meta | dict[str, Any] | None, ctx: Ctx) -> Any:
    """Run workload `task` with `params`, recording start and finish when `meta` has a run id and seq.

    Raises `workloads.UnknownTask` for an unregistered task and `ValueError` for a malformed `meta`
    (both before anything is recorded), and re-raises whatever the workload raised, after recording
    the failure. `meta` is read as it travelled (a dict): building a `Meta` per job would cost more
    than the rest of a no-op job.
    """
    fn = workloads.get(task)
    m = meta.to_dict() if isinstance(meta, Meta) else (meta or {})
    if ctx.seq is None:
        ctx.seq = None if m.get("seq") is None else int(m["seq"])
    recorder = spool.current()
    if recorder is not None and not spool.recordable(m):
        recorder = None
    head = recorder.start(m, ctx) if recorder is not None else None
    try:
        result = fn(ctx, **(params or {}))
    except BaseException as exc:
        if recorder is not None:
            recorder.record("fail", m, ctx, time.time(), error_text(exc))
        raise
    if recorder is not None and head is not None:
        recorder.finish(head)
    return result


def describe(exc: BaseException) -> str:
    """The message of `exc`, never raising: a job's exception is the job's code, and its `__str__` may
    raise. Formatted inside the `except` that records a failure, it would replace the job's exception with
    its own (the wrong class and message recorded, and the wrong one raised)."""
    try:
        return str(exc)
    except BaseException as inner:  # noqa: BLE001 - whatever the job's __str__ does
        try:
            name = type(inner).__name__
        except BaseException:  # noqa: BLE001
            name = "an exception"
        return f"<str() of this {type(exc).__name__} raised {name}>"


def error_text(exc: BaseException) -> str:
    """`Class: message` of a failed attempt, as a failure record stores it; never raises."""
    return f"{type(exc).__name__}: {describe(exc)}"


def retry_delay(
    attempt: int, base: float = RETRY_BASE_SECONDS, cap: float = 3600.0, jitter: float = 0.1
) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential backoff (base * 2^(attempt-1)) with jitter."""

    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * (1 + random.uniform(-jitter, jitter))
