"""partial timings of profiling jobs, uploaded in chunks and resumed by the next lease

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("timings_context", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("timings_device", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("timings_discarded", sa.JSON(), nullable=True))
    op.create_table(
        "job_timings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.String(length=400), nullable=False),
        sa.Column("samples_ms", sa.JSON(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=True),
        sa.Column("shared_from", sa.String(length=400), nullable=True),
        sa.Column("lease_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_timings_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_timings")),
        sa.UniqueConstraint("job_id", "part", name=op.f("uq_job_timings_job_id_part")),
    )


def downgrade() -> None:
    op.drop_table("job_timings")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("timings_discarded")
        batch.drop_column("timings_device")
        batch.drop_column("timings_context")
