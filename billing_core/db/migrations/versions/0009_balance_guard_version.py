"""balance guard version for write-skew guards on Galera

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prepaid_balances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("guard_version", sa.BigInteger(), server_default=sa.text("0"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("prepaid_balances", schema=None) as batch_op:
        batch_op.drop_column("guard_version")
