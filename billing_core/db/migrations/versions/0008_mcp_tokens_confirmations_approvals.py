"""MCP server: API tokens, confirmation tokens, four-eyes approvals, idempotency records, tool-call audit columns

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import billing_core.db.types

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, billing_core.db.types.UtcDateTime(), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("outcome", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("amount", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("currency", sa.String(length=3), nullable=True))
        batch_op.create_index("ix_audit_log_actor_created", ["actor", "created_at"], unique=False)

    op.create_table(
        "api_tokens",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("company_id", ID, nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        _ts("created_at"),
        _ts("expires_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_api_tokens_company_id_companies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "tool_confirmations",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=200), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("arguments_hash", sa.String(length=64), nullable=False),
        sa.Column("preview", sa.Text(), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("used_at", nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_confirmations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tool_confirmations_token_hash")),
    )
    op.create_table(
        "tool_approvals",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("arguments_hash", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("company_id", ID, nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("preview", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decision_reason", sa.String(length=500), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("decided_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_approvals")),
    )
    with op.batch_alter_table("tool_approvals", schema=None) as batch_op:
        batch_op.create_index("ix_tool_approvals_status_created", ["status", "created_at"], unique=False)
    op.create_table(
        "tool_idempotency",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=200), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("arguments_hash", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_idempotency")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_tool_idempotency_key_hash")),
    )


def downgrade() -> None:
    op.drop_table("tool_idempotency")
    with op.batch_alter_table("tool_approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_tool_approvals_status_created")
    op.drop_table("tool_approvals")
    op.drop_table("tool_confirmations")
    op.drop_table("api_tokens")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_actor_created")
        batch_op.drop_column("currency")
        batch_op.drop_column("amount")
        batch_op.drop_column("outcome")
