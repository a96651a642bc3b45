"""The job contract shared by both queues (design section 6a).

Both workers run every job through `execute(task, params, meta, ctx)`. `meta` is what the harness
attached at enqueue and travels unchanged (`Meta`); `ctx` is what the worker knows (`Ctx`). When `meta`
carries a `run_id`, the start and the finish (or failure) are appended to this process's spool with the
acting process's wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

RETRY_BASE_SECONDS = 1.0
"""The retry policy both queues apply to `fail_then_succeed`: exponential backoff from this base."""
RETRY_MAX_ATTEMPTS = 5


class JobTimeout(Exception):
    """The attempt ran past `ctx.deadline`."""


@dataclass(frozen=True)
class Meta:
    """What the harness attaches at enqueue; the queue never reads it.

    `scheduled_at` is the open-loop arrival time (not pgqueue's `run_at`); both times are the sender's
    wall clock (`time.time()`).
    """

    run_id: int | None = None
    seq: int | None = None
    enqueued_at: float | None = None
    scheduled_at: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Meta:
        if not d:
            return cls()
        return cls(
            run_id=_opt_int(d.get("run_id")),
            seq=_opt_int(d.get("seq")),
            enqueued_at=_opt_float(d.get("enqueued_at")),
            scheduled_at=_opt_float(d.get("scheduled_at")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Ctx:
    """What the worker knows about this attempt."""

    adapter: str
    attempt: int = 1
    worker_id: str = ""
    deadline: float | None = None
    job_id: str | int | None = None
    seq: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def execute(task: str, params: dict[str, Any] | None, meta: Meta | dict[str, Any] | None, ctx: Ctx) -> Any:
    """Run workload `task` with `params`, recording start and finish when `meta` has a run id and seq.

    Raises `workloads.UnknownTask` for an unregistered task and `ValueError` for a malformed `meta`
    (both before anything is recorded), and re-raises whatever the workload raised, after recording
    the failure. `meta` is read as it travelled (a dict): building a `Meta` per job would cost more
    than the rest of a no-op job.
    """
    from shared import spool, workloads

    fn = workloads.get(task)
    m = meta.to_dict() if isinstance(meta, Meta) else (meta or {})
    if ctx.seq is None:
        ctx.seq = _opt_int(m.get("seq"))
    recorder = spool.current()
    if recorder is not None and not spool.recordable(m):
        recorder = None
    head = recorder.start(m, ctx) if recorder is not None else None
    try:
        result = fn(ctx, **(params or {}))
    except BaseException as exc:
        if recorder is not None:
            recorder.record("fail", m, ctx, time.time(), f"{type(exc).__name__}: {exc}")
        raise
    if recorder is not None and head is not None:
        recorder.finish(head)
    return result


def retry_delay(
    attempt: int, base: float = RETRY_BASE_SECONDS, cap: float = 3600.0, jitter: float = 0.1
) -> float:
    """Seconds to wait before attempt `attempt + 1`: exponential backoff (base * 2^(attempt-1)) with jitter."""
    import random

    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay * (1 + random.uniform(-jitter, jitter))
