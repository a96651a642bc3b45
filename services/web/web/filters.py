"""Jinja filters shared by the templates (formatting only; no queries)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from flask import Flask


def fmt_time(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def fmt_num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_figure(value: Any, unit: str = "") -> str:
    """A named figure: a count (no unit) as a whole number, anything else as `num` does."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and unit == "" and value == value:
        # a median of counts can fall between two: then it keeps its half
        return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"
    return fmt_num(value)


TIMESTAMP_KEY = re.compile(r"(^|[._])(at|ts|time|when|started|finished|start|end)$|_at$")


def fmt_measure(value: Any, key: str = "") -> str:
    """A stored measurement by its key: a Unix timestamp as a time, a whole float as a whole number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if TIMESTAMP_KEY.search(key) and 1e9 < value < 1e11:
            return fmt_time(value)
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
    return fmt_num(value)


def fmt_age(value: Any) -> str:
    """Seconds since a timestamp, e.g. '3 s ago' (heartbeats)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(value, dt.datetime):
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    seconds = (dt.datetime.now(dt.UTC) - value).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def to_pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def nonempty(values: dict[str, Any]) -> dict[str, Any]:
    """The entries with a value (the active filters, for links that keep them)."""
    return {k: v for k, v in values.items() if v not in (None, "")}


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(
        time=fmt_time,
        num=fmt_num,
        figure=fmt_figure,
        measure=fmt_measure,
        age=fmt_age,
        pretty_json=to_pretty_json,
        nonempty=nonempty,
    )
