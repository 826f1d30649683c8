"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import billing_core.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=128), nullable=True),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_company_created", ["company_id", "created_at"], unique=False)

    op.create_table(
        "companies",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("vat_id", sa.String(length=32), nullable=True),
        sa.Column("tax_number", sa.String(length=32), nullable=True),
        sa.Column("address_line1", sa.String(length=200), nullable=True),
        sa.Column("address_line2", sa.String(length=200), nullable=True),
        sa.Column("postal_code", sa.String(length=16), nullable=True),
        sa.Column("city", sa.String(length=100), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=64), nullable=True),
        sa.Column("prepaid_billing_enabled", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_companies")),
        sa.UniqueConstraint("stripe_customer_id", name=op.f("uq_companies_stripe_customer_id")),
    )
    op.create_table(
        "balance_topups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("bonus_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=24), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("stripe_payment_intent_id", sa.String(length=64), nullable=True),
        sa.Column("stripe_checkout_session_id", sa.String(length=128), nullable=True),
        sa.Column("invoice_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("initiated_by", sa.String(length=200), nullable=True),
        sa.Column("idempotency_key", sa.String(length=191), nullable=True),
        sa.Column("refunded_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("succeeded_at", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_balance_topups_company_id_companies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_topups")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_balance_topups_idempotency_key")),
        sa.UniqueConstraint("stripe_checkout_session_id", name=op.f("uq_balance_topups_stripe_checkout_session_id")),
        sa.UniqueConstraint("stripe_payment_intent_id", name=op.f("uq_balance_topups_stripe_payment_intent_id")),
    )
    with op.batch_alter_table("balance_topups", schema=None) as batch_op:
        batch_op.create_index("ix_balance_topups_company_created", ["company_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_balance_topups_status"), ["status"], unique=False)

    op.create_table(
        "balance_transactions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_before", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("reference_type", sa.String(length=32), nullable=True),
        sa.Column("reference_id", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key", sa.String(length=191), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_balance_transactions_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_transactions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_balance_transactions_idempotency_key")),
    )
    with op.batch_alter_table("balance_transactions", schema=None) as batch_op:
        batch_op.create_index("ix_balance_transactions_company_id_id", ["company_id", "id"], unique=False)
        batch_op.create_index("ix_balance_transactions_reference", ["reference_type", "reference_id"], unique=False)

    op.create_table(
        "billing_rates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rate_per_minute", billing_core.db.types.ExactDecimal(12, 6), nullable=False),
        sa.Column("billing_increment_seconds", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("effective_from", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_billing_rates_company_id_companies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_rates")),
        sa.UniqueConstraint("company_id", "effective_from", name="uq_billing_rates_company_from"),
    )
    op.create_table(
        "bonus_rules",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("min_topup_amount", sa.BigInteger(), nullable=False),
        sa.Column("max_topup_amount", sa.BigInteger(), nullable=True),
        sa.Column("bonus_percent", billing_core.db.types.ExactDecimal(7, 4), nullable=False),
        sa.Column("bonus_fixed_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_bonus_amount", sa.BigInteger(), nullable=True),
        sa.Column("valid_from", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.Column("valid_until", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_bonus_rules_company_id_companies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bonus_rules")),
    )
    op.create_table(
        "call_charges",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("duration_seconds", sa.Integer(), nullable=False),
        sa.Column("billed_seconds", sa.Integer(), nullable=False),
        sa.Column("rate_per_minute", billing_core.db.types.ExactDecimal(12, 6), nullable=False),
        sa.Column("billing_increment_seconds", sa.Integer(), nullable=False),
        sa.Column("amount_charged", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refund_status", sa.String(length=16), server_default=sa.text("'none'"), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("call_started_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("call_ended_at", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.Column("charged_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_call_charges_company_id_companies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_charges")),
        sa.UniqueConstraint("call_id", name=op.f("uq_call_charges_call_id")),
    )
    with op.batch_alter_table("call_charges", schema=None) as batch_op:
        batch_op.create_index("ix_call_charges_company_charged", ["company_id", "charged_at"], unique=False)

    op.create_table(
        "call_reservations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("released_at", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_call_reservations_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_reservations")),
        sa.UniqueConstraint("call_id", name=op.f("uq_call_reservations_call_id")),
    )
    with op.batch_alter_table("call_reservations", schema=None) as batch_op:
        batch_op.create_index("ix_call_reservations_company_status", ["company_id", "status"], unique=False)

    op.create_table(
        "prepaid_balances",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserved_balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("low_balance_threshold", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("auto_topup_enabled", sa.Boolean(), server_default=sa.text("0"), nullable=False),
        sa.Column("auto_topup_threshold", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("auto_topup_amount", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("auto_topup_daily_limit", sa.Integer(), server_default=sa.text("2"), nullable=False),
        sa.Column("auto_topup_monthly_limit", sa.BigInteger(), nullable=True),
        sa.Column("stripe_payment_method_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("updated_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_prepaid_balances_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prepaid_balances")),
        sa.UniqueConstraint("company_id", name=op.f("uq_prepaid_balances_company_id")),
    )


def downgrade() -> None:
    op.drop_table("prepaid_balances")
    with op.batch_alter_table("call_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_call_reservations_company_status")

    op.drop_table("call_reservations")
    with op.batch_alter_table("call_charges", schema=None) as batch_op:
        batch_op.drop_index("ix_call_charges_company_charged")

    op.drop_table("call_charges")
    op.drop_table("bonus_rules")
    op.drop_table("billing_rates")
    with op.batch_alter_table("balance_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_balance_transactions_reference")
        batch_op.drop_index("ix_balance_transactions_company_id_id")

    op.drop_table("balance_transactions")
    with op.batch_alter_table("balance_topups", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_balance_topups_status"))
        batch_op.drop_index("ix_balance_topups_company_created")

    op.drop_table("balance_topups")
    op.drop_table("companies")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_company_created")

    op.drop_table("audit_log")
