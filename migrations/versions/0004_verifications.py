"""verification jobs, verifications and cost corrections

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), server_default="profile", nullable=False)
        )
        batch.add_column(
            sa.Column("subject", sa.String(length=64), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("configuration_id", sa.String(length=64), nullable=True))
        batch.drop_constraint("uq_jobs_supernet_id_device_id", type_="unique")
        batch.create_unique_constraint(
            "uq_jobs_supernet_id_device_id_subject", ["supernet_id", "device_id", "subject"]
        )
        batch.create_foreign_key(
            "fk_jobs_configuration_id_configurations",
            "configurations",
            ["configuration_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.create_table(
        "verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("configuration_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("lease_id", sa.String(length=64), nullable=False),
        sa.Column("paths_ms", sa.JSON(), nullable=False),
        sa.Column("predicted_paths_ms", sa.JSON(), nullable=False),
        sa.Column("exit_fractions", sa.JSON(), nullable=False),
        sa.Column("expected_ms", sa.Float(), nullable=False),
        sa.Column("worst_ms", sa.Float(), nullable=False),
        sa.Column("p90_ms", sa.Float(), nullable=False),
        sa.Column("predicted_expected_ms", sa.Float(), nullable=False),
        sa.Column("correction_version", sa.Integer(), nullable=True),
        sa.Column("exit_agreement", sa.Float(), nullable=True),
        sa.Column("images", sa.JSON(), nullable=True),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["configuration_id"],
            ["configurations.id"],
            name=op.f("fk_verifications_configuration_id_configurations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_verifications_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_verifications_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["profiles.id"],
            name=op.f("fk_verifications_profile_id_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verifications")),
    )
    op.create_index(
        "ix_verifications_device_id_profile_id", "verifications", ["device_id", "profile_id"]
    )
    op.create_index("ix_verifications_configuration_id", "verifications", ["configuration_id"])
    op.create_table(
        "cost_corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("scale", sa.Float(), nullable=False),
        sa.Column("offset_ms", sa.Float(), nullable=False),
        sa.Column("paths", sa.Integer(), nullable=False),
        sa.Column("verifications", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"],
            ["profiles.id"],
            name=op.f("fk_cost_corrections_profile_id_profiles"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_corrections")),
        sa.UniqueConstraint(
            "profile_id", "version", name=op.f("uq_cost_corrections_profile_id_version")
        ),
    )


def downgrade() -> None:
    op.drop_table("cost_corrections")
    op.drop_index("ix_verifications_configuration_id", table_name="verifications")
    op.drop_index("ix_verifications_device_id_profile_id", table_name="verifications")
    op.drop_table("verifications")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("fk_jobs_configuration_id_configurations", type_="foreignkey")
        batch.drop_constraint("uq_jobs_supernet_id_device_id_subject", type_="unique")
        batch.create_unique_constraint(
            "uq_jobs_supernet_id_device_id", ["supernet_id", "device_id"]
        )
        batch.drop_column("configuration_id")
        batch.drop_column("subject")
        batch.drop_column("kind")
