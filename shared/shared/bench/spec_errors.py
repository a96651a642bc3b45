"""A spec's errors in one wording, wherever it is validated: the command line, the web form and the API give
the same message for the same mistake, keyed by where it is (`cases[0].options.broker`, `jobs`).
"""

from __future__ import annotations

import re
from typing import Any

import pydantic


class SpecError(ValueError):
    """A spec that cannot run; `.errors` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def _where(loc: tuple[Any, ...]) -> str:
    """A pydantic location as a path: `("cases", 0, "options", "broker")` -> `cases[0].options.broker`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Any) -> str:
    """One message per error, in the same words wherever the spec is validated."""
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {given!r}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {given!r}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {given!r}"
    if kind == "greater_than":
        return f"must be above {ctx['gt']}, got {given!r}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {given!r}"
    if kind == "literal_error":
        return f"unknown value {given!r}; use one of {ctx.get('expected', '')}"
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {given!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be an object, got {type(given).__name__}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, got {type(given).__name__}"
    if kind == "too_short":
        return "the spec has no case to run"
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def messages(exc: pydantic.ValidationError, rename: dict[str, str] | None = None) -> dict[str, str]:
    """Each bad field of `exc` -> its one message; `rename` maps a case's field to the name the caller gave
    it (a matrix's `brokers` for its cases' `options.broker`)."""
    out: dict[str, str] = {}
    for err in exc.errors():
        if err["type"] == "too_short" and err.get("input"):
            continue  # pydantic's count after dropping the invalid cases, which are reported themselves
        loc = tuple(err["loc"])
        message = _message(err)
        if err["type"] == "adapter_rule":
            field, _, message = message.partition(": ")
            loc = (*loc, field)
        where = _where(loc)
        for old, new in (rename or {}).items():
            where = re.sub(rf"^cases\[\d+\]\.{re.escape(old)}$", new, where)
        out.setdefault(where or "spec", message)
    return out
