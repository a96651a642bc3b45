"""The worker's configuration: every knob with its named default, its flag and its environment variable.

Read once, in `from_args`; flags win over `PGQUEUE_*` variables, which win over the defaults. Bad values
raise `settings.ConfigError` with one clear line. The supervisor hands the resolved configuration to its
processes as JSON (`to_json` / `from_json`), so a child never re-reads the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared import contract, pgqueue, settings


@dataclass(frozen=True)
class Config:
    """A worker's settings; times in seconds."""

    queues: tuple[str, ...] = ("default",)
    processes: int = 1
    threads: int = 4
    # claim: at most batch_size jobs per statement; at most threads + prefetch jobs held per process,
    # prefetch adapting to what the process completes in 0.1 s
    batch_size: int = 300
    prefetch: int = 600
    poll_interval: float = 1.0
    # completions: flushed every flush_interval, or sooner when half the bound is reached; the bound
    # blocks the slots (back-pressure) while the database is away
    flush_interval: float = 0.02
    completion_bound: int = 1000
    heartbeat_interval: float = 2.0
    shutdown_timeout: float = 25.0
    retry_base: float = contract.RETRY_BASE_SECONDS
    record: bool = True
    # maintenance (leader only)
    maintenance: bool = True
    leader_interval: float = 5.0
    rescue_after: float = 15.0
    rescue_interval: float = 5.0
    scheduler_interval: float = 1.0
    cron_interval: float = 0.5
    cron_catchup: float = 60.0
    counts_interval: float = 5.0
    cleaner_interval: float = 60.0
    completed_retention: float = 86400.0
    discarded_retention: float = 7 * 86400.0
    cancelled_retention: float = 7 * 86400.0
    worker_retention: float = 86400.0
    loglevel: str = "INFO"
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        data = json.loads(text)
        data["queues"] = tuple(data["queues"])
        return cls(**data)

    @property
    def completion_buffer(self) -> int:
        """B of the at-most-once-more bound: the buffer bound plus one flush in progress."""
        return 2 * self.completion_bound


# name -> (type, low, high, help); the flag is --name-with-dashes, the variable PGQUEUE_NAME
NUMERIC: dict[str, tuple[type, float, float, str]] = {
    "processes": (int, 1, 64, "worker processes under this supervisor"),
    "threads": (int, 1, 256, "concurrent job slots (threads) per process"),
    "batch_size": (int, 1, 1000, "most jobs one claim statement takes"),
    "prefetch": (int, 0, 10000, "most jobs a process holds claimed beyond its busy slots (adapts below)"),
    "poll_interval": (float, 0.01, 60, "seconds between claims when no NOTIFY arrives (backstop)"),
    "flush_interval": (float, 0.001, 5, "seconds between completion flushes"),
    "completion_bound": (int, 1, 100000, "most completions buffered before the slots wait"),
    "heartbeat_interval": (float, 0.05, 60, "seconds between heartbeats"),
    "shutdown_timeout": (float, 0, 3600, "seconds SIGTERM waits for running jobs before handing them back"),
    "retry_base": (float, 0.001, 3600, "first retry delay in seconds (doubles per attempt, +-10%% jitter)"),
    "leader_interval": (float, 0.05, 300, "seconds between leader-election attempts"),
    "rescue_after": (float, 0.1, 3600, "seconds without heartbeat after which a worker's jobs are rescued"),
    "rescue_interval": (float, 0.05, 3600, "seconds between rescuer runs"),
    "scheduler_interval": (float, 0.05, 3600, "seconds between scheduler runs"),
    "cron_interval": (float, 0.05, 60, "seconds between cron runs"),
    "cron_catchup": (float, 0, 86400, "missed cron ticks older than this many seconds are skipped"),
    "counts_interval": (float, 0.1, 3600, "least seconds between refreshes of the cached counts"),
    "cleaner_interval": (float, 0.1, 86400, "seconds between cleaner runs"),
    "completed_retention": (float, 0, 10**8, "seconds completed jobs are kept"),
    "discarded_retention": (float, 0, 10**8, "seconds discarded jobs are kept"),
    "cancelled_retention": (float, 0, 10**8, "seconds cancelled jobs are kept"),
    "worker_retention": (float, 0, 10**8, "seconds stopped worker rows are kept"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench-pgqueue-worker",
        description="Run the pgqueue worker: a supervisor with --processes P, each running --threads N job slots.",
    )
    p.add_argument("--queues", help="comma-separated queue names (env PGQUEUE_QUEUES; default: default)")
    for name, (kind, low, high, text) in NUMERIC.items():
        default = getattr(Config, name)
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=str,
            default=None,
            metavar="N" if kind is int else "SECONDS" if "interval" in name or "retention" in name else "X",
            help=f"{text} (env PGQUEUE_{name.upper()}; default {default}; {low}..{high})",
        )
    p.add_argument("--no-record", action="store_true", help="do not write job records to the spool")
    p.add_argument("--no-maintenance", action="store_true", help="never run the leader's maintenance")
    p.add_argument("--loglevel", default=None, help="DEBUG, INFO, WARNING or ERROR (env PGQUEUE_LOGLEVEL)")
    return p


def _number(name: str, raw: str, source: str) -> float | int:
    kind, low, high, _ = NUMERIC[name]
    try:
        value = kind(raw)
    except ValueError:
        raise settings.ConfigError(
            f"{source} must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
        ) from None
    if not low <= value <= high:
        raise settings.ConfigError(f"{source} must be between {low} and {high}, got {raw}")
    return value


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """The configuration from parsed flags and the environment; `ConfigError` names a bad value."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name in NUMERIC:
        flag = getattr(args, name)
        var = f"PGQUEUE_{name.upper()}"
        if flag is not None:
            values[name] = _number(name, flag, "--" + name.replace("_", "-"))
        elif env.get(var):
            values[name] = _number(name, env[var], var)
    raw_queues = args.queues if args.queues is not None else env.get("PGQUEUE_QUEUES") or "default"
    queues = tuple(q.strip() for q in raw_queues.split(",") if q.strip())
    if not queues:
        raise settings.ConfigError("--queues names no queue; give comma-separated names, e.g. default,mail")
    for q in queues:
        try:
            pgqueue.jobs.check_queue(q)
        except pgqueue.InvalidJob as exc:
            raise settings.ConfigError(f"--queues: {exc}") from None
    values["queues"] = tuple(dict.fromkeys(queues))
    if args.no_record or env.get("PGQUEUE_RECORD", "").lower() in {"0", "false", "no", "off"}:
        values["record"] = False
    if args.no_maintenance or env.get("PGQUEUE_MAINTENANCE", "").lower() in {"0", "false", "no", "off"}:
        values["maintenance"] = False
    loglevel = (args.loglevel or env.get("PGQUEUE_LOGLEVEL") or "INFO").upper()
    if loglevel not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise settings.ConfigError(f"--loglevel must be DEBUG, INFO, WARNING or ERROR, got {loglevel!r}")
    values["loglevel"] = loglevel
    return Config(**values)  # type: ignore[arg-type]
