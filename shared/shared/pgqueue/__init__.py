"""pgqueue's client: enqueue inside the caller's transaction, operate the queue, read its state.

    from shared import pgqueue
    with engine.begin() as conn:            # or a psycopg Connection
        pgqueue.enqueue(conn, "noop", {}, queue="default", priority=0)

The job exists if and only if the caller's transaction commits. The worker runtime lives in
`services/pgqueue_worker`; the SQL in `sql/queries.sql`; the state machine in docs/pgqueue.md.
"""

from __future__ import annotations

from shared.pgqueue.admin import (
    ACTIONS,
    bulk_action,
    cancel,
    count_matching,
    counts,
    counts_info,
    cron_entries,
    delete_finished,
    discard,
    finished_span,
    get_job,
    list_jobs,
    pause_queue,
    queue_busy,
    queues,
    refresh_counts,
    resume_queue,
    retry,
    run_now,
    workers,
)
from shared.pgqueue.cron import Schedule, delete_cron, register_cron
from shared.pgqueue.jobs import (
    ACTIVE_STATES,
    CHANNEL,
    FINISHED_STATES,
    PRIORITY_MAX,
    PRIORITY_MIN,
    QUEUE_NAME,
    RECHECK,
    STATES,
    InvalidJob,
    JobSpec,
    enqueue,
    enqueue_many,
    raw_connection,
)

__all__ = [
    "ACTIONS",
    "ACTIVE_STATES",
    "CHANNEL",
    "FINISHED_STATES",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "QUEUE_NAME",
    "RECHECK",
    "STATES",
    "InvalidJob",
    "JobSpec",
    "Schedule",
    "bulk_action",
    "cancel",
    "count_matching",
    "counts",
    "counts_info",
    "cron_entries",
    "delete_cron",
    "delete_finished",
    "discard",
    "enqueue",
    "enqueue_many",
    "finished_span",
    "get_job",
    "list_jobs",
    "pause_queue",
    "queue_busy",
    "queues",
    "raw_connection",
    "refresh_counts",
    "register_cron",
    "resume_queue",
    "retry",
    "run_now",
    "workers",
]
