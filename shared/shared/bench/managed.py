"""Managed mode's worker groups: which workers each case of an experiment runs on, started and stopped by
the harness (docs/benchmark.md, "One run").

The workers of each adapter variant that runs repeatedly are started once for the whole experiment, all
at once, and kept: start-up is paid once (and reported apart), and idle workers cost little. A fault run,
which kills a worker, and a run whose workers start after the enqueue get fresh ones. Every group listens
on a queue of its own, named after the experiment. The processes themselves are `shared.bench.workers`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.bench import adapters
from shared.bench.case import Case
from shared.bench.workers import WorkerGroup, WorkerProcess, worker_env

READY_TIMEOUT_SECONDS = 120.0


@dataclass
class ManagedGroups:
    """The worker groups one experiment starts: `spawn`, `wait` until they heartbeat, `stop_all`."""

    url: str
    experiment_id: int
    out: Path
    """The report folder: each worker's log goes under its `logs/`."""
    spool_dir: Path
    isolate_brokers: bool = field(kw_only=True)
    should_stop: Callable[[], bool] = field(kw_only=True)
    groups: dict[tuple[Any, ...], WorkerGroup] = field(default_factory=dict, init=False)
    """The shared groups, by `group_key`."""
    _queues: int = field(default=0, init=False)
    _seen_cases: set[str] = field(default_factory=set, init=False)

    @staticmethod
    def group_key(case: Case) -> tuple[Any, ...]:
        return (case.who, case.processes, case.slots, case.recording)

    @staticmethod
    def shares(case: Case) -> bool:
        """Fault runs kill a worker, and gated runs start theirs after the enqueue: both get fresh ones. Held
        drains hold and release the experiment's running workers."""
        return case.scenario != "fault" and case.workers_start != "after_enqueue"

    def startup_of(self, case: Case, group: WorkerGroup, fresh: bool) -> float | None:
        """The group's start-up time, reported with a case's first run and with every fresh group."""
        first = case.key not in self._seen_cases
        self._seen_cases.add(case.key)
        return group.startup_seconds if fresh or first else None

    def new_queue(self) -> str:
        self._queues += 1
        return f"bench-e{self.experiment_id}-{self._queues}"

    def env(self) -> dict[str, str]:
        """The environment of every process the experiment starts: its database and spool directory."""
        return worker_env(self.url, self.spool_dir)

    def spawn(self, case: Case, queue: str | None = None, *, start: bool = True) -> WorkerGroup:
        """A group for `case` on a new queue (or `queue`) with its environment; its workers started
        (`start`) without waiting for them, or later with `start_workers`."""
        adapter = adapters.get(case.adapter)
        env_cm = adapter.group_env(case.options, self.url) if self.isolate_brokers else None
        extra = env_cm.__enter__() if env_cm is not None else {}
        own = adapter.worker_environment(case.options, self.url)
        group = WorkerGroup(queue or self.new_queue(), env={**self.env(), **extra, **own})
        group.close_env = lambda: self._close(case, group, env_cm)
        return self.start_workers(case, group) if start else group

    def start_workers(self, case: Case, group: WorkerGroup) -> WorkerGroup:
        argv = adapters.get(case.adapter).worker_argv(case, group.queue, Path(sys.executable).parent)
        log_path = self.out / "logs" / f"{case.who}-{group.queue}.log"
        group.workers.append(WorkerProcess(argv, group.env, log_path))
        return group

    def add_worker(self, case: Case, group: WorkerGroup) -> None:
        """Start one more worker in `group` and wait until it is ready (it replaces a killed one)."""
        self.start_workers(case, group)
        processes = case.processes if adapters.get(case.adapter).child_heartbeats else 0
        group.workers[-1].wait_ready(
            self.url, processes=processes, timeout=READY_TIMEOUT_SECONDS, should_stop=self.should_stop
        )

    def _close(self, case: Case, group: WorkerGroup, env_cm: Any) -> None:
        adapters.get(case.adapter).drop_queue(case.options, group.queue, group.env)
        if env_cm is not None:
            env_cm.__exit__(None, None, None)

    def wait(self, case: Case, group: WorkerGroup) -> WorkerGroup:
        """`group`, once each of its workers heartbeats (and its processes, where they beat on their own)."""
        processes = case.processes if adapters.get(case.adapter).child_heartbeats else 0
        for w in group.workers:
            w.wait_ready(
                self.url, processes=processes, timeout=READY_TIMEOUT_SECONDS, should_stop=self.should_stop
            )
        return group

    def start_shared(self, cases: list[Case], skip: Callable[[Case], str | None]) -> list[str]:
        """Start the workers of every variant whose runs share them (but those `skip` names a reason for),
        all at once, in parallel, and keep them for the whole experiment; one note per variant that could
        not start."""
        notes: list[str] = []
        pending = []
        for case in cases:
            key = self.group_key(case)
            if not self.shares(case) or key in self.groups or skip(case):
                continue
            self.groups[key] = self.spawn(case)
            pending.append((key, case))
        for key, case in pending:
            try:
                self.wait(case, self.groups[key])
            except adapters.AdapterUnavailable as exc:
                self.groups.pop(key).stop(5)
                notes.append(str(exc).splitlines()[0])
        return notes

    def shared(self, case: Case) -> tuple[WorkerGroup, bool]:
        """The running workers for `case`, restarted if one died; and whether they were started for it."""
        key = self.group_key(case)
        group = self.groups.get(key)
        if group is not None and group.alive():
            return group, False
        if group is not None:
            group.stop()
        self.groups[key] = self.wait(case, self.spawn(case))
        return self.groups[key], True

    def stop_all(self) -> None:
        """Stop every worker of the experiment's groups: all are asked at once, then waited for."""
        groups = list(self.groups.values())
        for g in groups:
            g.terminate()
        for g in groups:
            g.stop()
        self.groups.clear()
