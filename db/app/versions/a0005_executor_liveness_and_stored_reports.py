"""Executors heartbeat their experiment and are cancelled through it; reports are kept in the database

Revision ID: a0005
Revises: a0004
Create Date: 2026-12-06

With more than one web machine (docs/deploy.md), a PID says nothing on another machine: the executor
writes its host, its Fly machine id and a heartbeat on its experiment row; the reaper goes by the
heartbeat's age, and cancel sets `cancel_requested_at`, which the executor polls
(shared/shared/bench/experiments.py). A machine's disk is lost on every deploy, so an experiment's report
files live in `experiment_files`, which the web serves.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0005"
down_revision = "a0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("experiments", sa.Column("executor_host", sa.Text(), nullable=True))
    op.add_column("experiments", sa.Column("executor_machine_id", sa.Text(), nullable=True))
    op.add_column("experiments", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("experiments", sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "experiment_files",
        sa.Column("experiment_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("media_type", sa.Text(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_experiment_files_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "name", name=op.f("pk_experiment_files")),
    )


def downgrade() -> None:
    op.drop_table("experiment_files")
    op.drop_column("experiments", "cancel_requested_at")
    op.drop_column("experiments", "heartbeat_at")
    op.drop_column("experiments", "executor_machine_id")
    op.drop_column("experiments", "executor_host")
