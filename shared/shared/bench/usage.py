"""Bad input on the command line: one line for the user, exit code 2, before anything starts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


class UsageError(Exception):
    """Bad input: one line for the user."""


def choices(value: str | None, allowed: Sequence[str], what: str) -> list[str] | None:
    """A comma-separated subset of `allowed` (None stays None); `UsageError` naming what is unknown."""
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad:
        raise UsageError(f"unknown {what} {', '.join(repr(b) for b in bad)}; use one of {', '.join(allowed)}")
    if not items:
        raise UsageError(f"--{what}s needs at least one of {', '.join(allowed)}")
    return items


def positive(**values: float) -> None:
    """`UsageError` for the first option (`name=value`) that is not above zero."""
    for name, value in values.items():
        if value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive number, got {value:g}")


def add_workloads_argument(p: argparse.ArgumentParser) -> None:
    """`--workloads MODULES`, which every command that runs jobs takes (the CLI imports the modules before
    anything starts: `shared.bench.cli`)."""
    p.add_argument(
        "--workloads",
        metavar="MODULES",
        default=None,
        help="modules that register your own workloads, comma-separated (also BENCH_WORKLOADS; docs/benchmark.md)",
    )
