"""statistics roll-ups: a journal written by triggers, daily roll-ups kept by the worker, their state

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from billing_core.db.statistics_triggers import create_triggers, drop_triggers
from billing_core.db.types import Id, UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statistics_journal",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("fact", sa.String(16), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("company_id", Id, nullable=True),
        sa.Column("k1", sa.String(32), server_default=sa.text("''"), nullable=False),
        sa.Column("k2", sa.String(64), server_default=sa.text("''"), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("a", sa.BigInteger(), nullable=False),
        sa.Column("b", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_statistics_journal"),
    )
    op.create_index("ix_statistics_journal_fact_at", "statistics_journal", ["fact", "currency", "at"])
    op.create_table(
        "statistics_rollups",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("fact", sa.String(16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("k1", sa.String(32), nullable=False),
        sa.Column("k2", sa.String(64), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("a", sa.BigInteger(), nullable=False),
        sa.Column("b", sa.BigInteger(), nullable=False),
        sa.Column("companies", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_statistics_rollups"),
        sa.UniqueConstraint("zone", "fact", "day", "currency", "k1", "k2", name="uq_statistics_rollups_key"),
    )
    op.create_table(
        "statistics_rollup_state",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("rebuilt_at", UtcDateTime(), nullable=False),
        sa.Column("folded_at", UtcDateTime(), nullable=False),
        sa.Column("folded_rows", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_statistics_rollup_state"),
    )
    dialect = op.get_bind().dialect.name
    for statement in create_triggers(dialect):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_triggers():
        op.execute(statement)
    op.drop_table("statistics_rollup_state")
    op.drop_table("statistics_rollups")
    op.drop_index("ix_statistics_journal_fact_at", table_name="statistics_journal")
    op.drop_table("statistics_journal")
