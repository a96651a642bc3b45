"""queue initial: kombu's broker tables, Celery's result tables, worker heartbeats

Revision ID: q0001
Revises:
Create Date: 2026-11-27

kombu's SQLAlchemy transport and Celery's database backend would create their tables on first use.
These are exactly the tables, indexes and named sequences they expect (kombu/transport/sqlalchemy/
models.py, celery/backends/database/models.py, with Celery's extended result columns), so their
create-if-missing finds everything present and creates nothing. kombu has no schema option: its
engine sets `search_path=queue`; Celery's backend is told the schema with `database_table_schemas`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "q0001"
down_revision = None
branch_labels = ("queue",)
depends_on = None

S = "queue"


def upgrade() -> None:
    # kombu's SQL transport
    op.execute(sa.schema.CreateSequence(sa.Sequence("queue_id_sequence", schema=S)))
    op.execute(sa.schema.CreateSequence(sa.Sequence("message_id_sequence", schema=S)))
    op.create_table(
        "kombu_queue",
        sa.Column("id", sa.Integer, sa.Sequence("queue_id_sequence", schema=S), primary_key=True),
        sa.Column("name", sa.String(200), unique=True),
        schema=S,
    )
    op.create_table(
        "kombu_message",
        sa.Column("id", sa.Integer, sa.Sequence("message_id_sequence", schema=S), primary_key=True),
        sa.Column("visible", sa.Boolean, index=True),
        sa.Column("timestamp", sa.DateTime, nullable=True, index=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("version", sa.SmallInteger, nullable=False),
        sa.Column(
            "queue_id", sa.Integer, sa.ForeignKey(f"{S}.kombu_queue.id", name="FK_kombu_message_queue")
        ),
        schema=S,
    )
    op.create_index("ix_kombu_message_timestamp_id", "kombu_message", ["timestamp", "id"], schema=S)
    op.alter_column(
        "kombu_queue", "id", server_default=sa.text(f"nextval('{S}.queue_id_sequence')"), schema=S
    )
    op.alter_column(
        "kombu_message", "id", server_default=sa.text(f"nextval('{S}.message_id_sequence')"), schema=S
    )

    # Celery's database result backend (extended columns included)
    op.execute(sa.schema.CreateSequence(sa.Sequence("task_id_sequence", schema=S)))
    op.execute(sa.schema.CreateSequence(sa.Sequence("taskset_id_sequence", schema=S)))
    op.create_table(
        "celery_taskmeta",
        sa.Column("id", sa.Integer, sa.Sequence("task_id_sequence", schema=S), primary_key=True),
        sa.Column("task_id", sa.String(155), unique=True),
        sa.Column("status", sa.String(50)),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("date_done", sa.DateTime, nullable=True, index=True),
        sa.Column("traceback", sa.Text, nullable=True),
        sa.Column("children", sa.LargeBinary, nullable=True),
        sa.Column("name", sa.String(155), nullable=True),
        sa.Column("args", sa.LargeBinary, nullable=True),
        sa.Column("kwargs", sa.LargeBinary, nullable=True),
        sa.Column("worker", sa.String(155), nullable=True),
        sa.Column("retries", sa.Integer, nullable=True),
        sa.Column("queue", sa.String(155), nullable=True),
        sa.Column("stamps", sa.LargeBinary, nullable=True),
        schema=S,
    )
    op.create_table(
        "celery_tasksetmeta",
        sa.Column("id", sa.Integer, sa.Sequence("taskset_id_sequence", schema=S), primary_key=True),
        sa.Column("taskset_id", sa.String(155), unique=True),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("date_done", sa.DateTime, nullable=True, index=True),
        schema=S,
    )

    # Heartbeats of every worker of both queues (docs/architecture.md, "The job contract")
    op.create_table(
        "workers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("adapter", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("queues", postgresql.ARRAY(sa.Text), server_default="{}", nullable=False),
        sa.Column("processes", sa.Integer, server_default="1", nullable=False),
        sa.Column("slots", sa.Integer, server_default="1", nullable=False),
        sa.Column("info", postgresql.JSONB, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "heartbeat_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("spool_loaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("adapter IN ('celery', 'pgqueue')", name="ck_workers_adapter"),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
        schema=S,
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"], schema=S)


def downgrade() -> None:
    op.drop_table("workers", schema=S)
    op.drop_table("celery_tasksetmeta", schema=S)
    op.drop_table("celery_taskmeta", schema=S)
    op.execute(sa.schema.DropSequence(sa.Sequence("taskset_id_sequence", schema=S)))
    op.execute(sa.schema.DropSequence(sa.Sequence("task_id_sequence", schema=S)))
    op.drop_table("kombu_message", schema=S)
    op.drop_table("kombu_queue", schema=S)
    op.execute(sa.schema.DropSequence(sa.Sequence("message_id_sequence", schema=S)))
    op.execute(sa.schema.DropSequence(sa.Sequence("queue_id_sequence", schema=S)))
