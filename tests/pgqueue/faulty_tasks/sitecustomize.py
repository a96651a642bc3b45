"""Tasks that fail the way an operator's buggy job fails, for tests/pgqueue/test_hardening.py.

A worker started with this directory on PYTHONPATH imports this module at interpreter start-up (Python's
`sitecustomize` hook) and so knows these tasks; the product never does.
"""

from __future__ import annotations

from shared import workloads
from shared.job import Ctx


class Unprintable(Exception):
    """An exception whose message cannot be computed: its __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("the __str__ of this exception raises")


@workloads.workload("fault_unprintable")
def fault_unprintable(ctx: Ctx) -> None:
    raise Unprintable()


@workloads.workload("fault_unstorable_message")
def fault_unstorable_message(ctx: Ctx) -> None:
    # jsonb refuses both: a NUL and half of a surrogate pair
    raise RuntimeError("a NUL \x00 and half a pair \udc80 in the message")
