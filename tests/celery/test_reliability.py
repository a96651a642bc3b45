"""Characterisation: what happens to a running task when its worker is SIGKILLed, per broker and configuration.

Twelve cases: three brokers x two configurations x two kills (a prefork pool child, or Celery's main
process). Each case runs one `celery worker` (prefork, concurrency 1) on a queue of its own, sends two
`sleep(2000)` tasks, SIGKILLs after the first start record and classifies only the task that was running:

- **redelivered**: it started again after the kill and finished once;
- **run twice**: it finished twice;
- **lost**: no finish record by the end of the observation window.

After a main-process kill the case starts a fresh worker on the same queue, as a user would, because
only a consumer can receive a redelivery. The window starts when a worker consumes again (the kill for
a pool child, whose replacement Celery forks itself; the fresh worker's readiness otherwise).

The outcomes are asserted against `EXPECTED`, so a change in Celery's or kombu's behaviour fails here,
and `docs/celery-reliability.md` must hold the table rendered from `EXPECTED`; the observed table, with
the delays measured this time, goes to `test-output/celery-reliability.md`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from shared import celery_app, settings
from shared.bench.adapters.brokers import delete_queue
from shared.bench.adapters.celery import WorkerOptions
from shared.bench.records import Record, read_spool
from shared.bench.workers import WorkerProcess, worker_env

from ..support import ROOT, wait_until
from .conftest import WORKER_ENV, concurrently, unique

pytestmark = pytest.mark.slow

WINDOW_S = 20.0
"""How long each case watches for a redelivery once a worker consumes again."""
REDIS_VISIBILITY_TIMEOUT_S = 5.0
"""Shortened from kombu's 3600 s so that a Redis redelivery can happen inside the window."""
REDIS_RESTORE_INTERVAL_S = 1.0
"""How often a Redis worker sweeps for messages past the visibility timeout (kombu: about every 100 s)."""
SQL_POLLING_INTERVAL_S = 0.1
SLEEP_MS = 2000
KILL_AFTER_S = 1.0
"""The kill comes this long after the start record, half-way through the task: under defaults, a main
process killed in the first milliseconds, before its early acknowledgement reached Redis or RabbitMQ, has
the task redelivered (observed), so an earlier kill would make those two cells a race."""
KILLS = ("pool child", "main process")

REDELIVERED = "redelivered"
RUN_TWICE = "run twice"
LOST = "lost"

EXPECTED: dict[tuple[str, str, str], str] = {
    ("postgres", "defaults", "pool child"): LOST,
    ("postgres", "defaults", "main process"): LOST,
    ("postgres", "reliable", "pool child"): REDELIVERED,
    ("postgres", "reliable", "main process"): LOST,
    ("redis", "defaults", "pool child"): LOST,
    ("redis", "defaults", "main process"): LOST,
    ("redis", "reliable", "pool child"): REDELIVERED,
    ("redis", "reliable", "main process"): REDELIVERED,
    ("rabbitmq", "defaults", "pool child"): LOST,
    ("rabbitmq", "defaults", "main process"): LOST,
    ("rabbitmq", "reliable", "pool child"): REDELIVERED,
    ("rabbitmq", "reliable", "main process"): REDELIVERED,
}

DOC = ROOT / "docs" / "celery-reliability.md"
BEGIN, END = (
    "<!-- table: generated from EXPECTED in tests/celery/test_reliability.py -->",
    "<!-- end of table -->",
)


@dataclass(frozen=True)
class Case:
    broker: str
    configuration: str
    kill: str

    @property
    def slug(self) -> str:
        return f"{self.broker}-{self.configuration}-{self.kill.replace(' ', '-')}"


@dataclass
class Observation:
    case: Case
    outcome: str
    redelivered_after: float | None = None
    queued_task: str = ""


def cell(outcome: str, redelivered_after: float | None = None) -> str:
    if outcome == LOST:
        return f"lost: not redelivered within {WINDOW_S:.0f} s"
    if redelivered_after is not None:
        return f"{outcome} (after {redelivered_after:.1f} s)"
    return outcome


def render(
    outcomes: dict[tuple[str, str, str], str], delays: dict[tuple[str, str, str], float] | None = None
) -> str:
    """The Markdown table: one row per broker and configuration, one column per kill."""
    delays = delays or {}
    lines = [
        "| broker | configuration | pool child SIGKILLed | main process SIGKILLed, fresh worker started |",
        "|---|---|---|---|",
    ]
    for broker in celery_app.BROKERS:
        for configuration in celery_app.CONFIGURATIONS:
            cells = [
                cell(outcomes[(broker, configuration, k)], delays.get((broker, configuration, k)))
                for k in KILLS
            ]
            lines.append(f"| {broker} | {configuration} | {' | '.join(cells)} |")
    return "\n".join(lines)


def classify(events: list[Record], seq: int, killed_at: float) -> tuple[str, float | None]:
    starts_after = [e.ts for e in events if e.seq == seq and e.kind == "start" and e.ts > killed_at]
    finishes = [e for e in events if e.seq == seq and e.kind == "finish"]
    after = starts_after[0] - killed_at if starts_after else None
    if len(finishes) >= 2:
        return RUN_TWICE, after
    if finishes and starts_after:
        return REDELIVERED, after
    if finishes:
        return "finished without redelivery (the kill missed it)", None
    if starts_after:
        return "redelivered but not finished within the window", after
    return LOST, None


