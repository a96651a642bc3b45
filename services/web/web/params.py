"""Parsing query-string parameters: bad values are ignored or rejected with a message, never a 500."""

from __future__ import annotations

import re

from flask import abort, current_app, request

NAME_RE = re.compile(r"^[a-z0-9_.-]{1,64}$")


def int_arg(name: str, *, low: int = 1, high: int = 2**62, default: int | None = None) -> int | None:
    """An integer parameter; a malformed or out-of-range value is a 400."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(400, f"{name} must be an integer, got {raw[:40]!r}")
    if not low <= value <= high:
        abort(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def limit_arg() -> int:
    return int_arg("limit", low=1, high=500, default=current_app.config["PAGE_SIZE"]) or 50


def str_arg(name: str, *, max_len: int = 200) -> str | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if len(raw) > max_len:
        abort(400, f"{name} is longer than {max_len} characters")
    return raw


def ids_arg(name: str = "ids") -> list[int]:
    """`?ids=1&ids=2` or `?ids=1,2`, in order; anything that is not a positive integer is a 400."""
    ids: list[int] = []
    for raw in request.args.getlist(name):
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or not 0 < int(part) < 2**62:
                abort(400, f"{name} must be positive integers, got {part[:40]!r}")
            ids.append(int(part))
    return ids
