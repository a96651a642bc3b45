"""job_events times as integer microseconds since the epoch: ts_us, enqueued_us, scheduled_us

Revision ID: a0003
Revises: a0002
Create Date: 2026-11-30

Every record is formatted by the worker that runs the job, inside the time a benchmark measures. A
float's shortest `repr` cost a worker on this project's 2-core machine about 1.3 us, three times per
no-op job, while an integer formats in a fraction of that; the database also parses a bigint faster
than a double. The columns keep the wall clock of the acting process (docs/architecture.md, "The job contract"), in
microseconds, and are renamed to say so. Readers divide by 1e6.
"""

from __future__ import annotations

from alembic import op

revision = "a0003"
down_revision = "a0002"
branch_labels = None
depends_on = None

_COLUMNS = (("ts", "ts_us"), ("enqueued_at", "enqueued_us"), ("scheduled_at", "scheduled_us"))


def upgrade() -> None:
    op.execute(
        "ALTER TABLE job_events "
        + ", ".join(f"ALTER COLUMN {old} TYPE bigint USING round({old} * 1e6)::bigint" for old, _ in _COLUMNS)
    )
    for old, new in _COLUMNS:
        op.alter_column("job_events", old, new_column_name=new)


def downgrade() -> None:
    for old, new in _COLUMNS:
        op.alter_column("job_events", new, new_column_name=old)
    op.execute(
        "ALTER TABLE job_events "
        + ", ".join(f"ALTER COLUMN {old} TYPE double precision USING {old} / 1e6" for old, _ in _COLUMNS)
    )
