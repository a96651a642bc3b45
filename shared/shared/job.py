"""The two halves of a job as the job contract sees them (docs/architecture.md, "The job contract").

`Meta` is what the sender attached at enqueue and travels unchanged; `Ctx` is what the worker knows about
one attempt. They live apart from `shared.contract` (which runs jobs) so that the recorder
(`shared.spool`) and the workloads (`shared.workloads`) can name them without importing the module that
imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
