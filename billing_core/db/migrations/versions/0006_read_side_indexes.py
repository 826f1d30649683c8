"""read side indexes: payment statistics over a period and the filters of the paged lists

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEXES = (
    ("balance_topups", "ix_balance_topups_created_stats", ["created_at", "currency", "status", "source", "amount"]),
    (
        "balance_topups",
        "ix_balance_topups_succeeded_stats",
        ["succeeded_at", "currency", "status", "amount", "bonus_amount"],
    ),
    ("balance_transactions", "ix_balance_transactions_type_created", ["type", "created_at"]),
    ("topup_refunds", "ix_topup_refunds_created", ["created_at"]),
    (
        "webhook_events",
        "ix_webhook_events_received_stats",
        ["received_at", "provider", "event_type", "processed_at"],
    ),
    ("webhook_events", "ix_webhook_events_type", ["event_type"]),
    (
        "call_charges",
        "ix_call_charges_charged_stats",
        ["charged_at", "currency", "company_id", "billed_seconds", "amount_charged"],
    ),
    ("call_charges", "ix_call_charges_refund_status", ["refund_status"]),
    ("audit_log", "ix_audit_log_actor", ["actor"]),
    ("audit_log", "ix_audit_log_action", ["action"]),
)


def upgrade() -> None:
    for table, name, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for table, name, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
