"""benchmark_runs.adapter takes any registered adapter: the CHECK on its two first names goes

Revision ID: a0004
Revises: a0003
Create Date: 2026-12-04

The contenders are the benchmark's adapter registry (`shared.bench.adapters`), and a new queue joins by
registering itself there (docs/architecture.md, "Adding a queue"). A CHECK listing `celery` and
`pgqueue` would make every new contender a migration too; the spec validates the name against the
registry before a run row is written.
"""

from __future__ import annotations

from alembic import op

revision = "a0004"
down_revision = "a0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_benchmark_runs_adapter"), "benchmark_runs", type_="check")


def downgrade() -> None:
    op.create_check_constraint(
        op.f("ck_benchmark_runs_adapter"), "benchmark_runs", "adapter IN ('celery', 'pgqueue')"
    )
