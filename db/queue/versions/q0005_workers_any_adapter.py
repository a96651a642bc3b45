"""queue.workers.adapter takes any registered adapter: the CHECK on its two first names goes

Revision ID: q0005
Revises: q0004
Create Date: 2026-12-04

Every contender's workers heartbeat to this table (docs/architecture.md, "The job contract"); a CHECK
listing `celery` and `pgqueue` would make a new contender a migration too. The adapter registry
(`shared.bench.adapters`) names them.
"""

from __future__ import annotations

from alembic import op

revision = "q0005"
down_revision = "q0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_workers_ck_workers_adapter"), "workers", schema="queue", type_="check")


def downgrade() -> None:
    op.create_check_constraint(
        op.f("ck_workers_ck_workers_adapter"), "workers", "adapter IN ('celery', 'pgqueue')", schema="queue"
    )