def run_case(case: Case, database_url: str, base: Path, output_dir: Path, redis_url: str) -> Observation:
    spool_dir = base / case.slug
    spool_dir.mkdir(parents=True)
    queue = unique(f"rel-{case.slug}")
    extra = {"REDIS_URL": redis_url, **WORKER_ENV}
    spec = WorkerOptions(
        broker=case.broker,
        configuration=case.configuration,
        pool="prefork",
        concurrency=1,
        queues=[queue],
        polling_interval=SQL_POLLING_INTERVAL_S,
        visibility_timeout=REDIS_VISIBILITY_TIMEOUT_S if case.broker == "redis" else None,
        restore_interval=REDIS_RESTORE_INTERVAL_S if case.broker == "redis" else None,
        loglevel="INFO",
    )
    env = worker_env(database_url, spool_dir, **extra)
    app = celery_app.make_app(
        case.broker,
        case.configuration,
        polling_interval=SQL_POLLING_INTERVAL_S,
        s=settings.load({**os.environ, "DATABASE_URL": database_url, **extra}),
    )
    run_id = time.time_ns() // 1000 % 2_000_000_000
    workers: list[WorkerProcess] = []
    try:
        first = WorkerProcess(spec.argv(), env, output_dir / f"{case.slug}-1.log")
        workers.append(first)
        first.wait_ready(database_url, timeout=120)
        for seq in (1, 2):
            celery_app.send(
                app,
                "sleep",
                {"ms": SLEEP_MS},
                {"run_id": run_id, "seq": seq, "enqueued_at": time.time()},
                queue=queue,
            )
        started = wait_until(
            lambda: [e for e in read_spool(spool_dir, run_id) if e.kind == "start"],
            90,
            message=f"{case.slug}: the first start record",
        )[0]
        while time.time() < started.ts + KILL_AFTER_S:
            time.sleep(0.01)
        killed_at = time.time()
        if case.kill == "pool child":
            assert started.pid in first.pids()[1:], (started.pid, first.pids())
            os.kill(started.pid, signal.SIGKILL)
            consuming_at = killed_at
        else:
            # SIGKILL to Celery's main process alone: `celery worker`, the child of bench-celery-worker,
            # which then exits too (docs/celery.md, "The worker process").
            [celery_main] = psutil.Process(first.pid).children()
            os.kill(celery_main.pid, signal.SIGKILL)
            first.popen.wait(10)
            # billiard gives each pool child PDEATHSIG=SIGKILL: no orphan finishes the task behind our back.
            wait_until(
                lambda: not _alive(started.pid), 10, message=f"{case.slug}: the orphaned pool child to die"
            )
            fresh = WorkerProcess(spec.argv(), env, output_dir / f"{case.slug}-2.log")
            workers.append(fresh)
            fresh.wait_ready(database_url, timeout=120)
            consuming_at = time.time()
        # A bounded observation, not a timing assertion: redelivery is looked for during WINDOW_S.
        while time.time() < consuming_at + WINDOW_S:
            time.sleep(0.2)
    finally:
        for w in workers:
            w.stop(15)
        delete_queue(app, case.broker, queue)
    events = read_spool(spool_dir, run_id)
    outcome, after = classify(events, started.seq, killed_at)
    other = 2 if started.seq == 1 else 1
    other_outcome = "finished" if any(e.seq == other and e.kind == "finish" for e in events) else "not run"
    return Observation(case, outcome, after, other_outcome)


def _alive(pid: int) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


def test_the_documented_table_is_the_asserted_one():
    text = DOC.read_text()
    assert BEGIN in text and END in text, f"{DOC} lacks the generated-table markers"
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert documented == render(EXPECTED), f"update {DOC.name} from EXPECTED:\n{render(EXPECTED)}"


def test_sigkill_while_a_task_runs_on_each_broker_and_configuration(
    all_brokers, own_redis, database_url, tmp_path, output_dir
):
    cases = [Case(b, c, k) for b in celery_app.BROKERS for c in celery_app.CONFIGURATIONS for k in KILLS]
    observations = concurrently(
        lambda case: run_case(case, database_url, tmp_path, output_dir, own_redis.url), cases
    )
    observed = {(o.case.broker, o.case.configuration, o.case.kill): o.outcome for o in observations}
    delays = {
        (o.case.broker, o.case.configuration, o.case.kill): o.redelivered_after
        for o in observations
        if o.redelivered_after is not None
    }
    report = [
        "# Observed by tests/celery/test_reliability.py",
        "",
        f"Window {WINDOW_S:.0f} s; Redis visibility timeout {REDIS_VISIBILITY_TIMEOUT_S:.0f} s, restore sweep every "
        f"{REDIS_RESTORE_INTERVAL_S:.0f} s; SQL polling interval {SQL_POLLING_INTERVAL_S} s; prefork, concurrency 1.",
        "",
        render(observed, delays),
        "",
        "The second (queued) task of each case:",
        "",
        *(f"- {o.case.slug}: {o.queued_task}" for o in observations),
    ]
    (ROOT / "test-output").mkdir(exist_ok=True)
    (ROOT / "test-output" / "celery-reliability.md").write_text("\n".join(report) + "\n")
    assert observed == EXPECTED, "\n".join(report)
