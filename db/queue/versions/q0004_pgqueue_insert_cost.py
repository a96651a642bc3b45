"""pgqueue: cheaper inserts (the listing index and the queue-name check)

Revision ID: q0004
Revises: q0003
Create Date: 2026-11-28

Every enqueued row paid for an entry in `ix_pgqueue_jobs_state_id` (state, id) and for a regular
expression on its queue name; profiling the bulk enqueue showed both among the largest server costs.

- The listing index becomes partial: it covers only the states an operator looks for among many
  others (scheduled, retryable, discarded, cancelled). Available and completed jobs, the bulk of the
  table, are listed by a backward scan of the primary key (they are found at once); running jobs by
  `ix_pgqueue_jobs_running`. An enqueue of a job claimable now no longer touches it.
- The queue-name CHECK keeps the length bound (1 to 64 characters); the characters are checked by the
  client (`shared.pgqueue.jobs.check_queue`), the only writer of queue names (docs/pgqueue.md).
"""

from __future__ import annotations

from alembic import op

revision = "q0004"
down_revision = "q0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DROP INDEX queue.ix_pgqueue_jobs_state_id;
        CREATE INDEX ix_pgqueue_jobs_listing ON queue.pgqueue_jobs (state, id)
            WHERE state IN ('scheduled', 'retryable', 'discarded', 'cancelled');
        ALTER TABLE queue.pgqueue_jobs DROP CONSTRAINT ck_pgqueue_jobs_queue;
        ALTER TABLE queue.pgqueue_jobs ADD CONSTRAINT ck_pgqueue_jobs_queue
            CHECK (char_length(queue) BETWEEN 1 AND 64);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE queue.pgqueue_jobs DROP CONSTRAINT ck_pgqueue_jobs_queue;
        ALTER TABLE queue.pgqueue_jobs ADD CONSTRAINT ck_pgqueue_jobs_queue
            CHECK (queue ~ '^[a-z0-9_.-]{1,64}$');
        DROP INDEX queue.ix_pgqueue_jobs_listing;
        CREATE INDEX ix_pgqueue_jobs_state_id ON queue.pgqueue_jobs (state, id);
        """
    )
