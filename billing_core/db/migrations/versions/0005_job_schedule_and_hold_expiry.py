"""job schedule for the worker, index for the expiry of stale call holds

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import billing_core.db.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_schedule",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("next_run_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("last_started_at", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.Column("last_finished_at", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_schedule")),
        sa.UniqueConstraint("name", name=op.f("uq_job_schedule_name")),
    )
    with op.batch_alter_table("call_reservations", schema=None) as batch_op:
        batch_op.create_index("ix_call_reservations_status_created", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("call_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_call_reservations_status_created")
    op.drop_table("job_schedule")
