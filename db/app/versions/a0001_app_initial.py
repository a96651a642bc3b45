"""app initial

Revision ID: a0001
Revises:
Create Date: 2026-11-27 23:54:12.605104
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "a0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("mode", sa.Text(), server_default="managed", nullable=False),
        sa.Column(
            "spec",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("executor_pid", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("report_dir", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("mode IN ('managed', 'attached')", name=op.f("ck_experiments_mode")),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_experiments_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiments")),
    )
    op.create_index(
        "ix_experiments_one_active",
        "experiments",
        [sa.literal_column("(true)")],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("adapter", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("enqueued_at", sa.Double(), nullable=True),
        sa.Column("scheduled_at", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('start', 'finish', 'fail')", name=op.f("ck_job_events_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    op.create_index("ix_job_events_run_seq", "job_events", ["run_id", "seq"], unique=False)
    op.create_table(
        "spool_progress",
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("loaded_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_spool_progress")),
    )
    op.create_table(
        "workload_writes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workload_writes")),
    )
    op.create_table(
        "benchmark_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("experiment_id", sa.BigInteger(), nullable=True),
        sa.Column("case_key", sa.Text(), server_default="", nullable=False),
        sa.Column("repetition", sa.Integer(), server_default="1", nullable=False),
        sa.Column("adapter", sa.Text(), nullable=False),
        sa.Column("broker", sa.Text(), nullable=True),
        sa.Column("celery_config", sa.Text(), nullable=True),
        sa.Column("job_count", sa.Integer(), nullable=False),
        sa.Column("scheduling_mode", sa.Text(), nullable=False),
        sa.Column("workload", sa.Text(), server_default="noop", nullable=False),
        sa.Column(
            "workload_params",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("scenario", sa.Text(), server_default="drain", nullable=False),
        sa.Column("processes", sa.Integer(), server_default="1", nullable=False),
        sa.Column("slots", sa.Integer(), server_default="1", nullable=False),
        sa.Column("recording", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("scheduling_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scheduling_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_job_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_job_finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "metrics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "environment",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint("adapter IN ('celery', 'pgqueue')", name=op.f("ck_benchmark_runs_adapter")),
        sa.CheckConstraint(
            "scheduling_mode IN ('one_by_one', 'bulk')", name=op.f("ck_benchmark_runs_scheduling_mode")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'scheduling', 'running', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_benchmark_runs_status"),
        ),
        sa.CheckConstraint("job_count > 0", name=op.f("ck_benchmark_runs_job_count_positive")),
        sa.CheckConstraint("processes > 0 AND slots > 0", name=op.f("ck_benchmark_runs_slots_positive")),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_benchmark_runs_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_runs")),
    )
    op.create_index(
        op.f("ix_benchmark_runs_experiment_id"), "benchmark_runs", ["experiment_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_benchmark_runs_experiment_id"), table_name="benchmark_runs")
    op.drop_table("benchmark_runs")
    op.drop_table("workload_writes")
    op.drop_table("spool_progress")
    op.drop_index("ix_job_events_run_seq", table_name="job_events")
    op.drop_table("job_events")
    op.drop_index(
        "ix_experiments_one_active",
        table_name="experiments",
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.drop_table("experiments")
