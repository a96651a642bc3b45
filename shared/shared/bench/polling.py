"""Waiting on a condition with a deadline, never on a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(cond: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll `cond()` until it is truthy (return its value) or `timeout` seconds pass (return None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
