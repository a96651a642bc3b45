"""Cron entries: recurring jobs on a cron schedule (with an optional seconds field) or a fixed interval.

A schedule is either a cron expression of 5 fields (minute hour day month weekday) or 6 fields with
seconds FIRST (`*/5 * * * * *`: every 5 seconds; parsed by croniter), or an interval `@every 10s`
(units s, m, h; aligned on the Unix epoch so every leader computes the same ticks). The leader's cron
service enqueues one job per tick with the unique key `cron:<entry>:<tick>`, and advances the entry's
`last_tick` in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

from psycopg.rows import tuple_row

from shared.pgqueue import queries
from shared.pgqueue.jobs import (
    InvalidJob,
    _check_max_attempts,
    _check_priority,
    _check_task,
    _encode_params,
    check_queue,
    raw_connection,
)

_EVERY = re.compile(r"^@every\s+(\d+(?:\.\d+)?)\s*(s|m|h)$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
MAX_INTERVAL = 366 * 86400.0
"""The longest interval (a yearly entry); a longer one is a typo, and its ticks overflow datetime."""


def _croniter() -> Any:
    # imported when a schedule is first read: every worker process imports this package, and only the
    # leader's cron service and the admin read schedules (croniter is most of the package's import time)
    from croniter import croniter

    return croniter


CRON_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; `next_after(t)` is the first tick strictly after `t`."""

    text: str
    interval: float | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Parse `text` or raise `InvalidJob` saying which forms are accepted."""
        if not isinstance(text, str):
            raise InvalidJob(f"cron schedule must be a string, got {text!r}")
        s = " ".join(text.split())
        m = _EVERY.match(s)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
            if not 1 <= seconds <= MAX_INTERVAL:
                raise InvalidJob(
                    f"cron interval must be at least 1 second and at most {MAX_INTERVAL / 3600:.0f}h "
                    f"(366 days), got {text!r}"
                )
            return cls(s, seconds)
        fields = s.split(" ")
        if len(fields) in (5, 6) and _croniter().is_valid(s, second_at_beginning=len(fields) == 6):
            return cls(s)
        raise InvalidJob(
            f"invalid cron schedule {text!r}: use 5 cron fields (min hour day month weekday), 6 with seconds "
            "first ('*/5 * * * * *'), or an interval ('@every 10s', '@every 5m')"
        )

    def check_fires(self, now: dt.datetime) -> dt.datetime:
        """The first tick after `now`, or `InvalidJob` for a schedule that can never fire.

        croniter's syntax check passes dates that do not exist (`0 0 31 2 *`); its search for the next
        one then fails, at every run of the leader's cron service.
        """
        try:
            return self.next_after(now)
        except (ValueError, OverflowError, ArithmeticError) as exc:  # CroniterBadDateError is a ValueError
            raise InvalidJob(f"cron schedule {self.text!r} never fires ({exc})") from None

    def next_after(self, t: dt.datetime) -> dt.datetime:
        if self.interval is not None:
            ts = t.timestamp()
            nxt = (math.floor(ts / self.interval) + 1) * self.interval
            return dt.datetime.fromtimestamp(nxt, dt.UTC)
        six = len(self.text.split(" ")) == 6
        it = _croniter()(self.text, t.astimezone(dt.UTC), second_at_beginning=six)
        return it.get_next(dt.datetime).astimezone(dt.UTC)

    def ticks_between(self, after: dt.datetime, until: dt.datetime, limit: int = 1000) -> list[dt.datetime]:
        """The ticks in (after, until], at most the last `limit` of them."""
        out: list[dt.datetime] = []
        t = after
        while True:
            t = self.next_after(t)
            if t > until:
                return out[-limit:]
            out.append(t)
            if len(out) > limit * 2:
                out = out[-limit:]


def unique_key(name: str, tick: dt.datetime) -> str:
    """The unique key of the job one tick of entry `name` enqueues."""
    return f"cron:{name}:{tick.astimezone(dt.UTC).isoformat()}"


def register_cron(
    conn: Any,
    name: str,
    schedule: str,
    task: str,
    params: dict[str, Any] | None = None,
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int | None = None,
    enabled: bool = True,
) -> None:
    """Create or update cron entry `name` (validated like `enqueue`); a new entry ticks from now on.

    A schedule that never fires is refused. Updating an entry clears the error that made the leader
    set it aside (`failed_at`), so it fires again.
    """
    if not isinstance(name, str) or not CRON_NAME.match(name):
        raise InvalidJob(f"invalid cron entry name {name!r}: use 1 to 100 of A-Z a-z 0-9 _ . : -")
    Schedule.parse(schedule).check_fires(dt.datetime.now(dt.UTC))
    _check_task(task)
    values = {
        "name": name,
        "schedule": " ".join(schedule.split()),
        "task": task,
        "params": _encode_params(params, task),
        "queue": check_queue(queue),
        "priority": _check_priority(priority),
        "max_attempts": None if max_attempts is None else _check_max_attempts(max_attempts),
        "enabled": bool(enabled),
    }
    raw = raw_connection(conn)
    with raw.cursor(row_factory=tuple_row) as cur:
        cur.execute(queries.get("upsert_cron"), values)


def delete_cron(conn: Any, name: str) -> int:
    """Delete cron entry `name`; return 1 if it existed."""
    raw = raw_connection(conn)
    with raw.cursor(row_factory=tuple_row) as cur:
        cur.execute(queries.get("delete_cron"), {"name": name})
        return cur.rowcount
