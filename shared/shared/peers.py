"""What the peer queues' workers (`services/peers_worker`) and their adapters (`shared.bench.adapters`) must
agree on: where each peer's tables are and how a harness queue is named in it (docs/architecture.md,
"Adding a queue"). The schemas are installed by the queue lineage (`db/queue/versions/q0007`).
"""

from __future__ import annotations

from typing import Any

PROCRASTINATE_SCHEMA = "procrastinate"
PGQUEUER_SCHEMA = "pgqueuer"
PROCRASTINATE_TASK_PREFIX = "bench."
"""procrastinate's task name of a workload: `bench.<workload>` (as Celery's)."""
EXECUTIONS = ("threads", "inline")
"""How a peer's worker runs a job's synchronous body (its adapters' option `execution`, the workers'
`--execution`): `threads`, in a thread per slot, as each library says to run blocking code; `inline`, called
in the library's async entrypoint or task on the event loop, with no thread hand-off, so that a blocking body
holds the loop and a process runs one body at a time (docs/benchmarks.md, "The peers' settings")."""


def procrastinate_connection(url: str, application_name: str) -> dict[str, Any]:
    """A procrastinate connector's connection settings: its schema by the `search_path`, the way its docs
    say to use another schema (docs/howto/production/schema.md of procrastinate)."""
    return {
        "conninfo": url,
        "kwargs": {"options": f"-c search_path={PROCRASTINATE_SCHEMA}", "application_name": application_name},
    }


def pgqueuer_entrypoint(queue: str, workload: str) -> str:
    """The pgqueuer entrypoint of `workload` on the harness's queue `queue`: pgqueuer has no queue names,
    and a queue manager dequeues only the entrypoints it registered, so the prefix keeps queues apart."""
    return f"{queue}:{workload}"
