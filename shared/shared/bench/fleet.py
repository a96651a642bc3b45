"""The fleet an attached run measures, from the workers' own heartbeats (docs/deploy.md).

In attached mode the harness starts no worker: what ran the jobs is whatever announces the run's queue in
`queue.workers`, on however many machines. Each heartbeat tells its host, its processes and slots and its
machine's CPUs and memory (`shared.heartbeat.machine`); `of_queue` sums them per host, and `check` says
whether the contenders of one experiment had fleets of equal total slots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def of_queue(workers: Sequence[Mapping[str, Any]], adapter: str, queue: str) -> dict[str, Any]:
    """The live workers of `adapter` that announce `queue`: how many, their slots, per host.

    A row that names a `supervisor` in its `info` is one process of a worker already counted (its
    supervisor's row holds the processes and slots of them all), so it is left out.
    """
    hosts: dict[str, dict[str, Any]] = {}
    for w in workers:
        info = w.get("info") or {}
        if w["adapter"] != adapter or queue not in (w["queues"] or []) or info.get("supervisor"):
            continue
        machine = info.get("machine") or {}
        h = hosts.setdefault(
            w["host"],
            {
                "workers": 0,
                "processes": 0,
                "slots": 0,
                "cpus": machine.get("cpus"),
                "memory_mb": machine.get("memory_mb"),
                "fly_machine_id": machine.get("fly_machine_id"),
            },
        )
        h["workers"] += 1
        h["processes"] += int(w["processes"])
        h["slots"] += int(w["processes"]) * int(w["slots"])
    return {
        "queue": queue,
        "workers": sum(h["workers"] for h in hosts.values()),
        "processes": sum(h["processes"] for h in hosts.values()),
        "slots": sum(h["slots"] for h in hosts.values()),
        "hosts": dict(sorted(hosts.items())),
    }


def without_module(workers: Sequence[Mapping[str, Any]], queue: str, module: str) -> list[str]:
    """The live workers announcing `queue` whose heartbeat does not list the user's workload `module`
    (`info.workload_modules`): as `host/pid`, for the one line that refuses to run on them."""
    return [
        f"{w['host']}/{w['pid']}"
        for w in workers
        if queue in (w["queues"] or [])
        and module not in ((w.get("info") or {}).get("workload_modules") or [])
    ]


def describe(fleet: Mapping[str, Any]) -> str:
    """`8 slots: 2 workers on 2 hosts (a: 4, b: 4)`."""
    hosts = fleet.get("hosts") or {}
    per_host = ", ".join(f"{name}: {h['slots']}" for name, h in hosts.items())
    return (
        f"{fleet.get('slots', 0)} slots: {fleet.get('workers', 0)} workers on {len(hosts)} "
        f"host{'s' if len(hosts) != 1 else ''} ({per_host})"
    )


def check(fleets: Mapping[str, Mapping[str, Any]]) -> str | None:
    """None when every contender's fleet had the same total slots; else one line that says they differ.

    `fleets` maps a contender's label to its fleet (the largest one any of its runs recorded).
    """
    slots = {who: int(f.get("slots") or 0) for who, f in fleets.items()}
    if len(set(slots.values())) <= 1:
        return None
    sizes = "; ".join(f"{who} {describe(f)}" for who, f in sorted(fleets.items()))
    return (
        "the attached fleets differ in total slots, so their figures compare unequal capacity: "
        f"{sizes}. Scale them to the same slots (docs/deploy.md) before reading a ratio."
    )


def of_runs(runs: Sequence[Mapping[str, Any]], label_of: Any) -> dict[str, dict[str, Any]]:
    """Each contender's fleet over an experiment's runs: the one with the most slots its runs recorded."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        fleet = (r.get("metrics") or {}).get("fleet")
        if not fleet:
            continue
        who = label_of(r)
        if who not in out or int(fleet.get("slots") or 0) > int(out[who].get("slots") or 0):
            out[who] = dict(fleet)
    return out
