"""JSON shapes of the API, shared with the pages' session-authenticated `.json` routes.

One function per noun turns a database row (or a client library's dict) into plain JSON values:
datetimes become ISO 8601 strings, bytes become text, NaN becomes null.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
from collections.abc import Mapping
from typing import Any

EXPERIMENT_FIELDS = (
    "id",
    "status",
    "mode",
    "spec",
    "executor_pid",
    "executor_host",
    "executor_machine_id",
    "heartbeat_at",
    "error",
    "report_dir",
    "created_at",
    "started_at",
    "finished_at",
)
RUN_FIELDS = (
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
    "workload_params",
    "scenario",
    "processes",
    "slots",
    "recording",
    "status",
    "error",
    "created_at",
    "scheduling_started_at",
    "scheduling_finished_at",
    "first_job_started_at",
    "last_job_finished_at",
    "finished_at",
    "metrics",
    "environment",
)
WORKER_FIELDS = (
    "id",
    "adapter",
    "host",
    "pid",
    "queues",
    "processes",
    "slots",
    "info",
    "started_at",
    "heartbeat_at",
    "spool_loaded_at",
    "stopped_at",
)
CELERY_TASK_FIELDS = (
    "id",
    "task_id",
    "status",
    "name",
    "date_done",
    "worker",
    "retries",
    "queue",
    "traceback",
)


def plain(value: Any) -> Any:
    """A JSON-safe copy of `value`."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return str(value)


def _pick(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    return {f: plain(m.get(f)) for f in fields}


def experiment(row: Any) -> dict[str, Any]:
    out = _pick(row, EXPERIMENT_FIELDS)
    m = row._mapping if hasattr(row, "_mapping") else row
    if "run_count" in m:
        out["run_count"] = int(m["run_count"] or 0)
    return out


def run(row: Any) -> dict[str, Any]:
    return _pick(row, RUN_FIELDS)


def worker(row: Any) -> dict[str, Any]:
    return _pick(row, WORKER_FIELDS)


def celery_task(row: Any) -> dict[str, Any]:
    return _pick(row, CELERY_TASK_FIELDS)


def job(data: Mapping[str, Any]) -> dict[str, Any]:
    """A pgqueue job as its client returns it (every field kept)."""
    return plain(dict(data))


def page(items: list[dict[str, Any]], limit: int, key: str = "id") -> dict[str, Any]:
    """A keyset page: the items and the cursor for the next page (null on the last one)."""
    next_after = items[-1][key] if len(items) >= limit and items else None
    return {"items": items, "next_after": next_after}
