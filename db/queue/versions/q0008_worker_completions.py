"""queue.worker_completions: a worker's own count of the jobs it completed

Revision ID: q0008
Revises: q0007
Create Date: 2026-12-06

The harness tells the end of a run from the queue's own tables, recording on or off (the recording pair,
docs/benchmark.md). Celery keeps no such table with its result backend off, so its worker counts the jobs
its processes complete and its main process writes the sum here, one row per worker, when it moved
(`shared.completions`); the harness sums the rows of the workers on its queue. A row is written every
20 ms at most, never once per job.
"""

from __future__ import annotations

from alembic import op

revision = "q0008"
down_revision = "q0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE queue.worker_completions (
            worker_id text NOT NULL,
            queues text[] NOT NULL,
            completed bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_worker_completions PRIMARY KEY (worker_id),
            CONSTRAINT ck_worker_completions_completed CHECK (completed >= 0)
        );
        COMMENT ON TABLE queue.worker_completions IS
            'jobs each worker completed, summed over its processes, for a queue whose own tables cannot tell';
        COMMENT ON COLUMN queue.worker_completions.worker_id IS 'the id of its heartbeat (queue.workers.id)';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE queue.worker_completions")
