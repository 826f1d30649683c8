"""invoices and numbering

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import billing_core.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_counters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("series", sa.String(length=8), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_counters")),
        sa.UniqueConstraint("series", "year", name="uq_invoice_counters_series_year"),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("source_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topup_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topup_refund_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("corrects_invoice_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("net_amount", sa.BigInteger(), nullable=False),
        sa.Column("vat_amount", sa.BigInteger(), nullable=False),
        sa.Column("gross_amount", sa.BigInteger(), nullable=False),
        sa.Column("vat_rate", billing_core.db.types.ExactDecimal(5, 2), nullable=False),
        sa.Column("vat_category", sa.String(length=4), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column(
            "pdf",
            sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mariadb").with_variant(mysql.LONGBLOB(), "mysql"),
            nullable=True,
        ),
        sa.Column("pdf_sha256", sa.String(length=64), nullable=True),
        sa.Column("issued_at", billing_core.db.types.UtcDateTime(), nullable=False),
        sa.Column("rendered_at", billing_core.db.types.UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_invoices_company_id_companies")),
        sa.ForeignKeyConstraint(
            ["corrects_invoice_id"], ["invoices.id"], name=op.f("fk_invoices_corrects_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(["topup_id"], ["balance_topups.id"], name=op.f("fk_invoices_topup_id_balance_topups")),
        sa.ForeignKeyConstraint(
            ["topup_refund_id"], ["topup_refunds.id"], name=op.f("fk_invoices_topup_refund_id_topup_refunds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("source_key", name=op.f("uq_invoices_source_key")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index("ix_invoices_company_issued", ["company_id", "issued_at"], unique=False)

    with op.batch_alter_table("call_charges", schema=None) as batch_op:
        batch_op.add_column(sa.Column("caller_number", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("call_charges", schema=None) as batch_op:
        batch_op.drop_column("caller_number")

    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_company_issued")

    op.drop_table("invoices")
    op.drop_table("invoice_counters")
