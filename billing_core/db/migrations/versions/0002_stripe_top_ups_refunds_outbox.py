"""stripe top-ups, refunds, outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import billing_core.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=48), nullable=False),
        sa.Column("recipient", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=191), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("next_attempt_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("sent_at", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_company_id"), ["company_id"], unique=False)
        batch_op.create_index("ix_notifications_status_due", ["status", "next_attempt_at"], unique=False)

    op.create_table(
        "topup_refunds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("topup_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("bonus_reversed", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=64), nullable=True),
        sa.Column("idempotency_key", sa.String(length=191), nullable=False),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_topup_refunds_company_id_companies")),
        sa.ForeignKeyConstraint(
            ["topup_id"], ["balance_topups.id"], name=op.f("fk_topup_refunds_topup_id_balance_topups")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topup_refunds")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_topup_refunds_idempotency_key")),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_topup_refunds_stripe_refund_id")),
    )
    with op.batch_alter_table("topup_refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_topup_refunds_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_topup_refunds_topup_id"), ["topup_id"], unique=False)

    with op.batch_alter_table("balance_topups", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_charge_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("stripe_payment_method_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("payment_method_type", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("checkout_url", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("failure_code", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_balance_topups_stripe_charge_id"), ["stripe_charge_id"], unique=False)

    with op.batch_alter_table("prepaid_balances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("auto_topup_consecutive_failures", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("auto_topup_disabled_reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prepaid_balances", schema=None) as batch_op:
        batch_op.drop_column("auto_topup_disabled_reason")
        batch_op.drop_column("auto_topup_consecutive_failures")

    with op.batch_alter_table("balance_topups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_balance_topups_stripe_charge_id"))
        batch_op.drop_column("failure_code")
        batch_op.drop_column("checkout_url")
        batch_op.drop_column("payment_method_type")
        batch_op.drop_column("stripe_payment_method_id")
        batch_op.drop_column("stripe_charge_id")

    with op.batch_alter_table("topup_refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topup_refunds_topup_id"))
        batch_op.drop_index(batch_op.f("ix_topup_refunds_status"))

    op.drop_table("topup_refunds")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_status_due")
        batch_op.drop_index(batch_op.f("ix_notifications_company_id"))

    op.drop_table("notifications")
