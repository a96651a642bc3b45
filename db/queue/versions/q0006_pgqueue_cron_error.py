"""pgqueue cron: an entry the leader cannot run is set aside with its error

Revision ID: q0006
Revises: q0005
Create Date: 2026-12-02

A cron entry whose schedule never fires, or whose tick raises, used to stop the leader's maintenance
for the whole cluster. The leader now records the error on the entry (`error`, `failed_at`), skips it
from then on and goes on with the others; the admin sees why in the cron listing. Registering the
entry again clears both.
"""

from __future__ import annotations

from alembic import op

revision = "q0006"
down_revision = "q0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE queue.pgqueue_cron
            ADD COLUMN error text,
            ADD COLUMN failed_at timestamptz,
            ADD CONSTRAINT ck_pgqueue_cron_failed CHECK ((error IS NULL) = (failed_at IS NULL));
        COMMENT ON COLUMN queue.pgqueue_cron.error IS
            'why the leader set the entry aside (it no longer fires); cleared when the entry is registered again';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE queue.pgqueue_cron
            DROP CONSTRAINT ck_pgqueue_cron_failed,
            DROP COLUMN failed_at,
            DROP COLUMN error;
        """
    )
